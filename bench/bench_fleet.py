"""A fleet on Ray: how fast a lost host is taken over, how fast a joining one gets its share,
and what Ray costs a worker host, on a real Ray cluster on this machine.

Each round starts a cluster (a head and two worker nodes with 4 stream slots each), a fleet
of 4 live MJPEG cameras in 2 shards, and lets it learn; then crashes the node of one shard
(``remove_node(allow_graceful=False)``) and measures:

* noticed — until Ray marks the node dead;
* running — until the shard runs on the other node (Ray restarted it, it said where);
* scoring — until every moved stream's frames are counted again on the new shard;
* baselines — whether every moved stream came back with its learned baselines;

with Ray's default health checks and with tuned ones (1000/1000/3), the configurations
taking turns over the rounds. Then a node joins (until a shard has moved there), and at
rest: the RSS and CPU of each worker node's Ray processes (raylet, agents, idle workers)
beside its shard's own process, and ``focusmon watch`` alone on the same streams.

Run: ``python bench/bench_fleet.py`` (``--rounds 3``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import ray  # noqa: E402

from fleet_rig import DEFAULT, TUNED, cpu_s, fleet_rig, processes_of, rss_mb  # noqa: E402
from mjpeg_camera import mjpeg_cameras  # noqa: E402
from servers import wait_until  # noqa: E402


def takeover_round(health: dict) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, fleet_rig(Path(tmp), health=health) as rig:
        rig.quiet()
        wait_until(lambda: all(p[0]["state"] == "ok" for p in rig.streams_of().values()), 60,
                   "learned")  # fmt: skip
        time.sleep(2)  # a save of the baselines
        victim = rig.node_of("shard-000")
        moved = [s for s, p in rig.streams_of().items() if p[0]["shard"] == "shard-000"]
        victim_id = victim.node_id
        start = time.monotonic()
        rig.crash(victim)
        got: dict[str, float] = {}
        deadline = start + 180
        while time.monotonic() < deadline and len(got) < 3:
            now = time.monotonic() - start
            if "noticed" not in got:
                alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
                if not alive.get(victim_id, False):
                    got["noticed"] = now
            if "running" not in got and rig.node_of("shard-000") is not None:
                got["running"] = now
            if "running" in got and "scoring" not in got:
                frames = rig.frames_of("shard-000")
                if all(frames.get(s, 0) > 0 for s in moved):
                    got["scoring"] = now
            time.sleep(0.2)
        row = rig.shard_row("shard-000")
        got["baselines"] = 1.0 if row["restored"] >= len(moved) else 0.0
        return got


def join_round() -> float:
    with tempfile.TemporaryDirectory() as tmp, fleet_rig(Path(tmp), workers=1) as rig:
        rig.quiet()
        start = time.monotonic()
        joined = rig.add_worker()
        wait_until(lambda: any(r["node"] == joined.node_id and r["state"] == "running"
                               for r in rig.fleet.status()), 120, "a shard there")  # fmt: skip
        return time.monotonic() - start


def costs(seconds: float = 20.0) -> list[tuple[str, float, float]]:
    """(what, RSS MB, CPU % of a core) at rest: per worker node, Ray's processes without
    the shard's, the shard's own process, and `focusmon watch` on the same 2 streams."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, fleet_rig(Path(tmp)) as rig:
        rig.quiet()
        time.sleep(5)
        shard_pids = {r["node"]: r["pid"] for r in rig.fleet.status()}
        per_node = {w.node_id: processes_of(w) for w in rig.workers}
        before = {pid: cpu_s(pid) for pids in per_node.values() for pid in pids}
        time.sleep(seconds)
        for node, pids in per_node.items():
            shard = shard_pids.get(node)
            ray_pids = [p for p in pids if p != shard]
            ray_cpu = sum(cpu_s(p) - before.get(p, 0) for p in ray_pids) / seconds * 100
            rows.append(("Ray on a worker node (raylet, agents, idle workers)",
                         sum(rss_mb(p) for p in ray_pids), ray_cpu))  # fmt: skip
            if shard:
                rows.append(("its shard (a Watcher of 2 streams, /metrics)", rss_mb(shard),
                             (cpu_s(shard) - before.get(shard, 0)) / seconds * 100))  # fmt: skip
    with mjpeg_cameras(2, size=(160, 120), fps=5.0) as server:
        cmd = [sys.executable, "-m", "focusmon", "watch", server.url(0), server.url(1),
               "--format", "mpjpeg", "--backend", "numpy", "--no-metrics"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(10)
            start = cpu_s(proc.pid)
            time.sleep(seconds)
            rows.append(("focusmon watch alone, the same 2 streams", rss_mb(proc.pid),
                         (cpu_s(proc.pid) - start) / seconds * 100))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(20)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="crashes per configuration")
    args = parser.parse_args()
    configs = [("tuned (1000/1000/3)", TUNED), ("Ray's defaults (3000/10000/5)", DEFAULT)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    for k in range(args.rounds):
        for name, health in configs if k % 2 == 0 else configs[::-1]:  # taking turns
            got = takeover_round(health)
            results[name].append(got)
            print(f"  round {k + 1}, {name}: " + ", ".join(f"{m} {v:.1f}" for m, v in got.items()),
                  flush=True)  # fmt: skip
    print("\n# A worker host crashed: 4 MJPEG streams in 2 shards on 2 worker nodes, "
          f"{args.rounds} rounds each, median / max seconds\n")  # fmt: skip
    print("| health checks | noticed | shard running again | moved streams scoring | "
          "baselines restored |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for name, rounds in results.items():
        cells = []
        for key in ("noticed", "running", "scoring"):
            values = [r[key] for r in rounds if key in r]
            cells.append(f"{statistics.median(values):.1f} / {max(values):.1f}" if values
                         else "—")  # fmt: skip
        restored = sum(r.get("baselines", 0) for r in rounds)
        print(f"| {name} | {' | '.join(cells)} | {restored:.0f} of {len(rounds)} |")
    joins = [join_round() for _ in range(2)]
    median, worst = statistics.median(joins), max(joins)
    print(f"\nA worker joining a one-worker fleet: a shard runs there after {median:.1f} s "
          f"(max {worst:.1f}, {len(joins)} rounds)\n")  # fmt: skip
    print("| at rest, 20 s | RSS MB | CPU % of a core |")
    print("|---|---:|---:|")
    for what, rss, cpu in costs():
        print(f"| {what} | {rss:.0f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
