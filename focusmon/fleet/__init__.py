"""focusmon as a fleet on Ray: streams in shards (Ray actors, each a `Watcher`) spread over
many hosts, started again elsewhere by Ray when a host is lost, with their learned
baselines kept by a controller actor. Needs ``pip install 'focusmon[fleet]'``; importing
``focusmon`` never imports Ray.
"""

from __future__ import annotations

from ._plan import SLOTS, ShardPlan, next_move, room_after_losing, shard_service, shards_of

__all__ = [
    "SLOTS", "ShardPlan", "next_move", "room_after_losing", "shard_service", "shards_of",
]  # fmt: skip
