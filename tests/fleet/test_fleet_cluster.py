"""A fleet on a real Ray cluster on this machine: a head and worker nodes (each a raylet of
its own), live MJPEG cameras over HTTP, a real Prometheus finding the shards by http_sd.

One cluster for the module, its scenes in order: the fleet starts and learns; a worker
crashes; a worker joins; a worker is stopped gracefully; a worker hangs (its raylet
stopped). After each: every stream runs on exactly one live shard, Prometheus scrapes
every stream exactly once, and a moved stream whose picture blurs is `blurred` at once —
it kept its learned baseline (a stream learning anew would take the blur for normal).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

pytest.importorskip("ray", reason="Ray missing: pip install 'focusmon[fleet]'")

from focusmon.fleet._actors import _alive  # noqa: E402

from fleet_rig import fleet_rig, processes_of  # noqa: E402
from servers import wait_until  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus missing: apt-get install prometheus")
    with fleet_rig(tmp_path_factory.mktemp("fleet"), prometheus=True) as rig:
        yield rig
        print("fleet timings:", json.dumps(rig.timings))
        nodes = [rig.cluster.head_node, *rig.workers]
        pids = [pid for node in nodes for pid in processes_of(node)]
    # Every Ray process the module started is gone (the rig shut the cluster down).
    wait_until(lambda: not any(_alive(p) for p in pids), 60,
               "every Ray process of the cluster gone")  # fmt: skip


def learned(rig) -> bool:
    return all(p[0]["state"] == "ok" for p in rig.streams_of().values())


def blurs_at_once(rig, stream: str) -> float:
    """Blur ``stream``'s camera; seconds until the fleet says `blurred`. Then sharp again."""
    camera = rig.cameras.cameras[int(stream.removeprefix("cam"))]
    camera.blurred = True
    start = time.monotonic()
    try:
        wait_until(lambda: rig.streams_of()[stream][0]["state"] == "blurred", 15,
                   f"{stream} blurred after the move")  # fmt: skip
        return time.monotonic() - start
    finally:
        camera.blurred = False
        wait_until(lambda: rig.streams_of()[stream][0]["state"] == "ok", 15, f"{stream} ok")


def takeover(rig, what: str, lose) -> dict:
    """Lose the node of shard-000 by ``lose``; wait for the shard to run elsewhere and the
    fleet to settle; blur one moved stream. What happened, for the test to judge."""
    rig.quiet()
    victim = rig.node_of("shard-000")
    moved = [s for s, p in rig.streams_of().items() if p[0]["shard"] == "shard-000"]
    assert victim is not None and moved
    start = time.monotonic()
    lose(victim)
    wait_until(lambda: rig.node_of("shard-000") not in (None, victim), 60,
               f"shard-000 running elsewhere after {what}")  # fmt: skip
    rig.timings[f"{what}: running again"] = round(time.monotonic() - start, 1)
    wait_until(rig.settled, 60, f"every stream on one shard, scraped once, after {what}")
    rig.timings[f"{what}: settled"] = round(time.monotonic() - start, 1)
    row = rig.shard_row("shard-000")
    blurred_s = blurs_at_once(rig, moved[0])
    rig.timings[f"{what}: blurred after"] = round(blurred_s, 1)
    return {"victim": victim.node_id, "node": row["node"], "restored": row["restored"],
            "moved": moved, "blurred_s": blurred_s}  # fmt: skip


def test_the_fleet_starts_every_stream_once_and_learns(rig):
    wait_until(rig.settled, 90, "every stream on one running shard, scraped once")
    wait_until(lambda: learned(rig), 30, "every stream learned and ok")
    time.sleep(2)  # a save of the learned baselines (every 1 s)
    targets = rig.fleet.targets()
    assert len(targets) == 2 and {t["labels"]["shard"] for t in targets} == {
        "shard-000", "shard-001",
    }  # fmt: skip
    summary = rig.fleet.summary()
    assert summary["spare_ok"] is True and summary["shards"] == {"running": 2}


def test_a_crashed_worker_s_shard_runs_again_elsewhere_and_keeps_its_baselines(rig):
    moved = takeover(rig, "crash", rig.crash)
    assert moved["node"] != moved["victim"]
    assert moved["restored"] >= len(moved["moved"]), moved  # every moved stream's baseline


def test_a_joining_worker_gets_its_share(rig):
    rig.quiet()
    start = time.monotonic()
    joined = rig.add_worker()

    def there() -> bool:
        return any(r["node"] == joined.node_id and r["state"] == "running"
                   for r in rig.fleet.status())  # fmt: skip

    wait_until(there, 90, "a shard moved to the new host")
    rig.timings["join: a shard moved there"] = round(time.monotonic() - start, 1)
    wait_until(rig.settled, 60, "every stream once after the join")
    assert rig.fleet.summary()["moves"] >= 1


def test_a_worker_stopped_gracefully_hands_over(rig):
    def graceful(node):
        rig.cluster.remove_node(node, allow_graceful=True)
        rig.workers.remove(node)

    moved = takeover(rig, "graceful stop", graceful)
    assert moved["node"] != moved["victim"]
    assert moved["restored"] >= len(moved["moved"]), moved


def test_a_hung_worker_s_shard_is_taken_over(rig):
    rig.add_worker()  # room for it to go to
    hung = []

    def hang(node):
        raylet = node.all_processes["raylet"][0].process
        os.kill(raylet.pid, signal.SIGSTOP)
        hung.append((node, raylet))

    rig.quiet()
    old_pid = rig.shard_row("shard-000")["pid"]
    try:
        moved = takeover(rig, "hang", hang)
    finally:
        for node, raylet in hung:
            os.kill(raylet.pid, signal.SIGCONT)
            rig.workers.remove(node)
    # Woken, the hung host learns it was declared dead: its copy of the shard ends, so no
    # stream is watched twice for longer than the takeover.
    assert moved["node"] != moved["victim"]
    assert moved["restored"] >= len(moved["moved"]), moved
    wait_until(lambda: not _alive(old_pid), 60, "the hung host's copy of the shard gone")


def test_shards_with_no_host_to_go_to_wait_reported_and_run_when_one_comes(rig):
    """The last worker lost: no host has room, so the shards wait (Ray keeps them
    pending) and say so — in status, in the fleet's metrics, as no spare — until a host
    joins, when they run again with their baselines."""
    rig.quiet()
    for node in list(rig.workers):
        rig.crash(node)
    wait_until(lambda: rig.fleet.summary().get("shards") == {"waiting": 2}, 90,
               "both shards reported waiting")  # fmt: skip
    assert {r["state"] for r in rig.fleet.status()} == {"waiting"}
    assert rig.fleet.summary()["spare_ok"] is False and rig.fleet.targets() == []
    rig.add_worker()
    wait_until(rig.settled, 90, "every stream running again on the new host")
    assert all(r["restored"] >= 2 for r in rig.fleet.status())
