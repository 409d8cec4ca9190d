"""The wiring: a decode thread per source feeding a scoring thread through a small queue.

Why two threads: PyAV's decoder and the Numba kernel both release the GIL, so on two
cores decoding and scoring overlap. The decode thread does as little Python per frame as
it can (taking the luma view, one queue put): Python work beside the decoder slows it.

Files never drop a frame: a full queue makes the decoder wait. Live sources keep only the
newest frame: a frame the scorer has not taken yet is replaced, and counted as dropped,
so analysis never falls behind real time.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ._errors import ConfigError, check_int
from .kernels import Backend, check_roi
from .measures import FocusRecord, resolve_backend, score_frame
from .scheduler import AlertSettings, AlertTracker, BestFrame, BestFramePicker, StateChange
from .sinks import FrameSaver
from .sinks.metrics import PROCESSING_BUCKETS, MetricsServer, StreamSnapshot, serve_metrics
from .source import LumaFrame, Source, SourceOptions, SourceState, open_source

log = logging.getLogger("focusmon.pipeline")

#: Frames a file's decoder may run ahead of the scorer.
FILE_QUEUE = 4
#: Seconds `score_source` waits for its decode thread when it stops early.
JOIN_TIMEOUT_S = 5.0
#: A live stream's scorer looks at its source's state after this long without a frame.
IDLE_S = 0.5


class FrameQueue:
    """A bounded hand-over of frames from one producer thread to one consumer.

    With ``drop_oldest`` a put into a full queue replaces the oldest frame and calls
    ``on_drop``; without, it waits for room. `close` ends it: the consumer gets the frames
    still queued, then None (or the producer's error, re-raised).
    """

    def __init__(
        self, capacity: int, *, drop_oldest: bool, on_drop: Callable[[], None] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError(f"`capacity` must be >= 1, got {capacity}")
        self._items: collections.deque[LumaFrame] = collections.deque()
        self._capacity = capacity
        self._drop_oldest = drop_oldest
        self._on_drop = on_drop
        self._ready = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def put(self, frame: LumaFrame) -> bool:
        """Hand over ``frame``; False once the queue is closed (the producer should stop)."""
        with self._ready:
            while len(self._items) >= self._capacity and not self._closed:
                if self._drop_oldest:
                    self._items.popleft()
                    if self._on_drop is not None:
                        self._on_drop()
                else:
                    self._ready.wait()
            if self._closed:
                return False
            self._items.append(frame)
            self._ready.notify_all()
            return True

    def get(self, timeout: float | None = None) -> LumaFrame | None:
        """The next frame, or None at the end. Raises the producer's error once the frames
        before it are consumed, and TimeoutError if nothing comes within ``timeout``."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError(f"no frame within {timeout} s")
            if self._items:
                frame = self._items.popleft()
                self._ready.notify_all()
                return frame
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return None

    def close(self, error: BaseException | None = None) -> None:
        """End the queue, optionally with the producer's ``error``."""
        with self._ready:
            self._closed = True
            if error is not None and self._error is None:
                self._error = error
            self._ready.notify_all()

    def discard(self) -> None:
        """Close and forget what is queued (the consumer is leaving)."""
        with self._ready:
            self._items.clear()
        self.close()


def _decode_into(source: Source, frames: FrameQueue) -> None:
    """The decode thread: every kept frame of ``source`` into ``frames``."""
    try:
        for frame in source:
            if not frames.put(frame):
                break
    except BaseException as exc:  # handed to the consumer, which raises it
        frames.close(exc)
    else:
        frames.close()


def iter_frames(
    source: Source, *, queue_size: int = FILE_QUEUE, idle_s: float | None = None
) -> Iterator[LumaFrame | None]:
    """``source``'s frames, decoded on their own thread.

    With ``idle_s``, None is yielded whenever no frame came for that long, so the caller
    can look at the source's state meanwhile. Stopping the iteration early (``break``, an
    error in the loop body) stops the decode thread and closes the source.
    """

    def count_drop() -> None:
        source.stats.dropped += 1

    live = source.live
    frames = FrameQueue(1 if live else queue_size, drop_oldest=live, on_drop=count_drop)
    thread = threading.Thread(
        target=_decode_into, args=(source, frames), name=f"decode {source.name}", daemon=True
    )
    thread.start()
    try:
        while True:
            try:
                frame = frames.get(idle_s)
            except TimeoutError:
                yield None
                continue
            if frame is None:
                return
            yield frame
    finally:
        source.close()
        frames.discard()
        thread.join(JOIN_TIMEOUT_S)
        if thread.is_alive():  # blocked in a read: it ends within the source's timeout
            log.warning("%s: the decoder is still waiting on a read; leaving it", source.name)


def score_source(
    source: Source,
    backend: Backend,
    *,
    roi: Sequence[int] | None = None,
    max_frames: int | None = None,
) -> Iterator[FocusRecord]:
    """Score ``source``'s frames (those its options keep) with ``backend``, in decode order.

    Decoding runs on its own thread; scoring on the caller's.

    Raises
    ------
    ConfigError
        If ``roi`` does not fit the frames (checked on each new frame size).
    SourceError
        If decoding fails part-way.
    """
    if max_frames is not None:
        check_int("max_frames", max_frames, 1)
    checked_shape = None
    stats = source.stats
    for frame in iter_frames(source):
        if roi is not None and frame.luma.shape != checked_shape:
            try:
                check_roi(roi, frame.luma.shape)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            checked_shape = frame.luma.shape
        record = _analyse(backend, frame, roi, source)
        yield record
        if max_frames is not None and stats.analysed >= max_frames:
            return


def _analyse(
    backend: Backend, frame: LumaFrame, roi: Sequence[int] | None, source: Source
) -> FocusRecord:
    """Score one of ``source``'s frames and count it as analysed."""
    record = score_frame(
        backend, frame.luma, frame.index, frame.pts, roi=roi,
        scale=frame.scale, offset=frame.offset,
    )  # fmt: skip
    source.stats.analysed += 1
    return record


# -- scoring many streams' frames together (a GPU) ----------------------------------------


@dataclass(eq=False)
class _Request:
    """One stream's frame waiting for its batch."""

    frame: LumaFrame
    roi: Sequence[int] | None
    source: Source
    done: threading.Event = field(default_factory=threading.Event)
    record: FocusRecord | None = None
    error: BaseException | None = None

    def finish(self, record: FocusRecord | None, error: BaseException | None = None) -> None:
        self.record, self.error = record, error
        self.done.set()


def _check_batching(max_frames: object, max_wait_s: object, least: int) -> None:
    check_int("batch", max_frames, least)
    if not (isinstance(max_wait_s, (int, float)) and 0 <= max_wait_s <= 1):
        raise ConfigError(
            f"the batch wait (`batch_wait_s`, `--batch-wait-ms`) must be 0 to 1 s (1000 ms), "
            f"got {max_wait_s!r} s"
        )


class BatchScorer:
    """Scores the frames of many streams in batches, on one thread that owns the backend.

    A GPU pays off when one launch serves many streams: each stream's thread hands its
    frame to `score` and waits; the batch thread takes the first waiting frame, gathers
    what else arrives within ``max_wait_s`` (at most ``max_frames`` frames), and submits
    them as one batch. While the GPU scores batch k, the next is gathered and submitted
    (its copy overlapping batch k's kernel), then batch k's results go back to their
    threads; when nothing else is waiting, results go back at once. So a frame waits at
    most ``max_wait_s`` plus one batch for its score.

    ``kernel_ms`` of a batched record is its batch's time (submit to results) shared out
    among the batch's frames.
    """

    def __init__(
        self,
        backend: str,
        backend_options: Mapping[str, object] | None = None,
        *,
        max_frames: int = 16,
        max_wait_s: float = 0.005,
    ) -> None:
        _check_batching(max_frames, max_wait_s, 1)
        self.max_frames, self.max_wait_s = max_frames, float(max_wait_s)
        self._waiting: collections.deque[_Request] = collections.deque()
        self._arrived = threading.Condition()
        self._closed = False
        self.batches = 0  # batches submitted, and the frames in them: their mean size
        self.frames = 0
        ready = threading.Event()
        failed: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(backend, dict(backend_options or {}), ready, failed),
            name="batch scorer", daemon=True,
        )  # fmt: skip
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def score(self, frame: LumaFrame, roi: Sequence[int] | None, source: Source) -> FocusRecord:
        """Score ``frame`` of ``source`` in the next batch; waits for it (called by the
        stream's thread). Raises what scoring it raised, or ConfigError once closed."""
        request = _Request(frame, roi, source)
        with self._arrived:
            if self._closed:
                raise ConfigError("the batch scorer is closed")
            self._waiting.append(request)
            self._arrived.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        source.stats.analysed += 1
        assert request.record is not None
        return request.record

    def close(self) -> None:
        """Finish the batch in hand, fail what still waits, and stop the thread."""
        with self._arrived:
            self._closed = True
            self._arrived.notify()
        self._thread.join(JOIN_TIMEOUT_S)

    def _run(
        self, name: str, options: dict[str, object], ready: threading.Event, failed: list
    ) -> None:
        try:
            backend = resolve_backend(name, **options)
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            return
        ready.set()
        in_flight = None
        try:
            with backend:
                while True:
                    batch = self._gather(wait=in_flight is None)
                    if batch:
                        submitted = self._submit(backend, batch)
                        if in_flight is not None:  # batch k+1 is on its way: hand out k
                            self._deliver(*in_flight)
                        in_flight = submitted
                    elif in_flight is not None:  # nothing else waiting: no reason to hold k
                        self._deliver(*in_flight)
                        in_flight = None
                    elif self._closed:
                        break
        finally:  # also if this thread fails: no stream may wait forever
            with self._arrived:
                self._closed = True
            for request in self._drain():
                request.finish(None, ConfigError("the batch scorer is closed"))

    def _gather(self, *, wait: bool) -> list[_Request]:
        """The next batch: the first waiting frame (waited for if ``wait``) and what else
        arrives within ``max_wait_s`` of it, up to ``max_frames``."""
        with self._arrived:
            if wait:
                while not self._waiting and not self._closed:
                    self._arrived.wait()
            if not self._waiting:
                return []
            deadline = time.monotonic() + self.max_wait_s
            while len(self._waiting) < self.max_frames and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            return [
                self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_frames))
            ]

    def _drain(self) -> list[_Request]:
        with self._arrived:
            waiting, self._waiting = list(self._waiting), collections.deque()
        return waiting

    def _submit(self, backend: Backend, batch: list[_Request]):
        """Start scoring ``batch``; a frame the backend refuses fails alone."""
        good, views = [], []
        for request in batch:
            try:
                views.append(backend.check(request.frame.luma, request.roi))
            except (TypeError, ValueError) as exc:
                request.finish(None, ConfigError(str(exc)))
            else:
                good.append(request)
        if not good:
            return None
        start = time.perf_counter()
        try:  # the checked views, their ROIs already cut
            pending = backend.submit(
                views, scales=[r.frame.scale for r in good],
                offsets=[r.frame.offset for r in good],
            )  # fmt: skip
        except Exception as exc:
            for request in good:
                request.finish(None, exc)
            return None
        self.batches += 1
        self.frames += len(good)
        return good, pending, start

    def _deliver(self, good: list[_Request], pending, start: float) -> None:
        try:
            scores = pending.result()
        except Exception as exc:  # a device error: every frame of the batch fails
            for request in good:
                request.finish(None, exc)
            return
        share_ms = (time.perf_counter() - start) * 1e3 / len(good)
        for request, frame_scores in zip(good, scores, strict=True):
            frame = request.frame
            request.finish(FocusRecord(frame.index, frame.pts, frame_scores, share_ms))


# -- watching many streams --------------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """One stream to watch: its name, what to open and how to judge it."""

    name: str
    source: str
    roi: tuple[int, int, int, int] | None = None
    options: SourceOptions = field(default_factory=SourceOptions)
    alerts: AlertSettings = field(default_factory=AlertSettings)


@dataclass
class StreamStatus:
    """What is known of one watched stream now.

    Written by the stream's scoring thread; read by others (the metrics endpoint) through
    `Watcher.snapshot`, which takes ``lock`` so that a scrape never sees a frame's record
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
    processing: list[int] = field(default_factory=lambda: [0] * len(PROCESSING_BUCKETS))
    processing_count: int = 0
    processing_sum_s: float = 0.0

    def keep(self, record: FocusRecord, at: float) -> None:
        """Keep ``record`` (scored at clock time ``at``) and count its kernel time. The
        caller holds ``lock``."""
        seconds = record.kernel_ms / 1e3
        self.last, self.last_at = record, at
        self.processing_count += 1
        self.processing_sum_s += seconds
        for k in range(bisect.bisect_left(PROCESSING_BUCKETS, seconds), len(self.processing)):
            self.processing[k] += 1


@dataclass(frozen=True)
class BestFrames:
    """Where and how often to save the sharpest frame of each stream."""

    saver: FrameSaver
    window_frames: int | None = None
    window_s: float | None = None
    floor: float | None = None


_Score = Callable[[LumaFrame, Sequence[int] | None, Source], FocusRecord]


class Watcher:
    """Watches streams, each on its own threads, until they end or `stop` is called.

    Sources are opened by the constructor, so a missing file or a bad option fails before
    anything starts (live sources keep retrying instead). Each stream then runs on a
    decode thread and a scoring thread; a stream that fails is logged and marked, and the
    others go on.

    Parameters
    ----------
    specs : list of StreamSpec
    backend : str
        The kernel backend name; each stream thread makes its own instance.
    backend_options : mapping
        Options for the backend (``threads=``).
    on_change : callable
        Called with each `StateChange`, from the stream's thread.
    best : BestFrames, optional
    batch : int, optional
        Score the streams' frames together, at most this many per batch (see
        `BatchScorer`). Default: on a batching backend (a GPU) with more than one stream,
        one frame per stream; 0 never batches.
    batch_wait_s : float
        How long a batch waits for more frames after its first (default 5 ms).
    """

    def __init__(
        self,
        specs: Sequence[StreamSpec],
        *,
        backend: str = "auto",
        backend_options: Mapping[str, object] | None = None,
        on_change: Callable[[StateChange], None],
        best: BestFrames | None = None,
        batch: int | None = None,
        batch_wait_s: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"stream names must be unique, got {names}")
        self._backend_options = dict(backend_options or {})
        with resolve_backend(backend, **self._backend_options) as chosen:  # fail now, once
            self._backend = chosen.name  # `auto` decided (and logged) once, not per stream
            accepted = inspect.signature(type(chosen)).parameters
            self._backend_options = {
                k: v for k, v in self._backend_options.items() if k in accepted
            }
            batches = chosen.batches
        if batch is None:
            batch = len(specs) if batches and len(specs) > 1 else 0
        _check_batching(batch, batch_wait_s, 0)
        self._batch, self._batch_wait_s = batch, batch_wait_s
        specs = [self._host_frames_unless_gpu(spec, batches, best) for spec in specs]
        self.batcher: BatchScorer | None = None
        self._on_change, self._best = on_change, best
        self._clock = clock
        self._epoch = wall_clock() - clock()  # live events carry Unix time
        self._stop = threading.Event()
        self.streams: list[StreamStatus] = []
        try:
            for spec in specs:
                options = dataclasses.replace(spec.options, retry_first_connect=True)
                source = open_source(spec.source, options, live_demo=True)
                self.streams.append(
                    StreamStatus(spec, source, AlertTracker(spec.name, spec.alerts))
                )
        except BaseException:
            for status in self.streams:
                status.source.close()
            raise
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _host_frames_unless_gpu(
        spec: StreamSpec, gpu: bool, best: BestFrames | None
    ) -> StreamSpec:
        """``spec``, asking for frames in host memory unless a GPU backend scores them and
        no frame is saved (a frame left on the GPU is of no use to anything else)."""
        if not spec.options.hw_frames or (gpu and best is None):
            return spec
        why = "frames are saved" if gpu else "the backend scores on the CPU"
        log.info("%s: decoded frames are copied to host memory: %s", spec.name, why)
        options = dataclasses.replace(spec.options, hw_frames=False)
        return dataclasses.replace(spec, options=options)

    @property
    def backend(self) -> str:
        """The backend the streams use (``auto`` resolved)."""
        return self._backend

    def serve_metrics(
        self, host: str, port: int, *, certfile: str | None = None, keyfile: str | None = None
    ) -> MetricsServer:
        """Serve this watcher's streams at ``/metrics`` (and ``/healthz``)."""
        from . import __version__

        info = {"version": __version__, "backend": self._backend}
        return serve_metrics(
            self.snapshot, info, host, port, healthy=self.healthy, report=self.health_report,
            certfile=certfile, keyfile=keyfile,
        )  # fmt: skip

    def close(self) -> None:
        """Stop, and release sources whose threads never started."""
        self.stop()
        if self.batcher is not None:
            self.batcher.close()
        if not self._threads:
            for status in self.streams:
                status.source.close()

    def start(self) -> None:
        if self._batch:
            self.batcher = BatchScorer(
                self._backend, self._backend_options,
                max_frames=self._batch, max_wait_s=self._batch_wait_s,
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

    def _run(self, status: StreamStatus) -> None:
        spec, source, tracker = status.spec, status.source, status.tracker
        picker = None
        if self._best is not None:
            picker = BestFramePicker(
                window_frames=self._best.window_frames, window_s=self._best.window_s,
                floor=self._best.floor,
            )  # fmt: skip
        started = self._clock()
        try:
            with self._scorer() as score:
                for frame in iter_frames(source, idle_s=IDLE_S if source.live else None):
                    if self._stop.is_set():
                        break
                    if frame is None:  # nothing for a while: is the camera gone?
                        if self._lost(source, started):
                            with status.lock:
                                change = tracker.no_signal(self._clock() + self._epoch)
                            self._emit(change)
                        continue
                    record = score(frame, spec.roi, source)
                    when = self._time_of(frame, source)
                    with status.lock:  # the record and the state it led to, together
                        change = tracker.update(record.scores, when)
                        status.keep(record, self._clock())
                    self._emit(change)
                    if picker is not None:
                        self._save(spec.name, picker.push(
                            frame.index, when, record.scores, frame.luma, frame.scale,
                            frame.offset,
                        ))  # fmt: skip
            if picker is not None:
                self._save(spec.name, picker.flush())
        except Exception as exc:  # one stream's failure must not stop the others
            status.error = str(exc)
            log.error("%s: stopped: %s", spec.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            source.close()
            status.done = True

    @contextlib.contextmanager
    def _scorer(self) -> Iterator[_Score]:
        """How a stream's thread scores a frame: through the batcher, or with a backend of
        its own."""
        if self.batcher is not None:
            yield self.batcher.score
            return
        with resolve_backend(self._backend, **self._backend_options) as backend:
            yield lambda frame, roi, source: _analyse(backend, frame, roi, source)

    def snapshot(self) -> list[StreamSnapshot]:
        """Every stream as one consistent, finite view (for the metrics endpoint)."""
        now = self._clock()
        return [self._snapshot_of(status, now) for status in self.streams]

    def _snapshot_of(self, status: StreamStatus, now: float) -> StreamSnapshot:
        stats, tracker = status.source.stats, status.tracker
        with status.lock:
            last, last_at = status.last, status.last_at
            state, score, baseline = tracker.state, tracker.score, tracker.baseline
            buckets = list(status.processing)
            count, total = status.processing_count, status.processing_sum_s
        source_state = status.source.state
        up = source_state is SourceState.UP and not status.done
        fresh = last_at is not None and now - last_at <= status.spec.options.stall_after
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
            signal_valid=bool(fresh and state not in ("no_signal", "dark")),
            processing_buckets=buckets, processing_count=count, processing_sum_s=total,
        )  # fmt: skip

    def healthy(self) -> bool:
        """At least one stream still running, or all of them ended without an error."""
        return any(not s.done for s in self.streams) or not any(s.error for s in self.streams)

    def health_report(self) -> list[str]:
        """One line per stream: running (and its state), ended, or stopped and why — so a
        stream that failed among running ones is seen, not only counted."""
        lines = []
        for status in self.streams:
            with status.lock:
                state = status.tracker.state
            if status.error is not None:
                how = f"stopped: {status.error}"
            elif status.done:
                how = "ended"
            else:
                how = f"running, {status.source.state.value}, {state}"
            lines.append(f"{status.spec.name}: {how}")
        return lines

    def _lost(self, source: Source, started: float) -> bool:
        """No signal: stalled, reconnecting, or still not connected after the open timeout
        (a camera that is merely starting up is not an alarm)."""
        state = source.state
        if state is SourceState.CONNECTING:
            return self._clock() - started > source.options.open_timeout
        return state in (SourceState.STALLED, SourceState.RECONNECTING)

    def _time_of(self, frame: LumaFrame, source: Source) -> float:
        if source.live and frame.arrival is not None:
            return frame.arrival + self._epoch
        return frame.pts if frame.pts is not None else float(frame.index)

    def _emit(self, change: StateChange | None) -> None:
        if change is not None:
            self._on_change(change)

    def _save(self, stream: str, best: BestFrame | None) -> None:
        if best is None or self._best is None:
            return
        scores = best.scores.as_dict() if hasattr(best.scores, "as_dict") else {}
        self._best.saver.save(stream, best.index, best.time, best.luma, scores)
