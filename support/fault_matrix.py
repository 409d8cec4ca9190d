"""Fault injection through the real `Watcher` (what ``focusmon watch`` runs), default timeouts.

The requirement (the "reliability" issue): with default settings a stream shows
``no_signal`` within 15 s of a fault, comes back by itself when the fault clears, and
neither the fault nor its recovery touches the other streams or leaks a thread or a file
descriptor.

One `Watcher` runs every fault at once, each on its own stream, beside a healthy RTSP
camera; all servers are real, on 127.0.0.1 (../shared/TESTING.md):

=========  ===================================================  ===========================
stream     fault                                                cleared by
=========  ===================================================  ===========================
kill       gst-rtsp-server SIGKILLed, away for `KILL_DOWN_S`    a new one on the same port
stall      gst-rtsp-server SIGSTOPped past the read timeout     SIGCONT
restart    gst-rtsp-server SIGKILLed and started again at once  itself
http404    an HTTP server answering 404                         never
refused    an RTSP URL with nothing listening                   a camera starting there
udp        the ffmpeg MPEG-TS sender stopped, past the timeout  a new sender
=========  ===================================================  ===========================

`run_matrix` does the run and returns what was seen; tests/integration/test_faults.py
judges it, and ``bench/bench_faults.py`` repeats it for the README's figures.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from focusmon.config import ServiceSettings, StreamSpec, WatchConfig
from focusmon.pipeline import Watcher
from focusmon.scheduler import StateChange
from focusmon.sinks import BaseSink, StreamSnapshot
from focusmon.source import SourceOptions

from media import h264_clip
from servers import (
    camera_launch,
    ffmpeg_reason,
    ffmpeg_sender,
    free_port,
    http_folder,
    poll,
    rtsp_camera,
    rtsp_server_reason,
)

#: Why the matrix cannot run here (a tool missing), if it cannot.
MISSING = [reason for reason in (rtsp_server_reason(), ffmpeg_reason()) if reason]

#: The settings under test: the defaults. Nothing here shortens a timeout.
DEFAULTS = SourceOptions()
#: The requirement: a fault shows as no_signal within this long.
NOTICE_LIMIT_S = 15.0
#: From a server answering to the first frame scored: RTSP DESCRIBE/SETUP/PLAY and the first
#: keyframe take ~1.2 s here (TESTING.md); 5 s leaves room for a loaded 2-core machine.
FIRST_FRAME_S = 5.0
#: How long the killed camera stays away.
KILL_DOWN_S = 5.0
#: The stalled camera and the stopped sender stay so past the read timeout: the reader gives
#: the connection up and waits in a new open (for RTSP, on the frozen server: half-open).
HOLD_S = DEFAULTS.timeout_s + 2.0
#: Frames each initially working stream scores before the faults (~2 s at 25 fps).
WARM_FRAMES = 50
#: After the last recovery, every stream is watched this long more to stay recovered.
SETTLE_S = 2.0
SAMPLE_S = 0.1
#: Bounds of the waits in a run, so that a stream that never notices or never recovers
#: fails the run with what was seen instead of hanging it.
STARTUP_LIMIT_S = 30.0
WAIT_LIMIT_S = 25.0

FAULTS = ("kill", "stall", "restart", "http404", "refused", "udp")
RECOVERABLE = ("kill", "stall", "restart", "refused", "udp")
FAULTY_FROM_START = ("http404", "refused")
HEALTHY = "healthy"

T = TypeVar("T")


def backoff_bound(down_s: float, options: SourceOptions = DEFAULTS) -> float:
    """The longest reconnection wait that can be under way when a source that has failed to
    connect for ``down_s`` seconds gets its server back.

    `Backoff` waits ``initial * 2**k`` (at most ``reconnect_max_s``) times a factor in
    [0.5, 1]: wait k starts at the earliest after half the sum of the ones before it, and
    lasts at most its full length.
    """
    start, k = 0.0, 0
    while True:
        base = min(options.reconnect_max_s, options.reconnect_initial_s * 2**k)
        if start + 0.5 * base > down_s:
            return base
        start += 0.5 * base
        k += 1


def recover_bound(down_s: float) -> float:
    """Fault cleared to a frame scored again: a backoff wait under way, then a connection."""
    return backoff_bound(down_s) + FIRST_FRAME_S


# -- what a run records --------------------------------------------------------------------


class Recorder(BaseSink):
    """A sink: every StateChange, stamped with `time.monotonic` when emitted; every
    stream's snapshot each `SAMPLE_S`, taken from another thread as the metrics endpoint
    does; and focusmon's warnings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[float, StateChange]] = []
        self.samples: list[tuple[float, dict[str, StreamSnapshot]]] = []
        self.warnings: list[tuple[float, str]] = []

    def on_change(self, change: StateChange) -> None:
        with self._lock:
            self.events.append((time.monotonic(), change))

    def sample(self, watcher: Watcher) -> dict[str, StreamSnapshot]:
        snapshots = {s.name: s for s in watcher.snapshot()}
        with self._lock:
            self.samples.append((time.monotonic(), snapshots))
        return snapshots

    def warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append((time.monotonic(), message))

    def events_of(self, stream: str, since: float = -math.inf) -> list[tuple[float, StateChange]]:
        with self._lock:
            return [(t, c) for t, c in self.events if c.stream == stream and t >= since]

    def samples_of(
        self, stream: str, since: float = -math.inf, until: float = math.inf
    ) -> list[tuple[float, StreamSnapshot]]:
        with self._lock:
            return [(t, s[stream]) for t, s in self.samples if since <= t <= until]

    def first_event(
        self, stream: str, since: float, test: Callable[[StateChange], bool]
    ) -> float | None:
        """When ``stream``'s first change since ``since`` that passes ``test`` came."""
        return next((t for t, c in self.events_of(stream, since) if test(c)), None)


class _WarningCatcher(logging.Handler):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.WARNING)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        self.recorder.warn(record.getMessage())


@dataclass
class FaultOutcome:
    """What one faulty stream went through, in `time.monotonic` seconds."""

    fault: str
    injected_at: float
    noticed_at: float | None = None  # the no_signal StateChange
    cleared_at: float | None = None  # the server back
    recovered_at: float | None = None  # the StateChange out of no_signal
    recover_limit_s: float | None = None

    @property
    def noticed_s(self) -> float | None:
        return None if self.noticed_at is None else self.noticed_at - self.injected_at

    @property
    def recovered_s(self) -> float | None:
        if self.recovered_at is None or self.cleared_at is None:
            return None
        return self.recovered_at - self.cleared_at


@dataclass
class MatrixRun:
    """A run of `run_matrix`: the outcomes, the record, and the leak counts."""

    faults: tuple[str, ...]
    started_at: float  # the watcher
    warm_at: float  # every stream that should be working is: faults are injected
    stopped_at: float
    outcomes: dict[str, FaultOutcome]
    urls: dict[str, str]
    recorder: Recorder
    errors: dict[str, str | None]  # each stream's StreamStatus.error
    threads: tuple[int, int]  # before anything started, after everything stopped
    fds: tuple[int, int]
    failures: list[str] = field(default_factory=list)  # scenario steps that timed out

    def frames(self, stream: str, at: float) -> int:
        """``stream``'s frames analysed in the last sample at or before ``at``."""
        seen = self.recorder.samples_of(stream, until=at)
        return seen[-1][1].frames_analysed if seen else 0


# -- the run -------------------------------------------------------------------------------


def _sleep_until(at: float) -> None:
    time.sleep(max(at - time.monotonic(), 0.0))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Matrix:
    """The servers and the watcher of one run, and a method per fault (each run on its own
    thread, every wait in it bounded)."""

    def __init__(self, stack: ExitStack, workdir: Path, faults: tuple[str, ...]) -> None:
        self._stack, self._lock = stack, threading.Lock()
        self.faults = faults
        self.recorder = Recorder()
        self.outcomes: dict[str, FaultOutcome] = {}
        self.failures: list[str] = []
        self.ports = {n: free_port() for n in (HEALTHY, *faults) if n != "http404"}
        urls = {n: f"rtsp://127.0.0.1:{port}/cam" for n, port in self.ports.items()}
        self.cameras = {
            name: self.start(rtsp_camera(self.ports[name], camera_launch("smpte")))
            for name in (HEALTHY, "kill", "stall", "restart")  # smpte: bright, never dark
            if name in self.ports
        }
        if "http404" in faults:
            web = workdir / "web"
            web.mkdir(exist_ok=True)
            urls["http404"] = self.start(http_folder(web)) + "/missing.ts"
        if "udp" in faults:
            clip = workdir / "clip.ts"
            if not clip.exists():
                h264_clip(clip, 10.0, gop=25)
            urls["udp"] = f"udp://127.0.0.1:{self.ports['udp']}"
            self._sender_args = ["-i", str(clip), "-c", "copy", "-f", "mpegts",
                                 f"{urls['udp']}?pkt_size=1316"]  # fmt: skip
        self.names, self.urls = (HEALTHY, *faults), urls
        specs = [StreamSpec(name, urls[name]) for name in self.names]  # default options
        config = WatchConfig(ServiceSettings(threads=1), specs)
        self.watcher = Watcher(config, [self.recorder])

    def start(self, server: AbstractContextManager[T]) -> T:
        """Start ``server``; it is stopped with the others, after the watcher."""
        with self._lock:
            return self._stack.enter_context(server)

    def start_camera(self, name: str) -> None:
        self.start(rtsp_camera(self.ports[name], camera_launch("smpte")))

    def run(self) -> None:
        """Start watching, wait for the working streams, inject every fault at once, and
        return once each has been noticed and (if it can) recovered."""
        recorder, watcher = self.recorder, self.watcher
        self.started_at = time.monotonic()
        watcher.start()
        for name in FAULTY_FROM_START:
            if name in self.faults:
                self.outcomes[name] = FaultOutcome(name, self.started_at)
        if "udp" in self.faults:  # the reader is listening: now the sender (TESTING.md)
            self.udp_sender = self.start(ffmpeg_sender(*self._sender_args))
        working = [n for n in self.names if n not in FAULTY_FROM_START]
        warm = poll(
            lambda: all(recorder.sample(watcher)[n].frames_analysed >= WARM_FRAMES
                        for n in working),
            STARTUP_LIMIT_S,
        )  # fmt: skip
        if not warm:
            last = {n: (s.state, s.frames_analysed) for n, s in recorder.sample(watcher).items()}
            errors = {status.spec.name: status.error for status in watcher.streams}
            raise RuntimeError(
                f"the streams did not start within {STARTUP_LIMIT_S} s: {last}; errors: "
                f"{errors}; last warnings: {[m for _, m in recorder.warnings[-5:]]}"
            )
        self.warm_at = time.monotonic()
        threads = [
            threading.Thread(target=self._guarded, args=(name,), name=f"fault {name}")
            for name in self.faults
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 2 * STARTUP_LIMIT_S + 3 * WAIT_LIMIT_S  # > any scenario
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            raise RuntimeError(f"fault scenarios still running: {stuck}")
        time.sleep(SETTLE_S)

    def _guarded(self, name: str) -> None:
        try:
            getattr(self, f"fault_{name}")()
        except BaseException as exc:  # pytest.fail too: a thread's end, reported with the run
            self.failures.append(f"{name}: {exc!r}")

    # -- waiting for the watcher --------------------------------------------------------

    def _notice(self, outcome: FaultOutcome) -> None:
        outcome.noticed_at = poll(
            lambda: self.recorder.first_event(
                outcome.fault, outcome.injected_at, lambda c: c.state == "no_signal"
            ),
            WAIT_LIMIT_S,
        )
        if outcome.noticed_at is None:
            self.failures.append(f"{outcome.fault}: no no_signal within {WAIT_LIMIT_S} s")

    def _recover(
        self, outcome: FaultOutcome, down_s: float, cleared_at: float | None = None
    ) -> None:
        """The fault has just cleared (or did at ``cleared_at``), after ``down_s`` of
        failing connections: wait for the stream to leave no_signal."""
        outcome.cleared_at = time.monotonic() if cleared_at is None else cleared_at
        outcome.recover_limit_s = recover_bound(down_s)
        since = outcome.noticed_at if outcome.noticed_at is not None else outcome.injected_at
        outcome.recovered_at = poll(
            lambda: self.recorder.first_event(
                outcome.fault, since, lambda c: c.previous == "no_signal"
            ),
            outcome.recover_limit_s + 5,  # a little past the bound: report what happened
        )

    # -- the faults ---------------------------------------------------------------------

    def fault_kill(self) -> None:
        outcome = self.outcomes["kill"] = FaultOutcome("kill", time.monotonic())
        self.cameras["kill"].stop()  # SIGKILL, to the process group
        self._notice(outcome)
        _sleep_until(outcome.injected_at + KILL_DOWN_S)
        self.start_camera("kill")
        self._recover(outcome, time.monotonic() - outcome.injected_at)

    def fault_stall(self) -> None:
        outcome = self.outcomes["stall"] = FaultOutcome("stall", time.monotonic())
        self.cameras["stall"].signal(signal.SIGSTOP)
        self._notice(outcome)
        _sleep_until(outcome.injected_at + HOLD_S)
        self.cameras["stall"].signal(signal.SIGCONT)
        # Reconnections started at the read timeout (an open waits on the frozen server).
        self._recover(outcome, HOLD_S - DEFAULTS.timeout_s)

    def fault_restart(self) -> None:
        outcome = self.outcomes["restart"] = FaultOutcome("restart", time.monotonic())
        self.cameras["restart"].stop()
        self.start_camera("restart")
        cleared_at = time.monotonic()
        self._notice(outcome)  # may come after the camera is back: it is a reconnection
        self._recover(outcome, cleared_at - outcome.injected_at, cleared_at)

    def fault_http404(self) -> None:
        self._notice(self.outcomes["http404"])

    def fault_refused(self) -> None:
        outcome = self.outcomes["refused"]
        self._notice(outcome)
        self.start_camera("refused")
        self._recover(outcome, time.monotonic() - outcome.injected_at)

    def fault_udp(self) -> None:
        outcome = self.outcomes["udp"] = FaultOutcome("udp", time.monotonic())
        self.udp_sender.stop()
        self._notice(outcome)
        _sleep_until(outcome.injected_at + HOLD_S)
        self.start(ffmpeg_sender(*self._sender_args))
        # Reconnections started at the read timeout (an open listens for the sender).
        self._recover(outcome, HOLD_S - DEFAULTS.timeout_s)


def _sample_until(recorder: Recorder, watcher: Watcher, stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_S):
        recorder.sample(watcher)


def run_matrix(workdir: Path, faults: Iterable[str] = FAULTS) -> MatrixRun:
    """Watch a healthy RTSP camera and one stream per fault in one `Watcher` with default
    options, inject the faults, and record until every recoverable one has recovered.

    Threads and file descriptors are counted before anything starts and after the watcher
    and then every server have stopped.
    """
    faults = tuple(faults)
    if not faults or set(faults) - set(FAULTS):
        raise ValueError(f"`faults` must be some of {FAULTS}, got {faults}")
    threads_before, fds_before = threading.active_count(), _open_fds()
    focusmon_log = logging.getLogger("focusmon")
    with ExitStack() as stack:
        matrix = _Matrix(stack, workdir, faults)
        catcher = _WarningCatcher(matrix.recorder)
        focusmon_log.addHandler(catcher)
        stack.callback(focusmon_log.removeHandler, catcher)
        watcher = matrix.watcher
        sampling = threading.Event()
        sampler = threading.Thread(
            target=_sample_until, args=(matrix.recorder, watcher, sampling), name="sampler"
        )
        sampler.start()
        try:
            matrix.run()
        finally:
            sampling.set()
            sampler.join(10)
            watcher.stop()
            stopped = watcher.wait(30)  # servers still up: no stream is waiting on one
            watcher.close()
            stopped_at = time.monotonic()
        if not stopped:
            raise RuntimeError("the watcher did not stop within 30 s")
        errors = {status.spec.name: status.error for status in watcher.streams}
    return MatrixRun(
        faults, matrix.started_at, matrix.warm_at, stopped_at, matrix.outcomes, matrix.urls,
        matrix.recorder, errors, (threads_before, threading.active_count()),
        (fds_before, _open_fds()), matrix.failures,
    )  # fmt: skip
