"""The sharpest frame of each window of N frames or T seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import FocusScores
from ._ring import FrameSlots
from ._score import normalised_sharpness


@dataclass(frozen=True, slots=True)
class BestFrame:
    """The sharpest frame of a window of ``stream``, with its own copy of the pixels."""

    stream: str
    index: int
    time: float
    scores: FocusScores
    score: float
    luma: np.ndarray
    scale: float = 1.0
    offset: float = 0.0


class BestFramePicker:
    """Every ``window_frames`` frames or ``window_s`` seconds, the sharpest frame.

    Only a frame sharper than the window's best so far is copied (into one of two
    preallocated slots), so most frames cost no copy at all.

    Parameters
    ----------
    stream : str
        The stream's name, carried into each `BestFrame`.
    window_frames, window_s : int or float, optional
        The window: one of them.
    floor : float, optional
        Emit nothing for a window whose best normalised score is below this.
    measure : str
        The measure compared (normalised, so a light change does not favour a frame).
    """

    def __init__(
        self,
        stream: str = "",
        *,
        window_frames: int | None = None,
        window_s: float | None = None,
        floor: float | None = None,
        measure: str = "tenengrad",
    ) -> None:
        if (window_frames is None) == (window_s is None):
            raise ValueError("give exactly one of `window_frames` and `window_s`")
        if window_frames is not None and (not isinstance(window_frames, int) or window_frames < 1):
            raise ValueError(f"`window_frames` must be an integer >= 1, got {window_frames!r}")
        if window_s is not None and not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"`window_s` must be a number > 0, got {window_s!r}")
        self.stream = stream
        self._frames, self._seconds, self._floor = window_frames, window_s, floor
        self.measure = measure
        self._slots = FrameSlots(2)
        self._reset(None)

    def _reset(self, start: float | None) -> None:
        self._start = start
        self._count = 0
        self._best: tuple[int, float, FocusScores, float, int, float, float] | None = None
        self._slot = 0

    def push(
        self, index: int, time_s: float, scores: FocusScores, luma: np.ndarray,
        scale: float = 1.0, offset: float = 0.0,
    ) -> BestFrame | None:  # fmt: skip
        """Take one frame; the window's `BestFrame` when this frame closes a window."""
        emitted = None
        if self._seconds is not None and self._start is not None:
            if time_s - self._start >= self._seconds:
                emitted = self._emit()
        if self._start is None:
            self._start = time_s
        score = normalised_sharpness(scores, self.measure)
        if self._best is None or score > self._best[3]:
            self._slot ^= 1  # the other slot: the current best stays intact until replaced
            self._slots.store(self._slot, luma)
            self._best = (index, time_s, scores, score, self._slot, scale, offset)
        self._count += 1
        if self._frames is not None and self._count >= self._frames:
            emitted = self._emit()
        return emitted

    def flush(self) -> BestFrame | None:
        """The best frame of the unfinished window (at the end of a stream)."""
        return self._emit()

    def _emit(self) -> BestFrame | None:
        best = self._best
        self._reset(None)
        if best is None:
            return None
        index, time_s, scores, score, slot, scale, offset = best
        if self._floor is not None and score < self._floor:
            return None
        luma = self._slots.get(slot).copy()
        return BestFrame(self.stream, index, time_s, scores, score, luma, scale, offset)
