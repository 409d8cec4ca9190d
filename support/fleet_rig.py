"""A focusmon fleet on a real Ray cluster on this machine, for the tests and the bench.

`fleet_rig` starts a `ray.cluster_utils.Cluster` (a head with no CPUs and worker nodes,
each a raylet of its own declaring ``focusmon_slots``), MJPEG cameras over HTTP
(`mjpeg_camera`), the fleet (`focusmon.fleet._driver.Fleet`) and its service discovery
endpoint; optionally a real Prometheus scraping the shards through ``http_sd``. Everything
is stopped on the way out, Ray's processes included.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from focusmon.cli import make_sinks
from focusmon.config import parse
from focusmon.fleet._driver import Fleet
from focusmon.sinks.discovery import DiscoveryEndpoint

from mjpeg_camera import CameraServer, mjpeg_cameras
from servers import Process, fetch, free_port, wait_until

MiB = 2**20
#: ../shared/FLEET.md: Ray's own test settings; not lower on a loaded 2-core box.
TUNED = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}
DEFAULT: dict[str, int] = {}  # Ray's defaults: 3000 / 10000 / 5


def node_args(slots: int = 4) -> dict:
    return dict(num_cpus=1, resources={"focusmon_slots": slots}, object_store_memory=80 * MiB)


@dataclass
class FleetRig:
    cluster: Cluster
    workers: list
    cameras: CameraServer
    fleet: Fleet
    streams: int
    prometheus: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # -- what the fleet says ---------------------------------------------------------------

    def streams_of(self) -> dict[str, list[dict]]:
        """Each stream: where it runs (shard, node, the shard's state) and its state."""
        found: dict[str, list[dict]] = {}
        for row in self.fleet.status():
            for s in row["streams"]:
                found.setdefault(s["stream"], []).append(
                    {**s, "shard": row["shard"], "node": row["node"], "up": row["state"]}
                )
        return found

    def placed(self) -> bool:
        """Every stream on exactly one running shard, on a live node."""
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        rows = self.streams_of()
        if sorted(rows) != sorted(f"cam{k}" for k in range(self.streams)):
            return False
        return all(
            len(p) == 1 and p[0]["up"] == "running" and p[0]["node"] in alive
            for p in rows.values()
        )

    def scraped_once(self) -> bool:
        """Prometheus has exactly one series of frames for every stream."""
        seen = self.query("count by (stream) (focusmon_frames_analysed_total)")
        names = {f"cam{k}" for k in range(self.streams)}
        return set(seen) == names and all(v == 1 for v in seen.values())

    def settled(self) -> bool:
        return self.placed() and (self.prometheus is None or self.scraped_once())

    def quiet(self, for_s: float = 5.0) -> None:
        """Settled, and nothing moved for ``for_s`` (over two rebalance periods)."""
        wait_until(self.settled, 120, "the fleet settled")
        moves, since = self.fleet.summary().get("moves"), time.monotonic()
        while time.monotonic() - since < for_s:
            time.sleep(0.5)
            now = self.fleet.summary().get("moves")
            if now != moves:
                moves, since = now, time.monotonic()
                wait_until(self.settled, 120, "the fleet settled")

    def node_of(self, shard: str):
        """The worker node a running shard runs on, or None."""
        row = next(r for r in self.fleet.status() if r["shard"] == shard)
        if row["state"] != "running":
            return None
        return next((w for w in self.workers if w.node_id == row["node"]), None)

    def shard_row(self, shard: str) -> dict:
        return next(r for r in self.fleet.status() if r["shard"] == shard)

    def frames_of(self, shard: str) -> dict[str, float]:
        """The shard's streams' analysed frames, read from its own /metrics."""
        row = self.shard_row(shard)
        if row["state"] != "running" or not row["target"]:
            return {}
        try:
            status, text = fetch(f"http://{row['target']}/metrics", timeout=2)
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            if line.startswith("focusmon_frames_analysed_total{"):
                name = line.split('stream="', 1)[1].split('"', 1)[0]
                found[name] = float(line.rsplit(" ", 1)[1])
        return found

    def query(self, expr: str) -> dict[str, float]:
        if self.prometheus is None:
            return {}
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            status, text = fetch(url)
        except OSError:
            return {}
        if status != 200:
            return {}
        return {
            r["metric"].get("stream", ""): float(r["value"][1])
            for r in json.loads(text)["data"]["result"]
        }

    # -- changing the cluster -----------------------------------------------------------------

    def add_worker(self, slots: int = 4):
        node = self.cluster.add_node(**node_args(slots))
        self.workers.append(node)
        return node

    def crash(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)


def processes_of(node) -> list[int]:
    """PIDs of a node's Ray processes: its raylet and everything under it (workers,
    agents), read from /proc."""
    raylet = node.all_processes["raylet"][0].process.pid
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [raylet]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_config(server: CameraServer, streams: int, per_shard: int = 2) -> object:
    return parse({
        "backend": "numpy",
        "streams": [
            {"name": f"cam{k}", "source": server.url(k), "format": "mpjpeg", "timeout_s": 5,
             "alerts": {"learn_s": 2.0, "min_dwell_s": 0.5}}
            for k in range(streams)
        ],
        "fleet": {"streams_per_shard": per_shard, "save_every_s": 1.0,
                  "rebalance_every_s": 2.0, "spare_hosts": 1},
    })  # fmt: skip


@contextmanager
def fleet_rig(
    tmp: Path, *, streams: int = 4, workers: int = 2, health: dict | None = None,
    prometheus: bool = False,
) -> Iterator[FleetRig]:  # fmt: skip
    health = TUNED if health is None else health
    with ExitStack() as stack:
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=0, include_dashboard=False, object_store_memory=80 * MiB,
            _system_config=health,
        ))  # fmt: skip
        stack.callback(cluster.shutdown)
        nodes = [cluster.add_node(**node_args()) for _ in range(workers)]
        ray.init(address=cluster.address, namespace="focusmon", log_to_driver=False)
        stack.callback(ray.shutdown)
        server = stack.enter_context(mjpeg_cameras(streams, size=(160, 120), fps=5.0))
        fleet = Fleet.start(stream_config(server, streams), make_sinks,
                            address=cluster.address, store=str(tmp / "fleet.sqlite"))  # fmt: skip
        stack.callback(fleet.stop)
        sd = DiscoveryEndpoint("127.0.0.1", 0, fleet.targets, fleet.summary)
        sd.start()
        stack.callback(sd.close)
        rig = FleetRig(cluster, nodes, server, fleet, streams)
        if prometheus:
            port = free_port()
            (tmp / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s}\n"
                "scrape_configs:\n- job_name: focusmon-shards\n"
                f"  http_sd_configs: [{{url: '{sd.url}/targets', refresh_interval: 1s}}]\n"
            )
            proc = Process(["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                            f"--storage.tsdb.path={tmp / 'tsdb'}",
                            f"--web.listen-address=127.0.0.1:{port}"])  # fmt: skip
            stack.callback(proc.stop)
            rig.prometheus = f"http://127.0.0.1:{port}"
        yield rig
