"""Which streams go together, and where shards should be: decisions without Ray."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import ServiceSettings, StreamSpec, WatchConfig

#: The custom Ray resource a worker host declares (``ray start --resources=
#: '{"focusmon_slots": 12}'``): how many streams it can run. A shard asks for one a stream.
SLOTS = "focusmon_slots"


@dataclass(frozen=True)
class ShardPlan:
    """One shard: its id (stable while the file's order of streams is) and its streams."""

    id: str
    streams: tuple[StreamSpec, ...]

    @property
    def slots(self) -> int:
        return len(self.streams)


def shards_of(streams: Sequence[StreamSpec], per_shard: int) -> list[ShardPlan]:
    """The streams in shards of ``per_shard`` (the last may be smaller), in file order."""
    if per_shard < 1:
        raise ValueError(f"`streams_per_shard` must be at least 1, got {per_shard}")
    return [
        ShardPlan(f"shard-{k // per_shard:03d}", tuple(streams[k : k + per_shard]))
        for k in range(0, len(streams), per_shard)
    ]


def room_after_losing(capacity: Mapping[str, float], needed: int, hosts: int) -> bool:
    """Whether ``needed`` slots still fit once the ``hosts`` largest hosts are gone."""
    left = sorted(capacity.values())[: max(len(capacity) - hosts, 0)]
    return sum(left) >= needed


def next_move(
    placed: Mapping[str, str], sizes: Mapping[str, int], capacity: Mapping[str, float]
) -> tuple[str, str] | None:
    """The one shard to move so that hosts hold their share, and where: ``(shard, host)``,
    or None when no move makes the spread better.

    ``placed`` maps each running shard to its host, ``sizes`` each shard to its slots and
    ``capacity`` each live host to its slots. A host's share is the used slots in
    proportion to its capacity. The move is from the host furthest above its share to the
    one furthest below, of the smallest shard that fits there and narrows the gap (so a
    joining host fills up one shard at a time, and shards never swing back and forth).
    """
    total = sum(capacity.values())
    if total <= 0 or not placed:
        return None
    used = {host: 0 for host in capacity}
    for shard, host in placed.items():
        if host in used:
            used[host] += sizes[shard]
    in_use = sum(used.values())
    excess = {h: used[h] - in_use * capacity[h] / total for h in capacity}
    source = max(excess, key=lambda h: (excess[h], h))
    target = min(excess, key=lambda h: (excess[h], h))
    gap = excess[source] - excess[target]
    for shard in sorted((s for s, h in placed.items() if h == source), key=lambda s: sizes[s]):
        size = sizes[shard]
        fits = used[target] + size <= capacity[target]
        if fits and size < gap:  # the two hosts end closer to their shares than they were
            return shard, target
    return None


def shard_service(config: WatchConfig, gpus: float) -> ServiceSettings:
    """A shard's service settings: a GPU shard scores on the GPU (batching its streams, as
    `watch` does); a CPU shard with the backend left to ``auto`` takes Numba on the CPU
    rather than whatever device its host happens to have. A shard's MQTT client leaves
    the other shards' Home Assistant entities alone (it knows only its own streams)."""
    service = dataclasses.replace(config.service, mqtt_remove_stale=False)
    if gpus > 0:
        return dataclasses.replace(service, backend="numba-cuda")
    if service.backend == "auto":
        return dataclasses.replace(service, backend="numba-cpu")
    return service
