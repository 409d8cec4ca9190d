"""The backend contract: one array in, one `FocusScores` out."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from ._frame import check_grid, prepare, saturation_level
from ._scores import FocusMap, FocusScores, RawSums, finish, rescale


class BackendError(RuntimeError):
    """The backend itself failed (a GPU fault, a launch the device refused), not the frame.
    After a fault it raises this again at once on every later call; the pipeline moves its
    streams to a CPU backend."""


class PendingScores:
    """Scores of a submitted batch, possibly still being computed (see `Backend.submit`)."""

    def __init__(self, wait: Callable[[], list[FocusScores]]) -> None:
        self._wait: Callable[[], list[FocusScores]] | None = wait
        self._scores: list[FocusScores] = []

    def result(self) -> list[FocusScores]:
        """The scores, in the order the frames were given; waits for them once."""
        if self._wait is not None:
            wait, self._wait = self._wait, None
            self._scores = wait()
        return self._scores


def _check_units(scale: float, offset: float) -> None:
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"`scale` must be a finite number > 0, got {scale!r}")
    if not math.isfinite(offset):
        raise ValueError(f"`offset` must be finite, got {offset!r}")


class Backend(abc.ABC):
    """A way to compute the focus measures.

    An instance belongs to one thread: it may keep buffers (per-shape device memory, a
    thread pool) between calls. Use it as a context manager, or call `close`.
    """

    name: ClassVar[str]
    #: Whether scoring many frames in one `submit` is cheaper than one by one (a GPU's
    #: launch and copy latency). The pipeline batches streams together only for these.
    batches: ClassVar[bool] = False

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
            `rescale`); the sample that maps to 255 is where saturation starts
            (`saturation_level`).

        Returns
        -------
        FocusScores
        """
        _check_units(scale, offset)
        view = self.check(luma, roi)
        level = saturation_level(view.dtype, scale, offset)
        return rescale(self._scores(view, level), float(scale), float(offset))

    @abc.abstractmethod
    def _scores(self, view: np.ndarray, level: int) -> FocusScores:
        """Scores of a prepared (H >= 3, W >= 3, unit inner stride) uint8/uint16 view,
        samples ``>= level`` saturated."""

    def focus_map(
        self,
        luma: np.ndarray,
        tiles: Sequence[int] = (4, 4),
        *,
        roi: Sequence[int] | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> FocusMap:
        """Score one luma frame and each tile of a ``tiles = (rows, cols)`` grid over it
        (over its ROI), in the same pass; see `FocusMap`. The other parameters are as for
        `scores`, whose result is the map's ``frame``.

        Raises
        ------
        ValueError
            As `scores`, or for a grid the frame is too small for (2 pixels per tile).
        """
        _check_units(scale, offset)
        view = self.check(luma, roi)
        ys, xs = check_grid(tiles, view.shape)
        level = saturation_level(view.dtype, scale, offset)
        return self._focus_map(view, ys, xs, level).rescaled(float(scale), float(offset))

    def _focus_map(self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int) -> FocusMap:
        """The focus map of a prepared view over the grid with these edges."""
        raise NotImplementedError(f"{self.name} has no focus map")

    def submit(
        self,
        lumas: Sequence[np.ndarray],
        *,
        rois: Sequence[Sequence[int] | None] | None = None,
        scales: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
        tiles: Sequence[Sequence[int] | None] | None = None,
    ) -> PendingScores:
        """Start scoring several frames (of any sizes) at once; `PendingScores.result` waits.

        A batching backend (``numba-cuda``) scores them in one kernel launch and reads the
        results of all of them back in one copy, and returns before the GPU is done, so the
        caller can prepare the next batch meanwhile. Other backends score them one by one,
        before returning.

        Parameters
        ----------
        lumas : sequence of arrays
            Frames as for `scores`: (H, W) uint8 or uint16 NumPy arrays, or, for a GPU
            backend, device arrays (anything with ``__cuda_array_interface__`` or
            ``__dlpack__``), which are scored without a copy through the host.
        rois, scales, offsets : sequences, optional
            Per frame, as for `scores`; each the length of ``lumas``.
        tiles : sequence, optional
            Per frame, a ``(rows, cols)`` grid or None: a frame with a grid gets its
            `FocusMap` (as `focus_map`) in the results instead of its `FocusScores`.

        Raises
        ------
        TypeError, ValueError
            As `scores`, for the first frame or parameter that is wrong; nothing is started.
        """
        n = len(lumas)
        rois = [None] * n if rois is None else list(rois)
        scales = [1.0] * n if scales is None else [float(v) for v in scales]
        offsets = [0.0] * n if offsets is None else [float(v) for v in offsets]
        tiles = [None] * n if tiles is None else list(tiles)
        for what, values in (("rois", rois), ("scales", scales), ("offsets", offsets),
                             ("tiles", tiles)):  # fmt: skip
            if len(values) != n:
                raise ValueError(
                    f"`{what}` must have one entry per frame ({n}), got {len(values)}"
                )
        for scale, offset in zip(scales, offsets, strict=True):
            _check_units(scale, offset)
        views = [self.check(luma, roi) for luma, roi in zip(lumas, rois, strict=True)]
        if all(grid is None for grid in tiles):
            return self._submit(views, scales, offsets)
        grids = [None if grid is None else check_grid(grid, v.shape)
                 for grid, v in zip(tiles, views, strict=True)]  # fmt: skip
        return self._submit(views, scales, offsets, grids)

    def check(self, luma: object, roi: Sequence[int] | None = None) -> np.ndarray:
        """The view of ``luma`` (its ROI) that the kernel scores; raises as `scores` does."""
        return prepare(luma, roi)  # type: ignore[arg-type]

    def _submit(
        self,
        views: list[np.ndarray],
        scales: list[float],
        offsets: list[float],
        grids: list[tuple[np.ndarray, np.ndarray] | None] | None = None,
    ) -> PendingScores:
        """Score ``views`` (and the focus maps of those with a grid's edges in ``grids``)."""
        done: list = []
        grids = [None] * len(views) if grids is None else grids
        for v, s, o, grid in zip(views, scales, offsets, grids, strict=True):
            level = saturation_level(v.dtype, s, o)
            if grid is None:
                done.append(rescale(self._scores(v, level), s, o))
            else:
                done.append(self._focus_map(v, *grid, level).rescaled(s, o))
        return PendingScores(lambda: done)

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

    def _scores(self, view: np.ndarray, level: int) -> FocusScores:
        return finish(self.raw_sums(view, level))

    def _focus_map(self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int) -> FocusMap:
        return FocusMap.of_sums(self.raw_tile_sums(view, ys, xs, level), ys, xs)

    @abc.abstractmethod
    def raw_sums(self, view: np.ndarray, level: int | None = None) -> RawSums:
        """The exact sums of a prepared view, samples ``>= level`` saturated (default:
        the dtype's largest)."""

    def raw_tile_sums(
        self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int | None = None
    ) -> list[list[RawSums]]:
        """The exact sums of each tile (rows of tiles) of a prepared view, over the grid
        with row edges ``ys`` and column edges ``xs`` (`check_grid`)."""
        raise NotImplementedError(f"{self.name} has no focus map")
