"""Scoring many streams' frames together, on one thread that owns the backend (a GPU)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._errors import ConfigError, check_int
from ..kernels import Backend, BackendError, FocusMap
from ..measures import FocusRecord, resolve_backend
from ..source import LumaFrame, Source
from ._frames import JOIN_TIMEOUT_S

log = logging.getLogger("focusmon.pipeline")


@dataclass(eq=False)
class _Request:
    """One stream's frame waiting for its batch."""

    frame: LumaFrame
    roi: Sequence[int] | None
    source: Source
    tiles: Sequence[int] | None = None  # a focus map's grid, or None
    done: threading.Event = field(default_factory=threading.Event)
    record: FocusRecord | None = None
    error: BaseException | None = None

    def finish(self, record: FocusRecord | None, error: BaseException | None = None) -> None:
        self.record, self.error = record, error
        self.done.set()


def check_batching(max_frames: object, max_wait_s: object, least: int) -> None:
    """Raise ConfigError unless a batch of ``max_frames`` (at least ``least``) waiting at
    most ``max_wait_s`` makes sense."""
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

    If the backend fails (`BackendError`: a GPU fault), ``fall_back(name, error)`` names
    the backend to go on with; the frames of the failed batches are scored again on it, so
    none is lost. Without ``fall_back`` they fail with the error.
    """

    def __init__(
        self,
        backend: str,
        backend_options: Mapping[str, object] | None = None,
        *,
        max_frames: int = 16,
        max_wait_s: float = 0.005,
        fall_back: Callable[[str, BaseException], tuple[str, dict[str, object]]] | None = None,
    ) -> None:
        check_batching(max_frames, max_wait_s, 1)
        self._fall_back = fall_back
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

    def score(
        self,
        frame: LumaFrame,
        roi: Sequence[int] | None,
        source: Source,
        tiles: Sequence[int] | None = None,
    ) -> FocusRecord:
        """Score ``frame`` of ``source`` (and its focus map over ``tiles``) in the next
        batch; waits for it (called by the stream's thread). Raises what scoring it
        raised, or ConfigError once closed."""
        request = _Request(frame, roi, source, tiles)
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
        self._backend = backend
        in_flight = None
        try:
            while True:
                batch = self._gather(wait=in_flight is None)
                if batch:
                    submitted = self._submit(batch)
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
            _close_quietly(self._backend)

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

    def _submit(self, batch: list[_Request]):
        """Start scoring ``batch``; a frame the backend refuses fails alone."""
        backend = self._backend
        good, views = [], []
        for request in batch:
            try:
                views.append(backend.check(request.frame.luma, request.roi))
            except (TypeError, ValueError) as exc:
                request.finish(None, ConfigError(str(exc)))
            except BackendError as exc:
                return self._replace(backend, exc, batch)
            else:
                good.append(request)
        if not good:
            return None
        start = time.perf_counter()
        try:  # the checked views, their ROIs already cut
            pending = backend.submit(
                views, scales=[r.frame.scale for r in good],
                offsets=[r.frame.offset for r in good],
                **({"tiles": [r.tiles for r in good]} if any(r.tiles for r in good) else {}),
            )  # fmt: skip
        except BackendError as exc:
            return self._replace(backend, exc, good)
        except Exception as exc:
            for request in good:
                request.finish(None, exc)
            return None
        self.batches += 1
        self.frames += len(good)
        return good, pending, start, backend

    def _replace(self, failed: Backend, exc: BackendError, requests: list[_Request]):
        """Move to the fallback backend (once) and score ``requests`` on it; with no
        fallback, fail them."""
        if self._fall_back is None:
            for request in requests:
                request.finish(None, exc)
            return None
        if self._backend is failed:
            name, options = self._fall_back(failed.name, exc)
            _close_quietly(failed)
            self._backend = resolve_backend(name, **options)
        batch = [r for r in requests if not r.done.is_set()]
        return self._submit(batch) if batch else None

    def _deliver(self, good: list[_Request], pending, start: float, backend: Backend) -> None:
        try:
            scores = pending.result()
        except BackendError as exc:  # the GPU failed: score them again elsewhere
            again = self._replace(backend, exc, good)
            if again is not None:
                self._deliver(*again)
            return
        except Exception as exc:  # every frame of the batch fails
            for request in good:
                request.finish(None, exc)
            return
        share_ms = (time.perf_counter() - start) * 1e3 / len(good)
        for request, result in zip(good, scores, strict=True):
            frame = request.frame
            if isinstance(result, FocusMap):
                record = FocusRecord(frame.index, frame.pts, result.frame, share_ms, result)
            else:
                record = FocusRecord(frame.index, frame.pts, result, share_ms)
            request.finish(record)


def _close_quietly(backend: Backend) -> None:
    try:
        backend.close()
    except Exception as exc:  # a failed GPU may fail again on the way out
        log.debug("closing backend %s: %s", backend.name, exc)
