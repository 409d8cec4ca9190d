"""Recent records in preallocated arrays, and a few preallocated frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..kernels import MEASURES, FocusScores


class RecordRing:
    """The last ``capacity`` records (index, time, the measures) in fixed arrays.

    `push` is O(1) and allocates nothing: it overwrites the oldest row. Reading
    (`latest`) returns copies in push order.
    """

    def __init__(self, capacity: int, measures: Sequence[str] = MEASURES) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"`capacity` must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self.measures = tuple(measures)
        self._index = np.zeros(capacity, np.int64)
        self._time = np.zeros(capacity, np.float64)
        self._values = np.zeros((capacity, len(self.measures)), np.float64)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, index: int, time_s: float, scores: FocusScores) -> int:
        """Store one record; returns the row it went to."""
        row = self._next
        self._index[row] = index
        self._time[row] = time_s
        values = self._values[row]
        for k, name in enumerate(self.measures):
            values[k] = getattr(scores, name)
        self._next = (row + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        return row

    def latest(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(index, time, values)`` of the last ``n`` records (all by default), oldest
        first; ``values[:, k]`` is ``measures[k]``."""
        n = self._size if n is None else max(0, min(n, self._size))
        rows = (np.arange(self._next - n, self._next)) % self.capacity
        return self._index[rows], self._time[rows], self._values[rows]

    def column(self, measure: str, n: int | None = None) -> np.ndarray:
        """One measure over the last ``n`` records, oldest first."""
        return self.latest(n)[2][:, self.measures.index(measure)]


class FrameSlots:
    """``count`` preallocated frames that a policy copies into only when it must keep one.

    Reallocated when the frame size or dtype changes (a stream may change resolution).
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"`count` must be >= 1, got {count!r}")
        self._count = count
        self._frames: list[np.ndarray] = []

    def store(self, slot: int, luma: np.ndarray) -> np.ndarray:
        """Copy ``luma`` into ``slot``; returns the slot's array."""
        if (
            not self._frames
            or self._frames[0].shape != luma.shape
            or (self._frames[0].dtype != luma.dtype)
        ):
            self._frames = [np.empty(luma.shape, luma.dtype) for _ in range(self._count)]
        np.copyto(self._frames[slot], luma)
        return self._frames[slot]

    def get(self, slot: int) -> np.ndarray:
        return self._frames[slot]
