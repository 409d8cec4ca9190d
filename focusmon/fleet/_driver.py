"""The side of a fleet that a person runs: connect to Ray (or start it here), start the
controller and its shards, and ask where everything runs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import ray

from .._errors import ConfigError
from ..config import WatchConfig
from ._actors import CALL_TIMEOUT_S, CONTROLLER, NAMESPACE, Controller
from ._plan import SLOTS

log = logging.getLogger("focusmon.fleet")

#: The resource Ray gives the head node alone: the controller asks for a sliver of it.
HEAD = "node:__internal_head__"


def default_store() -> str:
    """Where the controller keeps the streams' baselines: on the head's disk."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "focusmon", "fleet.sqlite")


def connect(address: str | None, *, local_slots: int = 0) -> bool:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` of its head), or start Ray on this
    machine with ``local_slots`` stream slots; True if Ray was started here."""
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _reachable(address)
    kwargs = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if address:
            ray.init(address=address, **kwargs)
            return False
        ray.init(resources={SLOTS: local_slots}, include_dashboard=False, **kwargs)
        return True
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ConfigError(f"cannot reach {where}: {exc}") from None


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, where nothing answers at ``address`` (Ray itself would
    retry for minutes)."""
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except ValueError:
        why = f"--address must be HOST:PORT or ray://HOST:PORT, got {address!r}"
        raise ConfigError(why) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}"
        ) from None


class Fleet:
    """A fleet's controller, from the process that started it (or asks about it)."""

    def __init__(self, controller: object, started_ray: bool) -> None:
        self._controller = controller
        self._started_ray = started_ray
        self._cache: dict[str, object] = {"targets": [], "summary": {}}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._start: tuple[WatchConfig, Callable] | None = None  # what to start again

    @classmethod
    def start(
        cls, config: WatchConfig, make_sinks: Callable, *, address: str | None = None,
        store: str | None = None,
    ) -> Fleet:  # fmt: skip
        """Start the fleet of ``config``'s streams: the controller (on the head node,
        detached and named) and its shards. ``address``: ``HOST:PORT`` of the head's GCS
        from a node of the cluster, or ``ray://HOST:10001`` (Ray Client) from elsewhere."""
        started = connect(address, local_slots=len(config.streams) + 1)
        controller = (
            ray.remote(Controller)
            .options(
                name=CONTROLLER, namespace=NAMESPACE, lifetime="detached", max_restarts=-1,
                num_cpus=0, max_concurrency=16, get_if_exists=True,
                # On the head, whose loss is the cluster's anyway: its store is there.
                resources={HEAD: 0.001},
            )
            .remote(store or default_store())
        )  # fmt: skip
        fleet = cls(controller, started)
        fleet._start = (config, make_sinks)
        summary = ray.get(controller.start.remote(config, make_sinks), timeout=60)
        if not summary["spare_ok"]:
            log.warning(
                "the fleet has %g stream slots for %d streams: losing %d host(s) would leave "
                "shards waiting for room (ray start --resources='{\"%s\": N}' on more hosts)",
                summary["capacity"], summary["needed"], config.fleet.spare_hosts, SLOTS,
            )  # fmt: skip
        fleet._poller = threading.Thread(target=fleet._poll, name="fleet poll", daemon=True)
        fleet._poller.start()
        return fleet

    @classmethod
    def attach(cls, address: str | None) -> Fleet:
        """The fleet running on the cluster at ``address``."""
        connect(address or "auto")
        try:
            controller = ray.get_actor(CONTROLLER, namespace=NAMESPACE)
        except ValueError:
            raise ConfigError("no focusmon fleet runs on this Ray cluster") from None
        return cls(controller, False)

    def targets(self) -> list[dict[str, object]]:
        """The service-discovery list, as last polled (never waits on Ray)."""
        return list(self._cache["targets"])  # type: ignore[arg-type]

    def summary(self) -> dict[str, object]:
        return dict(self._cache["summary"])  # type: ignore[arg-type]

    def status(self) -> list[dict[str, object]]:
        return ray.get(self._controller.status.remote(), timeout=3 * CALL_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the shards (their baselines saved), the controller, and Ray if started here."""
        self._stop.set()
        with contextlib.suppress(Exception):
            ray.get(self._controller.stop.remote(), timeout=4 * CALL_TIMEOUT_S)
        with contextlib.suppress(Exception):
            ray.kill(self._controller, no_restart=True)
        if self._started_ray:
            ray.shutdown()

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            try:
                targets = ray.get(self._controller.targets.remote(), timeout=CALL_TIMEOUT_S)
                summary = ray.get(self._controller.summary.remote(), timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # keep the last known list meanwhile
                log.warning("the fleet's controller did not answer: %s", exc)
                continue
            if self._start is not None and not summary.get("streams"):
                # Ray restarted the controller (its process died): its shards went with it.
                log.warning("the fleet's controller was restarted: starting the shards again")
                with contextlib.suppress(Exception):
                    ray.get(self._controller.start.remote(*self._start), timeout=60)
                continue
            self._cache = {"targets": targets, "summary": summary}
