"""The backend contract: one array in, one `FocusScores` out."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ._frame import prepare
from ._scores import FocusScores, RawSums, finish, rescale


class Backend(abc.ABC):
    """A way to compute the six focus measures.

    An instance belongs to one thread: it may keep buffers (per-shape device memory, a
    thread pool) between calls. Use it as a context manager, or call `close`.
    """

    name: ClassVar[str]

    def scores(
        self,
        luma: np.ndarray,
        *,
        roi: Sequence[int] | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> FocusScores:
        """Score one luma frame.

        Parameters
        ----------
        luma : ndarray of uint8 or uint16, shape (H, W)
            The frame, at least 3x3; any row stride (a padded plane is scored in place).
        roi : (x, y, w, h), optional
            Score only this rectangle; it must lie inside the frame.
        scale, offset : float
            Report in units of ``(sample - offset) * scale`` (8-bit full range, see
            `rescale`).

        Returns
        -------
        FocusScores
        """
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"`scale` must be a finite number > 0, got {scale!r}")
        if not math.isfinite(offset):
            raise ValueError(f"`offset` must be finite, got {offset!r}")
        view = prepare(luma, roi)
        return rescale(self._scores(view), float(scale), float(offset))

    @abc.abstractmethod
    def _scores(self, view: np.ndarray) -> FocusScores:
        """Scores of a prepared (H >= 3, W >= 3, unit inner stride) uint8/uint16 view."""

    def close(self) -> None:  # noqa: B027 (most backends hold nothing)
        """Release what the backend holds (device memory, buffers)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FusedBackend(Backend):
    """A backend whose kernel accumulates `RawSums` in one pass."""

    def _scores(self, view: np.ndarray) -> FocusScores:
        return finish(self.raw_sums(view))

    @abc.abstractmethod
    def raw_sums(self, view: np.ndarray) -> RawSums:
        """The exact sums of a prepared view."""
