"""The fleet's decisions without Ray: shards of streams, room after a loss, which shard to
move to a host below its share; and the [fleet] table of the config file."""

from __future__ import annotations

import pytest

from focusmon import ConfigError
from focusmon.config import FleetSettings, StreamSpec, parse, to_toml
from focusmon.fleet import next_move, room_after_losing, shard_service, shards_of


def specs(n: int) -> list[StreamSpec]:
    return [StreamSpec(f"cam{k}", f"rtsp://10.0.0.{k}/s") for k in range(n)]


def test_streams_are_grouped_in_file_order_with_stable_ids():
    shards = shards_of(specs(7), 3)
    assert [s.id for s in shards] == ["shard-000", "shard-001", "shard-002"]
    assert [[x.name for x in s.streams] for s in shards] == [
        ["cam0", "cam1", "cam2"], ["cam3", "cam4", "cam5"], ["cam6"],
    ]  # fmt: skip
    assert [s.slots for s in shards] == [3, 3, 1]
    with pytest.raises(ValueError, match="at least 1"):
        shards_of(specs(2), 0)


def test_room_after_losing_the_largest_hosts():
    capacity = {"a": 12, "b": 12, "c": 4}
    assert room_after_losing(capacity, 16, 1)  # b (or a) gone: 16 left
    assert not room_after_losing(capacity, 17, 1)
    assert room_after_losing(capacity, 4, 2) and not room_after_losing(capacity, 5, 2)
    assert room_after_losing(capacity, 0, 5)


def test_a_joining_host_is_filled_one_shard_at_a_time_until_it_holds_its_share():
    sizes = {f"s{k}": 2 for k in range(6)}
    placed = dict.fromkeys(sizes, "a")  # all on a; b has just joined
    capacity = {"a": 12.0, "b": 12.0}
    moves = 0
    while (move := next_move(placed, sizes, capacity)) is not None:
        shard, host = move
        assert placed[shard] == "a" and host == "b"
        placed[shard] = host
        moves += 1
        assert moves <= 6
    assert moves == 3 and list(placed.values()).count("b") == 3


def test_no_move_when_the_spread_is_as_good_as_it_gets():
    sizes = {"s0": 2, "s1": 2, "s2": 2}
    assert next_move({"s0": "a", "s1": "a", "s2": "b"}, sizes, {"a": 8, "b": 8}) is None
    # A host with no room for the shard gets nothing, however far below its share.
    assert next_move({"s0": "a", "s1": "a"}, sizes, {"a": 8, "b": 1}) is None
    # Shares follow capacity: a host three times larger holds three times more.
    sizes = {f"s{k}": 1 for k in range(8)}
    placed = dict.fromkeys(sizes, "small")
    while (move := next_move(placed, sizes, {"big": 12, "small": 4})) is not None:
        placed[move[0]] = move[1]
    assert list(placed.values()).count("big") == 6


def test_the_fleet_table_of_a_config_file():
    data = {"streams": [{"source": "demo"}], "fleet": {"streams_per_shard": 8}}
    config = parse(data)
    assert config.fleet == FleetSettings(streams_per_shard=8)
    assert "[fleet]\nstreams_per_shard = 8" in to_toml(config)
    assert parse({"streams": [{"source": "demo"}]}).fleet == FleetSettings()
    with pytest.raises(ConfigError, match="did you mean 'streams_per_shard'"):
        parse({"streams": [{"source": "demo"}], "fleet": {"stream_per_shard": 2}})
    with pytest.raises(ConfigError, match=r"fleet setting: put it in the \[fleet\] table"):
        parse({"streams": [{"source": "demo"}], "spare_hosts": 2})
    with pytest.raises(ConfigError, match="streams_per_shard"):
        parse({"streams": [{"source": "demo"}], "fleet": {"streams_per_shard": 0}})


def test_gpu_shards_score_on_the_gpu_and_cpu_shards_on_numba_cpu():
    auto = parse({"streams": [{"source": "demo"}]})
    assert shard_service(auto, 0.0).backend == "numba-cpu"  # not whatever the host has
    assert shard_service(auto, 0.5).backend == "numba-cuda"
    chosen = parse({"backend": "numpy", "streams": [{"source": "demo"}]})
    assert shard_service(chosen, 0.0).backend == "numpy"  # a backend named is kept
    # A shard's MQTT client knows only its streams: it must not clear the others' entities.
    mqtt = parse({"mqtt": "mqtt://127.0.0.1/x", "streams": [{"source": "demo"}]})
    assert mqtt.service.mqtt_remove_stale and not shard_service(mqtt, 0.0).mqtt_remove_stale
    with pytest.raises(ConfigError, match="gpus_per_shard"):
        parse({"streams": [{"source": "demo"}], "fleet": {"gpus_per_shard": 2}})
