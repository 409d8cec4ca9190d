"""The two kinds of Ray actor of a fleet: shards, which watch, and the controller, which
keeps the map of the fleet and what the streams have learned.

Plain classes here; `focusmon.fleet._driver` makes them actors (``ray.remote``) with the
options that make them survive: shards with ``max_restarts=-1`` (Ray starts a shard again
on a host with room when its host is lost), the controller detached and named.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import FleetSettings, ServiceSettings, WatchConfig
from ..pipeline import Watcher
from ._plan import SLOTS, ShardPlan, next_move, room_after_losing, shard_service, shards_of

log = logging.getLogger("focusmon.fleet")

NAMESPACE = "focusmon"
CONTROLLER = "focusmon-controller"
#: A shard that has not said it runs this long after it was (re)started is waiting for a
#: host with room (Ray keeps it pending): reported, never dropped.
WAITING_AFTER_S = 20.0
CALL_TIMEOUT_S = 5.0


class Shard:
    """Runs a `Watcher` on its streams and serves their ``/metrics`` on a port of its own.

    Started (and, after its host is lost, started again elsewhere) by Ray: it reads back
    what its streams had learned, starts watching, and tells the controller where it
    serves; then saves what the streams learn every ``save_every_s`` and when stopped.
    """

    def __init__(
        self,
        shard_id: str,
        config: WatchConfig,
        make_sinks: Callable[[ServiceSettings], list],
        save_every_s: float,
    ) -> None:
        self.id = shard_id
        self.node = ray.get_runtime_context().get_node_id()
        self.host = ray.util.get_node_ip_address()
        self._controller = ray.get_actor(CONTROLLER, namespace=NAMESPACE)
        # The shard serves /metrics on its host's address, for Prometheus: the live page
        # there only behind the login or client certificates the fleet was given (or
        # where it was allowed without them).
        given = config.service
        guarded = given.web_users or given.tls_client_ca or given.allow_anonymous
        service = dataclasses.replace(
            given, metrics_addr=f"{self.host}:0", page=given.page and bool(guarded)
        )
        self._sinks = make_sinks(service)
        self.watcher = Watcher(dataclasses.replace(config, service=service), self._sinks)
        names = [s.name for s in config.streams]
        learned = ray.get(self._controller.learned.remote(names), timeout=CALL_TIMEOUT_S)
        restored = self.watcher.restore(learned)
        self.watcher.start()
        self.port = next(
            (s.port for s in self._sinks if isinstance(getattr(s, "port", None), int)), None
        )
        self._stop = threading.Event()
        self._saver = threading.Thread(
            target=self._save_every, args=(save_every_s,), name="save baselines", daemon=True
        )
        self._saver.start()
        self._raylet = os.getppid()  # Ray's workers are its raylet's children
        threading.Thread(target=self._orphaned, name="raylet watch", daemon=True).start()
        ray.get(self._controller.register.remote(
            shard_id, self.node, self.host, self.port, os.getpid(), restored
        ), timeout=CALL_TIMEOUT_S)  # fmt: skip

    def ping(self) -> str:
        return self.node

    def status(self) -> list[dict[str, object]]:
        """Each stream: its name, state, and whether it still runs."""
        return [
            {"stream": s.name, "state": str(s.state), "running": not s.done, "error": s.error}
            for s in self._snapshots()
        ]

    def stop(self) -> None:
        """Save what the streams learned and stop watching (before a move)."""
        self._stop.set()
        self._save()
        self.watcher.close()

    def _orphaned(self) -> None:
        """End this process once its raylet is gone. A host that hung and wakes finds it
        was declared dead and its raylet exits, but a worker can run on, watching streams
        that another host has taken over. (Seen with Ray 2.60: a minute and more.)"""
        while not self._stop.wait(1.0):
            if not _alive(self._raylet):
                log.warning("%s: its raylet is gone: stopping (another host took over)", self.id)
                self._stop.set()
                threading.Timer(5.0, os._exit, args=(1,)).start()  # whatever close does
                self.watcher.close()
                os._exit(1)

    def _snapshots(self):
        done = {s.spec.name: (s.done, s.error) for s in self.watcher.streams}
        return [
            _Row(snap.name, snap.state, *done.get(snap.name, (False, None)))
            for snap in self.watcher.snapshot()
        ]

    def _save_every(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self._save()

    def _save(self) -> None:
        try:
            ray.get(self._controller.save.remote(self.watcher.learned()), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # the controller away for a moment: next time
            log.warning("%s: baselines not saved: %s", self.id, exc)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: assume alive, as before this check
        return True
    return "\nState:\tZ" not in status


@dataclass
class _Row:
    name: str
    state: object
    done: bool
    error: str | None


@dataclass
class _Placed:
    """The controller's record of one shard."""

    plan: ShardPlan
    handle: object = None
    started: float = 0.0  # when it was (re)created, or found restarting
    node: str | None = None  # where it said it runs
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    restored: int = 0
    moves: int = 0
    restarts: int = 0
    seen_nodes: list[str] = field(default_factory=list)


class Controller:
    """Owns the stream-to-shard map, the service-discovery list and the streams' learned
    baselines (in SQLite at ``store``, so a restarted controller has them too).

    Ray places the shards (each asks for ``focusmon_slots``, one a stream) and starts them
    again elsewhere when their host is lost; the controller notices where each shard runs
    (it says so when it starts), gives Prometheus only shards on live hosts, and moves one
    shard at a time to a host below its share (a host that joined).
    """

    def __init__(self, store: str) -> None:
        Path(store).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(store, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS learned (stream TEXT PRIMARY KEY, data TEXT)")
        self._db.commit()
        self._lock = threading.RLock()
        self._shards: dict[str, _Placed] = {}
        self._alive: dict[str, dict] = {}  # node id -> ray.nodes() entry, for live nodes
        self._settings = FleetSettings()
        self._make_sinks: Callable | None = None
        self._config: WatchConfig | None = None
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self.moves = 0

    # -- the fleet --------------------------------------------------------------------------

    def start(self, config: WatchConfig, make_sinks: Callable) -> dict[str, object]:
        """Start a shard for each group of streams. The same configuration again (the
        command restarted) keeps the fleet as it runs; another replaces it."""
        if self._config is not None and self._config != config:
            self.stop()
            self._stop.clear()
        with self._lock:
            if self._shards:
                return self.summary()
            self._config, self._make_sinks, self._settings = config, make_sinks, config.fleet
            for plan in shards_of(config.streams, config.fleet.streams_per_shard):
                placed = self._shards[plan.id] = _Placed(plan)
                self._create(placed, node=None)
        self._refresh_nodes()
        if self._monitor is None or not self._monitor.is_alive():
            self._monitor = threading.Thread(target=self._watch_fleet, name="fleet", daemon=True)
            self._monitor.start()
        return self.summary()

    def stop(self) -> None:
        """Stop every shard (each saves its baselines first)."""
        self._stop.set()
        with self._lock:
            shards = list(self._shards.values())
        calls = [p.handle.stop.remote() for p in shards if p.handle is not None]
        with contextlib.suppress(Exception):
            ray.wait(calls, num_returns=len(calls), timeout=2 * CALL_TIMEOUT_S)
        for placed in shards:
            with contextlib.suppress(Exception):
                ray.kill(placed.handle, no_restart=True)
        with self._lock:
            self._shards.clear()

    # -- what shards say ------------------------------------------------------------------

    def register(
        self, shard_id: str, node: str, host: str, port: int | None, pid: int, restored: int
    ) -> None:
        with self._lock:
            placed = self._shards.get(shard_id)
            if placed is None:
                return
            if placed.node is not None and placed.node != node:
                placed.restarts += 1
            placed.node, placed.host, placed.port, placed.pid = node, host, port, pid
            placed.restored = restored
            placed.seen_nodes.append(node)
        log.info("%s runs on %s (%s:%s), %d baselines restored", shard_id, node[:8], host,
                 port, restored)  # fmt: skip

    def save(self, learned: Mapping[str, object]) -> None:
        rows = [(name, json.dumps(data)) for name, data in learned.items() if data]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO learned VALUES (?, ?)", rows)
            self._db.commit()

    def learned(self, names: Sequence[str]) -> dict[str, object]:
        with self._lock:
            found = {}
            for name in names:
                row = self._db.execute(
                    "SELECT data FROM learned WHERE stream = ?", (name,)
                ).fetchone()
                if row is not None:
                    found[name] = json.loads(row[0])
            return found

    # -- what the outside asks ----------------------------------------------------------------

    def targets(self) -> list[dict[str, object]]:
        """Prometheus ``http_sd``: one target a shard that runs on a live host."""
        with self._lock:
            return [
                {
                    "targets": [f"{p.host}:{p.port}"],
                    "labels": {"shard": sid, "host": p.host, "node": p.node[:12]},
                }
                for sid, p in sorted(self._shards.items())
                if self._running(p)
            ]

    def summary(self) -> dict[str, object]:
        """Shards by state, streams by state of their shard, moves, and whether the loss of
        ``spare_hosts`` hosts would still leave room for every shard."""
        with self._lock:
            states = {sid: self._state(p) for sid, p in self._shards.items()}
            needed = sum(p.plan.slots for p in self._shards.values())
            capacity = self._capacity()
        counts = dict(collections.Counter(states.values()))
        return {
            "shards": counts,
            "streams": sum(len(p.plan.streams) for p in self._shards.values()),
            "moves": self.moves,
            "capacity": sum(capacity.values()),
            "needed": needed,
            "spare_ok": room_after_losing(capacity, needed, self._settings.spare_hosts),
        }

    def status(self) -> list[dict[str, object]]:
        """Every shard: state, host, target, and its streams' states (asked of the shard)."""
        with self._lock:
            shards = sorted(self._shards.items())
            rows = [
                {
                    "shard": sid, "state": self._state(p), "host": p.host, "node": p.node,
                    "target": f"{p.host}:{p.port}" if p.port else None,
                    "restarts": p.restarts, "moves": p.moves, "restored": p.restored,
                    "pid": p.pid,
                    "streams": [{"stream": s.name, "state": "?"} for s in p.plan.streams],
                }
                for sid, p in shards
            ]  # fmt: skip
        asks = {
            row["shard"]: p.handle.status.remote()
            for row, (_, p) in zip(rows, shards, strict=True)
            if row["state"] == "running"
        }
        for row in rows:
            ref = asks.get(row["shard"])
            if ref is None:
                continue
            try:
                row["streams"] = ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # busy or gone: say so, the rest still answers
                row["error"] = f"{type(exc).__name__}"
        return rows

    # -- placing and watching -----------------------------------------------------------------

    def _create(self, placed: _Placed, node: str | None) -> None:
        assert self._config is not None
        plan = placed.plan
        strategy = "DEFAULT" if node is None else NodeAffinitySchedulingStrategy(node, soft=True)
        gpus = self._settings.gpus_per_shard
        actor = ray.remote(Shard).options(
            max_restarts=-1, max_task_retries=0, num_cpus=0, num_gpus=gpus,
            resources={SLOTS: plan.slots}, max_concurrency=4, scheduling_strategy=strategy,
        )  # fmt: skip
        config = dataclasses.replace(
            self._config, streams=plan.streams, service=shard_service(self._config, gpus)
        )
        every = self._settings.save_every_s
        placed.handle = actor.remote(plan.id, config, self._make_sinks, every)
        placed.started = time.monotonic()
        placed.node = placed.host = placed.port = None

    def _state(self, placed: _Placed) -> str:
        if self._running(placed):
            return "running"
        if time.monotonic() - placed.started > WAITING_AFTER_S:
            return "waiting"  # for a host with room
        return "starting"

    def _running(self, placed: _Placed) -> bool:
        return placed.port is not None and placed.node in self._alive

    def _capacity(self) -> dict[str, float]:
        return {
            node: float(entry.get("Resources", {}).get(SLOTS, 0.0))
            for node, entry in self._alive.items()
            if entry.get("Resources", {}).get(SLOTS, 0.0) > 0
        }

    def _refresh_nodes(self) -> None:
        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        with self._lock:
            self._alive = alive
            for placed in self._shards.values():
                if placed.node is not None and placed.node not in alive:
                    # Its host is lost: Ray starts it again elsewhere; until it says where,
                    # it is not a target (nor its streams served twice).
                    log.warning("%s: its host %s is lost; Ray restarts it elsewhere",
                                placed.plan.id, placed.node[:8])  # fmt: skip
                    placed.node = placed.host = placed.port = None
                    placed.started = time.monotonic()

    def _watch_fleet(self) -> None:
        last_move = 0.0
        while not self._stop.wait(1.0):
            try:
                self._refresh_nodes()
                if time.monotonic() - last_move >= self._settings.rebalance_every_s:
                    if self._rebalance():
                        last_move = time.monotonic()
            except Exception as exc:  # never let the watch of the fleet die
                log.warning("fleet check failed: %s", exc)

    def _rebalance(self) -> bool:
        """Move one shard to a host below its share, if every shard runs; True if moved."""
        with self._lock:
            if not all(self._running(p) for p in self._shards.values()):
                return False  # one change at a time: let the last settle first
            placed = {sid: p.node for sid, p in self._shards.items()}
            sizes = {sid: p.plan.slots for sid, p in self._shards.items()}
            move = next_move(placed, sizes, self._capacity())
            if move is None:
                return False
            shard_id, node = move
            moving = self._shards[shard_id]
            handle = moving.handle
        log.info("moving %s to %s, which has less than its share", shard_id, node[:8])
        with contextlib.suppress(Exception):
            ray.get(handle.stop.remote(), timeout=2 * CALL_TIMEOUT_S)  # baselines saved
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
        with self._lock:
            self._create(moving, node=node)
            moving.moves += 1
            self.moves += 1
        return True
