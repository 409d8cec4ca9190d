"""Frames of one source: a decode thread feeding the scoring thread through a small queue.

Why two threads: PyAV's decoder and the Numba kernel both release the GIL, so on two
cores decoding and scoring overlap. The decode thread does as little Python per frame as
it can (taking the luma view, one queue put): Python work beside the decoder slows it.

Files never drop a frame: a full queue makes the decoder wait. Live sources keep only the
newest frame: a frame the scorer has not taken yet is replaced, and counted as dropped,
so analysis never falls behind real time.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from .._errors import ConfigError, check_int
from ..kernels import Backend, check_roi
from ..measures import FocusRecord, score_frame
from ..source import LumaFrame, Source

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
    tiles: Sequence[int] | None = None,
) -> Iterator[FocusRecord]:
    """Score ``source``'s frames (those its options keep) with ``backend``, in decode order;
    with ``tiles = (rows, cols)``, each record also has the frame's focus map.

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
        record = analyse(backend, frame, roi, source, tiles)
        yield record
        if max_frames is not None and stats.analysed >= max_frames:
            return


def analyse(
    backend: Backend,
    frame: LumaFrame,
    roi: Sequence[int] | None,
    source: Source,
    tiles: Sequence[int] | None = None,
) -> FocusRecord:
    """Score one of ``source``'s frames and count it as analysed."""
    record = score_frame(
        backend, frame.luma, frame.index, frame.pts, roi=roi,
        scale=frame.scale, offset=frame.offset, tiles=tiles,
    )  # fmt: skip
    source.stats.analysed += 1
    if frame.qp is not None or frame.pict_type is not None:
        record = dataclasses.replace(record, qp=frame.qp, pict_type=frame.pict_type)
    return record
