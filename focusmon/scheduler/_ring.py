"""A few preallocated frames (a stream's recent records and small frames: `StreamHistory`)."""

from __future__ import annotations

import numpy as np


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
