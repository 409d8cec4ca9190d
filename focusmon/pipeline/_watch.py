"""Watching many streams: the one place where config, sources, kernels, scheduler and sinks
are wired together."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import __version__, kernels
from .._errors import ConfigError
from ..config import StreamSpec, WatchConfig
from ..measures import FocusRecord, resolve_backend
from ..scheduler import (
    STATES,
    AlertState,
    AlertTracker,
    BestFrame,
    BestFramePicker,
    KeptFrame,
    StateChange,
    StreamHistory,
    no_signal,
    picture_samples,
    signal_valid,
    thumbnail,
)
from ..sinks import Sink, StreamSnapshot
from ..sinks.metrics import KernelTimes
from ..source import LumaFrame, Source, SourceState, open_source
from ._batch import BatchScorer, check_batching
from ._frames import JOIN_TIMEOUT_S, analyse, iter_frames

log = logging.getLogger("focusmon.pipeline")

#: A live stream's scorer looks at its source's state after this long without a frame.
IDLE_S = 0.5


@dataclass
class StreamStatus:
    """What is known of one watched stream now.

    Written by the stream's scoring thread; read by others (the sinks) through
    `Watcher.snapshot`, which takes ``lock`` so that a reader never sees a frame's record
    without its state, or a histogram count without its sum.
    """

    spec: StreamSpec
    source: Source
    tracker: AlertTracker
    last: FocusRecord | None = None
    last_at: float | None = None  # clock time the last record was scored
    error: str | None = None
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    kernel_times: KernelTimes = field(default_factory=KernelTimes)
    unfit: int = 0  # frames that could not be scored (the ROI outside them, ...), skipped
    unfit_why: str | None = None  # why, while such frames come
    history: StreamHistory = field(default_factory=StreamHistory)  # the recent past

    def keep(self, record: FocusRecord, at: float) -> None:
        """Keep ``record`` (scored at clock time ``at``); the caller holds ``lock``."""
        self.last, self.last_at = record, at
        self.kernel_times.observe(record.kernel_ms / 1e3)


_Score = Callable[[LumaFrame, Sequence[int] | None, Source, Sequence[int] | None], FocusRecord]


class Watcher:
    """Watches a configuration's streams, each on its own threads, until they end or
    `stop` is called, and hands what happens to its sinks.

    Sources are opened by the constructor, so a missing file or a bad option fails before
    anything starts (live sources keep retrying instead); then each sink is started
    (`Sink.start`) with this watcher as its `~focusmon.sinks.WatchView`. `start` runs each
    stream on a decode thread and a scoring thread; a stream that fails is logged and
    marked, and the others go on. A sink that raises is logged, and kept.

    Parameters
    ----------
    config : WatchConfig
        The streams, and the service settings the wiring reads: ``backend`` (each stream
        thread makes its own instance) and its ``threads``; ``batch`` and
        ``batch_wait_ms`` (score the streams' frames together, see `BatchScorer`;
        default: on a batching backend, a GPU, with more than one stream, one frame per
        stream); the best-frame window (``best_every``, ``best_seconds``, ``best_floor``),
        picked only if a sink `~focusmon.sinks.Sink.wants_best`.
    sinks : sequence of Sink
        Where state changes and best frames go; closed by `close`.
    clock, wall_clock : callable
        Monotonic seconds and Unix time (live streams' events carry Unix time).
    """

    def __init__(
        self,
        config: WatchConfig,
        sinks: Sequence[Sink] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        service = config.service
        self.config = config
        try:  # `auto` decided (and logged) once, not per stream; the options it takes
            self._backend, self._backend_options = kernels.resolve(
                service.backend, **service.backend_options
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        with resolve_backend(self._backend, **self._backend_options) as chosen:
            batches = chosen.batches  # and a backend that cannot start fails now
        specs = config.streams
        batch = service.batch
        if batch is None:
            batch = len(specs) if batches and len(specs) > 1 else 0
        check_batching(batch, service.batch_wait_ms / 1e3, 0)
        self._batch, self._batch_wait_s = batch, service.batch_wait_ms / 1e3
        self._sinks = list(sinks)
        self._picks_best = any(sink.wants_best for sink in self._sinks)
        # Sinks that keep evidence of each change: the frames from before it and at it.
        self._evidence = [s for s in self._sinks if hasattr(s, "on_evidence")]
        self._thumb_width = service.thumb_width
        # Per sink: failures so far; which of its methods fail now (logged once a burst).
        self._failures = {id(sink): 0 for sink in self._sinks}
        self._failing: set[tuple[int, str]] = set()
        self._failures_lock = threading.Lock()
        self.batcher: BatchScorer | None = None
        self._fallbacks = 0
        self._fallback_lock = threading.Lock()
        self._clock = clock
        self._epoch = wall_clock() - clock()  # live events carry Unix time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.streams: list[StreamStatus] = []
        try:
            for spec in specs:
                spec = self._host_frames_unless_gpu(spec, batches)
                options = dataclasses.replace(spec.options, retry_first_connect=True)
                source = open_source(spec.source, options, live_demo=True, stream=spec.name)
                tracker = AlertTracker(spec.name, spec.alerts, live=source.live)
                history = StreamHistory(service.history_s, frames_s=service.frames_s)
                self.streams.append(StreamStatus(spec, source, tracker, history=history))
            for sink in self._sinks:
                sink.start(self)
        except BaseException:
            for status in self.streams:
                status.source.close()
            raise

    def _host_frames_unless_gpu(self, spec: StreamSpec, gpu: bool) -> StreamSpec:
        """``spec``, asking for frames in host memory unless a GPU backend scores them and
        no frame is saved (a frame left on the GPU is of no use to anything else)."""
        if not spec.options.hw_frames or (gpu and not self._picks_best):
            return spec
        why = "frames are saved" if gpu else "the backend scores on the CPU"
        log.info("%s: decoded frames are copied to host memory: %s", spec.name, why)
        options = dataclasses.replace(spec.options, hw_frames=False)
        return dataclasses.replace(spec, options=options)

    @property
    def backend(self) -> str:
        """The backend the streams use (``auto`` resolved)."""
        return self._backend

    @property
    def info(self) -> Mapping[str, str]:
        """``version`` and ``backend``, for the sinks."""
        return {"version": __version__, "backend": self._backend}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._batch:
            self.batcher = BatchScorer(
                self._backend, self._backend_options,
                max_frames=self._batch, max_wait_s=self._batch_wait_s,
                fall_back=self.fall_back,
            )  # fmt: skip
            log.info(
                "scoring the streams' frames in batches of up to %d on %s",
                self._batch, self._backend,
            )  # fmt: skip
        for status in self.streams:
            thread = threading.Thread(
                target=self._run, args=(status,), name=f"score {status.spec.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask every stream to stop (safe from a signal handler)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the streams to end; True if they all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            thread.join(remaining)
        ended = not any(t.is_alive() for t in self._threads)
        if ended and self.batcher is not None:
            self.batcher.close()
        return ended

    def close(self) -> None:
        """Stop the streams, wait for them (a while), release their sources and close the
        sinks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        if not self.wait(JOIN_TIMEOUT_S):
            log.warning("a stream is still waiting on a read; leaving it")
        if self.batcher is not None:
            self.batcher.close()
        if not self._threads:
            for status in self.streams:
                status.source.close()
        for sink in self._sinks:
            self._tell(sink, sink.close)

    # -- one stream -----------------------------------------------------------------------

    def _run(self, status: StreamStatus) -> None:
        spec, source, tracker = status.spec, status.source, status.tracker
        picker = None
        if self._picks_best:
            frames, seconds = self.config.service.best_window
            picker = BestFramePicker(
                spec.name, window_frames=frames, window_s=seconds,
                floor=self.config.service.best_floor,
            )  # fmt: skip
        started = self._clock()
        # The focus map that `partial` judges by: scored only when it is asked for.
        grid = spec.alerts.focus_map if spec.alerts.partial_s > 0 else None
        try:
            with self._scorer() as score:
                for frame in iter_frames(source, idle_s=IDLE_S if source.live else None):
                    if self._stop.is_set():
                        break
                    if frame is None:  # nothing for a while: is the camera gone?
                        if self._lost(source, started):
                            with status.lock:
                                change = tracker.no_signal(self._clock() + self._epoch)
                            self._changed(change)
                            self._evidence_of(status, change)
                        continue
                    try:
                        record = score(frame, spec.roi, source, grid)
                    except (TypeError, ValueError) as exc:  # this frame, not the stream
                        self._unfit(status, exc)
                        continue
                    if status.unfit_why is not None:
                        log.warning("%s: frames can be scored again", spec.name)
                        status.unfit_why = None
                    when = self._time_of(frame, source)
                    view, thumb = _samples(frame, spec.roi)
                    history = status.history
                    with status.lock:  # the record and the state it led to, together
                        change = tracker.update(
                            record.scores, when, view, frame.key, thumb, record.tiles
                        )
                        status.keep(record, self._clock())
                        history.push(record.index, when, record.scores, tracker.score,
                                     tracker.state)  # fmt: skip
                        wanted = change is not None or history.wants_frame(when, tracker.score)
                    if wanted:  # a small copy of the frame, made only when it is kept
                        small = small_frame(frame, spec.roi, self._thumb_width)
                        if small is not None:
                            with status.lock:
                                history.keep_frame(frame.index, when, tracker.score, small,
                                                   force=change is not None)  # fmt: skip
                    self._changed(change)
                    self._evidence_of(status, change)
                    if picker is not None:
                        self._best(picker.push(
                            frame.index, when, record.scores, frame.luma, frame.scale,
                            frame.offset,
                        ))  # fmt: skip
            if picker is not None:
                self._best(picker.flush())
            if source.stats.ended_early:
                log.warning("%s: %s: cut short?", spec.name, source.stats.ended_early)
            if status.unfit and not source.stats.analysed:  # not one frame could be scored
                raise ValueError(status.unfit_why)
        except Exception as exc:  # one stream's failure must not stop the others
            status.error = str(exc)
            log.error("%s: stopped: %s", spec.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            source.close()
            status.done = True

    @staticmethod
    def _unfit(status: StreamStatus, exc: Exception) -> None:
        """A frame that cannot be scored (a camera whose resolution fell below the ROI, a
        frame smaller than 3x3) is counted and skipped; scoring goes on with the next one
        that can be. Said once for each run of them."""
        status.unfit += 1
        if status.unfit_why is None:
            status.unfit_why = str(exc)
            log.warning(
                "%s: a frame cannot be scored (%s): skipping such frames until they can be",
                status.spec.name, exc,
            )  # fmt: skip

    @contextlib.contextmanager
    def _scorer(self) -> Iterator[_Score]:
        """How a stream's thread scores a frame: through the batcher, or with a backend of
        its own."""
        if self.batcher is not None:
            yield self.batcher.score
            return
        with contextlib.ExitStack() as stack:
            backend = stack.enter_context(resolve_backend(self._backend, **self._backend_options))

            def score(frame: LumaFrame, roi: Sequence[int] | None, source: Source,
                      tiles: Sequence[int] | None = None):  # fmt: skip
                nonlocal backend
                try:
                    return analyse(backend, frame, roi, source, tiles)
                except kernels.BackendError as exc:  # the GPU failed: the CPU goes on
                    name, options = self.fall_back(backend.name, exc)
                    backend = stack.enter_context(resolve_backend(name, **options))
                    return analyse(backend, frame, roi, source, tiles)

            yield score

    def _lost(self, source: Source, started: float) -> bool:
        state = source.state
        return no_signal(
            connected=state is not SourceState.CONNECTING,
            delivering=state in (SourceState.UP, SourceState.ENDED),
            waiting_s=self._clock() - started,
            open_timeout_s=source.options.open_timeout,
        )

    def _time_of(self, frame: LumaFrame, source: Source) -> float:
        if source.live and frame.arrival is not None:
            return frame.arrival + self._epoch
        return frame.pts if frame.pts is not None else float(frame.index)

    # -- the sinks ------------------------------------------------------------------------

    def _changed(self, change: StateChange | None) -> None:
        if change is not None:
            for sink in self._sinks:
                self._tell(sink, sink.on_change, change)

    def _evidence_of(self, status: StreamStatus, change: StateChange | None) -> None:
        """Hand the sinks that keep evidence the sharpest frame kept from before
        ``change`` (within ``frames_s``) and the frame at it."""
        if change is None or not self._evidence:
            return
        with status.lock:
            history = status.history
            before = history.best_frame(history.frames_s, before=change.time)
            latest = history.latest_frame()
        at = latest if latest is not None and latest.time == change.time else None
        for sink in self._evidence:
            self._tell(sink, sink.on_evidence, change, before, at)  # type: ignore[attr-defined]

    def _best(self, best: BestFrame | None) -> None:
        if best is not None:
            for sink in self._sinks:
                if sink.wants_best:
                    self._tell(sink, sink.on_best, best)

    def _tell(self, sink: Sink, method: Callable, *args: object) -> None:
        """Call one of ``sink``'s methods. A failure (a full disk, a broker away) is
        counted and logged once for each burst of them, and never stops a stream."""
        name, key = type(sink).__name__, (id(sink), method.__name__)
        try:
            method(*args)
        except Exception as exc:
            with self._failures_lock:
                self._failures[id(sink)] = self._failures.get(id(sink), 0) + 1
                first = not any(sink_id == id(sink) for sink_id, _ in self._failing)
                self._failing.add(key)
            if first:
                log.error(
                    "%s: %s failed: %s (counted, and not said again until it works)",
                    name, method.__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG),
                )  # fmt: skip
            return
        if self._failing and key in self._failing:
            with self._failures_lock:
                self._failing.discard(key)
                healed = not any(sink_id == id(sink) for sink_id, _ in self._failing)
                count = self._failures[id(sink)]
            if healed:
                log.warning("%s: works again (%d failures in all)", name, count)

    def learned(self) -> dict[str, dict[str, object]]:
        """Each stream's learned baselines (`AlertTracker.learned`), by name: plain data, for
        a fleet to keep where a stream that moves to another host finds it again."""
        learned = {}
        for status in self.streams:
            with status.lock:
                learned[status.spec.name] = status.tracker.learned()
        return learned

    def restore(self, learned: Mapping[str, object]) -> int:
        """Give the streams back what `learned` gave (before `start`): a stream judges at
        once, without learning again. Returns how many light levels were restored."""
        restored = 0
        for status in self.streams:
            if status.spec.name in learned:
                with status.lock:
                    restored += status.tracker.restore(learned[status.spec.name])
        return restored

    def backend_fallbacks(self) -> int:
        """Times the backend failed and the streams moved to another (at most once per
        backend: the GPU, then perhaps Numba on the CPU)."""
        return self._fallbacks

    def fall_back(self, failed: str, exc: BaseException) -> tuple[str, dict[str, object]]:
        """The backend (and options) to score with after ``failed`` raised `BackendError`:
        the next one after it that can run here, the CPU's. Said once, as an error, by the
        first stream (or the batch scorer) to meet the failure; the rest follow."""
        with self._fallback_lock:
            if self._backend == failed:
                names = kernels.names()
                ready = kernels.available()
                after = [n for n in names[names.index(failed) + 1 :] if ready[n] is None]
                chosen = after[0] if after else "numpy"
                try:  # the options it takes (``threads``), as `auto` would pass them
                    takes = kernels.resolve(chosen, **self.config.service.backend_options)
                except ValueError:
                    takes = (chosen, {})
                self._backend, self._backend_options = takes
                self._fallbacks += 1
                log.error(
                    "backend %s failed (%s): every stream is scored on %s from now on",
                    failed, exc, chosen,
                )  # fmt: skip
            return self._backend, dict(self._backend_options)

    def sink_failures(self) -> dict[str, int]:
        """Failures of each sink so far, by the sink's label (its class name unless it
        says otherwise): calls that raised, and what a sink delivering on a thread of its
        own counts itself (``failures``)."""
        with self._failures_lock:
            counts: dict[str, int] = {}
            for sink in self._sinks:
                name = _label(sink)
                own = int(getattr(sink, "failures", 0))
                counts[name] = counts.get(name, 0) + self._failures.get(id(sink), 0) + own
            return counts

    def sink_drops(self) -> dict[str, int]:
        """Messages each sink dropped (its queue full: a receiver too slow or gone)."""
        counts: dict[str, int] = {}
        for sink in self._sinks:
            if hasattr(sink, "dropped"):
                counts[_label(sink)] = counts.get(_label(sink), 0) + int(sink.dropped)
        return counts

    # -- what the sinks read --------------------------------------------------------------

    def snapshot(self) -> list[StreamSnapshot]:
        """Every stream as one consistent, finite view."""
        now = self._clock()
        return [self._snapshot_of(status, now) for status in self.streams]

    def _snapshot_of(self, status: StreamStatus, now: float) -> StreamSnapshot:
        stats, tracker, times = status.source.stats, status.tracker, status.kernel_times
        with status.lock:
            last, last_at = status.last, status.last_at
            state, score, baseline = tracker.state, tracker.score, tracker.baseline
            tiles = tracker.tile_ratios() if self.config.service.tile_metrics else None
            buckets, count, total = list(times.buckets), times.count, times.sum_s
        up = status.source.state is SourceState.UP and not status.done
        frame_at = stats.last_frame_at
        return StreamSnapshot(
            name=status.spec.name, state=state, up=up,
            frames_decoded=stats.decoded, frames_analysed=stats.analysed,
            frames_dropped=stats.dropped, frames_corrupt=stats.corrupt,
            packets_undecodable=stats.undecodable, reconnects=stats.reconnects,
            last_frame_age_s=None if frame_at is None else max(now - frame_at, 0.0),
            scores=None if last is None else last.scores.as_dict(),
            score=None if last is None else score,
            baseline=baseline or None,
            signal_valid=signal_valid(
                state, None if last_at is None else now - last_at,
                status.spec.options.stall_after,
            ),
            processing_buckets=buckets, processing_count=count, processing_sum_s=total,
            frames_unfit=status.unfit, tiles=tiles,
        )  # fmt: skip

    def live(self) -> list[dict[str, object]]:
        """Every stream as the live page shows it, JSON-ready: ``name``, ``state``,
        ``up``, ``score`` and ``baseline`` (None until known), ``frame`` (the newest kept
        small frame's time, None without one) and ``tiles`` (each tile's sharpness over
        its baseline, rows of tiles, or None)."""
        out = []
        for status in self.streams:
            with status.lock:
                tracker, latest = status.tracker, status.history.latest_frame(copy=False)
                judged = status.last is not None
                out.append({
                    "name": status.spec.name, "state": str(tracker.state),
                    "up": status.source.state is SourceState.UP and not status.done,
                    "score": _finite_or_none(tracker.score) if judged else None,
                    "baseline": _finite_or_none(tracker.baseline) or None,
                    "frame": None if latest is None else latest.time,
                    "tiles": tracker.tile_ratios(),
                })  # fmt: skip
        return out

    def history_of(self, name: str, seconds: float | None = None) -> dict[str, list] | None:
        """The stream ``name``'s records of the last ``seconds`` (all kept by default),
        JSON-ready lists: ``time``, ``index``, ``score``, ``state`` (names); None for a
        name no stream has."""
        status = self._status_of(name)
        if status is None:
            return None
        with status.lock:
            got = status.history.records(seconds)
        names = [str(s) for s in STATES]  # the history keeps a state as its index here
        return {"time": got["time"].tolist(), "index": got["index"].tolist(),
                "score": got["score"].tolist(),
                "state": [names[k] for k in got["state"].tolist()]}  # fmt: skip

    def kept_frame(self, name: str, seconds: float | None = None) -> KeptFrame | None:
        """The stream ``name``'s newest kept small frame, or with ``seconds`` the sharpest
        of the last ``seconds``; None for no such frame or stream."""
        status = self._status_of(name)
        if status is None:
            return None
        with status.lock:
            history = status.history
            return history.latest_frame() if seconds is None else history.best_frame(seconds)

    def stream_names(self) -> list[str]:
        """The configured streams' names, in order."""
        return [s.spec.name for s in self.streams]

    def _status_of(self, name: str) -> StreamStatus | None:
        # Matched exactly against the configured names: never a path, never a pattern.
        return next((s for s in self.streams if s.spec.name == name), None)

    def healthy(self) -> bool:
        """At least one stream still running, or all of them ended without an error."""
        return any(not s.done for s in self.streams) or not any(s.error for s in self.streams)

    def health_report(self) -> list[str]:
        """One line per stream: running (and its state), ended, or stopped and why — so a
        stream that failed among running ones is seen, not only counted."""
        lines = []
        for status in self.streams:
            with status.lock:
                state: AlertState = status.tracker.state
            if status.error is not None:
                how = f"stopped: {status.error}"
            elif status.done:
                early = status.source.stats.ended_early
                how = f"ended ({early}: cut short?)" if early else "ended"
            else:
                how = f"running, {status.source.state.value}, {state}"
                if status.unfit_why is not None:
                    how += f"; skipping frames: {status.unfit_why}"
            lines.append(f"{status.spec.name}: {how}")
        return lines


def _host_luma(frame: LumaFrame, roi: Sequence[int] | None) -> np.ndarray | None:
    """The frame's luma (its ROI) in host memory, or None for a frame left on the GPU."""
    luma = frame.luma
    if not isinstance(luma, np.ndarray):
        return None
    if roi is not None:
        x, y, w, h = roi
        luma = luma[y : y + h, x : x + w]
    return luma


def _samples(frame: LumaFrame, roi: Sequence[int] | None):
    """`picture_samples` and `thumbnail` of a frame in host memory (its ROI), for the
    frozen and moved checks; Nones for a frame left on the GPU (judged neither)."""
    luma = _host_luma(frame, roi)
    if luma is None:
        return None, None
    return (picture_samples(luma, frame.scale, frame.offset),
            thumbnail(luma, frame.scale, frame.offset))  # fmt: skip


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def small_frame(frame: LumaFrame, roi: Sequence[int] | None, width: int) -> np.ndarray | None:
    """A frame in host memory (its ROI) made small for the history: ``width`` pixels wide
    (never wider than it is), 8-bit grey levels (a 16-bit or limited-range frame scaled as
    its measures are), area-averaged; None for a frame left on the GPU."""
    luma = _host_luma(frame, roi)
    if luma is None:
        return None
    h, w = luma.shape
    width = min(width, w)
    height = max(1, round(h * width / w))
    small = cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA)
    if small.dtype != np.uint8 or frame.scale != 1.0 or frame.offset != 0.0:
        grey = (small.astype(np.float32) - np.float32(frame.offset)) * np.float32(frame.scale)
        small = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
    return small


def _label(sink: Sink) -> str:
    return str(getattr(sink, "label", type(sink).__name__))
