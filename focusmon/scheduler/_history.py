"""A stream's recent past, in memory allocated once: its records and small frames."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import MEASURES, FocusScores
from ._alerts import STATES

#: A record's ``state`` in `StreamHistory.records` is its index in this tuple.
STATE_NAMES = tuple(str(s) for s in STATES)


@dataclass(frozen=True, slots=True)
class KeptFrame:
    """A small frame the history kept (a copy): when, which, and how sharp it was."""

    time: float
    index: int
    score: float
    pixels: np.ndarray  # uint8 (h, w): a thumbnail of the frame (its ROI), 8-bit grey


class StreamHistory:
    """The last ``history_s`` seconds of a stream's records and the last ``frames_s``
    seconds of its frames, downscaled, in arrays allocated once (the frames' when their
    size is first known, again only if it changes).

    Records are kept at most ``max_rate`` a second, frames at most ``frame_rate`` a
    second: of the records (frames) that fall in one such slot, the sharpest is kept, so
    the best of any window is exact at that resolution and a frame is copied only when it
    is the sharpest of its slot so far (`wants_frame`).

    Time comes in with each record (the scheduler reads no clock): stream seconds for a
    file, Unix time for a live stream. Not thread-safe: the caller holds its stream's lock.

    Parameters
    ----------
    history_s : float
        Seconds of records kept (default 120: the page's two-minute curve).
    max_rate : float
        Records per second at most (a faster stream keeps the sharpest of each slot).
    frames_s : float
        Seconds of frames kept (evidence for events, the best frame of a recent window).
    frame_rate : float
        Frames per second kept at most.
    """

    def __init__(
        self,
        history_s: float = 120.0,
        *,
        max_rate: float = 30.0,
        frames_s: float = 10.0,
        frame_rate: float = 4.0,
    ) -> None:
        for name, value in (("history_s", history_s), ("max_rate", max_rate),
                            ("frames_s", frames_s), ("frame_rate", frame_rate)):  # fmt: skip
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
        self.history_s, self.max_rate = float(history_s), float(max_rate)
        self.frames_s, self.frame_rate = float(frames_s), float(frame_rate)
        n = math.ceil(history_s * max_rate) + 1
        self._time = np.zeros(n, np.float64)
        self._index = np.zeros(n, np.int64)
        self._score = np.zeros(n, np.float64)
        self._state = np.zeros(n, np.int8)
        self._values = np.zeros((n, len(MEASURES)), np.float64)
        self._next = 0  # the row the next record goes to
        self._size = 0
        self._slot: int | None = None  # the record slot (time * max_rate) of the last row
        m = math.ceil(frames_s * frame_rate) + 1
        self._frames: np.ndarray | None = None  # (m, h, w) uint8, allocated at first use
        self._frame_time = np.full(m, -np.inf)
        self._frame_index = np.zeros(m, np.int64)
        self._frame_score = np.full(m, -np.inf)
        self._frame_next = 0
        self._frame_size = 0
        self._frame_slot: int | None = None

    def __len__(self) -> int:
        return self._size

    # -- writing ----------------------------------------------------------------------------

    def push(
        self, index: int, time_s: float, scores: FocusScores, score: float, state: str = "ok"
    ) -> None:
        """Keep a frame's record (``score``: its normalised sharpness; ``state``: the
        stream's state after it). A record in the same 1 / ``max_rate`` slot as the last
        replaces it only when sharper; a record older than the last is ignored."""
        if not math.isfinite(time_s):
            return
        score = float(score) if math.isfinite(score) else 0.0
        slot = math.floor(time_s * self.max_rate)
        if self._size and self._slot is not None:
            last = (self._next - 1) % len(self._time)
            if time_s < self._time[last]:
                return
            if slot == self._slot:
                if score <= self._score[last]:
                    self._state[last] = STATE_NAMES.index(str(state))  # the state is news
                    return
                self._next, self._size = last, self._size - 1  # overwrite it
        row = self._next
        self._time[row], self._index[row], self._score[row] = time_s, index, score
        self._state[row] = STATE_NAMES.index(str(state))
        values = self._values[row]
        for k, name in enumerate(MEASURES):
            value = float(getattr(scores, name))
            values[k] = value if math.isfinite(value) else 0.0
        self._next = (row + 1) % len(self._time)
        self._size = min(self._size + 1, len(self._time))
        self._slot = slot

    def wants_frame(self, time_s: float, score: float) -> bool:
        """Whether a frame at ``time_s`` with normalised sharpness ``score`` is kept:
        the first of a new 1 / ``frame_rate`` slot, or sharper than its slot's frame so
        far. Only then need its thumbnail be made (`keep_frame`)."""
        if not math.isfinite(time_s):
            return False
        slot = math.floor(time_s * self.frame_rate)
        if self._frame_size == 0 or self._frame_slot is None or slot > self._frame_slot:
            return True
        last = (self._frame_next - 1) % len(self._frame_time)
        return slot == self._frame_slot and score > self._frame_score[last]

    def keep_frame(
        self, index: int, time_s: float, score: float, pixels: np.ndarray, *, force: bool = False
    ) -> None:
        """Keep a frame's thumbnail (uint8, (h, w)), copied into the history's own memory;
        see `wants_frame` (``force``: keep it whatever its sharpness, in its slot: the
        frame at a state change). A new size starts the frames anew."""
        if not math.isfinite(time_s) or not (force or self.wants_frame(time_s, score)):
            return
        if self._frame_size and self._frame_slot is not None:
            if math.floor(time_s * self.frame_rate) < self._frame_slot:
                return  # from before the newest kept: out of order
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 2:
            raise ValueError(
                f"a kept frame is a 2-D uint8 array, got {pixels.dtype} {pixels.shape}"
            )
        m = len(self._frame_time)
        if self._frames is None or self._frames.shape[1:] != pixels.shape:
            self._frames = np.zeros((m, *pixels.shape), np.uint8)
            self._frame_size, self._frame_next, self._frame_slot = 0, 0, None
        slot = math.floor(time_s * self.frame_rate)
        if self._frame_size and slot == self._frame_slot:
            row = (self._frame_next - 1) % m  # the slot's frame, replaced by a sharper one
        else:
            row = self._frame_next
            self._frame_next = (row + 1) % m
            self._frame_size = min(self._frame_size + 1, m)
        np.copyto(self._frames[row], pixels)
        self._frame_time[row], self._frame_index[row] = time_s, index
        self._frame_score[row] = score if math.isfinite(score) else 0.0
        self._frame_slot = slot

    # -- reading (copies) -------------------------------------------------------------------

    def records(self, seconds: float | None = None) -> dict[str, np.ndarray]:
        """The records of the last ``seconds`` (all kept by default) before the newest,
        oldest first: ``time``, ``index``, ``score``, ``state`` (indices into
        `STATE_NAMES`) and each measure by name; copies."""
        rows = self._rows(self._size, self._next, len(self._time))
        if seconds is not None and rows.size:
            rows = rows[self._time[rows] >= self._time[rows[-1]] - seconds]
        out = {"time": self._time[rows], "index": self._index[rows],
               "score": self._score[rows], "state": self._state[rows]}  # fmt: skip
        for k, name in enumerate(MEASURES):
            out[name] = self._values[rows, k]
        return out

    def best(self, seconds: float) -> tuple[int, float, float] | None:
        """``(index, time, score)`` of the sharpest record of the last ``seconds`` (the
        earliest of equals), or None with no record."""
        got = self.records(seconds)
        if not got["time"].size:
            return None
        k = int(np.argmax(got["score"]))
        return int(got["index"][k]), float(got["time"][k]), float(got["score"][k])

    def frames(self) -> list[KeptFrame]:
        """Every kept frame, oldest first (copies)."""
        if self._frames is None:
            return []
        rows = self._rows(self._frame_size, self._frame_next, len(self._frame_time))
        return [self._kept(int(r)) for r in rows]

    def latest_frame(self, *, copy: bool = True) -> KeptFrame | None:
        """The newest kept frame (``copy=False``: its pixels are the history's own, to be
        read at once under the caller's lock, or not at all)."""
        if self._frames is None or not self._frame_size:
            return None
        return self._kept((self._frame_next - 1) % len(self._frame_time), copy=copy)

    def best_frame(self, seconds: float, before: float | None = None) -> KeptFrame | None:
        """The sharpest kept frame of the last ``seconds`` before the newest kept frame
        (or before ``before``: frames from then on are left out), or None."""
        if self._frames is None or not self._frame_size:
            return None
        rows = self._rows(self._frame_size, self._frame_next, len(self._frame_time))
        times = self._frame_time[rows]
        end = times[-1] if before is None else before
        mask = (times >= end - seconds) & ((times <= end) if before is None else (times < end))
        if not mask.any():
            return None
        chosen = rows[mask]
        return self._kept(int(chosen[int(np.argmax(self._frame_score[chosen]))]))

    def _kept(self, row: int, *, copy: bool = True) -> KeptFrame:
        assert self._frames is not None
        pixels = self._frames[row].copy() if copy else self._frames[row]
        return KeptFrame(float(self._frame_time[row]), int(self._frame_index[row]),
                         float(self._frame_score[row]), pixels)  # fmt: skip

    @staticmethod
    def _rows(size: int, following: int, capacity: int) -> np.ndarray:
        return (np.arange(following - size, following)) % capacity
