"""Checking a luma array and cutting the region of interest out of it, without copying."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_SIDE = 3
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
#: Backends sum a frame's terms exactly in int64, in bands of whole rows (32 rows on the
#: GPU) when a frame is large; a 16-bit row longer than this (~1 million samples) would
#: overflow a band's sums, so it is refused.
MAX_ROW_16 = 2**20

Roi = tuple[int, int, int, int]
Grid = tuple[int, int]


def check_roi(roi: Sequence[int] | None, shape: tuple[int, int]) -> Roi | None:
    """Validate ``roi = (x, y, w, h)`` against a frame of ``shape = (H, W)``."""
    if roi is None:
        return None
    try:
        x, y, w, h = (int(v) for v in roi)
    except (TypeError, ValueError):
        raise ValueError(f"`roi` must be four integers (x, y, w, h), got {roi!r}") from None
    if any(int(v) != v for v in roi):
        raise ValueError(f"`roi` must be four integers (x, y, w, h), got {roi!r}")
    height, width = shape
    if x < 0 or y < 0 or w < MIN_SIDE or h < MIN_SIDE or x + w > width or y + h > height:
        raise ValueError(
            f"`roi` must lie inside the {width}x{height} frame and be at least "
            f"{MIN_SIDE}x{MIN_SIDE}, got x={x} y={y} w={w} h={h}"
        )
    return (x, y, w, h)


def cut_roi(luma: Any, roi: Sequence[int] | None) -> Any:
    """``luma``'s ROI (a view), once its sample type and shape are checked; for NumPy and
    device arrays alike (anything with ``dtype``, ``shape`` and 2-D slicing).

    Raises
    ------
    TypeError
        If the samples are not uint8 or uint16.
    ValueError
        If ``luma`` is not 2-D, is smaller than 3x3, or ``roi`` does not fit.
    """
    dtype, shape = np.dtype(luma.dtype), tuple(luma.shape)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"`luma` must have dtype uint8 or uint16, got {dtype}")
    if len(shape) != 2:
        raise ValueError(f"`luma` must be a 2-D (H, W) array, got shape {shape}")
    if shape[0] < MIN_SIDE or shape[1] < MIN_SIDE:
        raise ValueError(
            f"`luma` must be at least {MIN_SIDE}x{MIN_SIDE} (H, W), got shape {shape}"
        )
    if dtype == SUPPORTED_DTYPES[1] and shape[1] > MAX_ROW_16:
        raise ValueError(
            f"`luma` rows of 16-bit samples must be at most {MAX_ROW_16} long (the exact "
            f"int64 sums of a band of rows could overflow), got shape {shape}"
        )
    box = check_roi(roi, shape)
    if box is None:
        return luma
    x, y, w, h = box
    return luma[y : y + h, x : x + w]


def prepare(luma: np.ndarray, roi: Sequence[int] | None = None) -> np.ndarray:
    """Return the 2-D uint8/uint16 view a kernel scores: the ROI of ``luma``, unit inner stride.

    The view shares memory with ``luma`` (a padded plane, a crop); only an array whose rows
    are not contiguous (a column stride other than the item size) is copied.

    Raises
    ------
    TypeError
        If ``luma`` is not a NumPy array of uint8 or uint16.
    ValueError
        If it is not 2-D, is smaller than 3x3, or ``roi`` does not fit.
    """
    if not isinstance(luma, np.ndarray):
        raise TypeError(f"`luma` must be a numpy.ndarray, got {type(luma).__name__}")
    luma = cut_roi(luma, roi)
    if luma.strides[1] != luma.itemsize or luma.strides[0] < 0 or luma.strides[0] % luma.itemsize:
        luma = np.ascontiguousarray(luma)
    return luma


def flat_rows(view: np.ndarray) -> tuple[np.ndarray, int]:
    """A 1-D contiguous array spanning every row of ``view``, and the row stride in items.

    Kernels index rows as ``flat[i * row_stride : i * row_stride + W]``: unlike rows of a
    non-contiguous 2-D array, these slices are contiguous, which lets loops vectorise.
    """
    h, w = view.shape
    row_stride = view.strides[0] // view.itemsize
    length = (h - 1) * row_stride + w
    flat = np.lib.stride_tricks.as_strided(
        view, shape=(length,), strides=(view.itemsize,), writeable=False
    )
    return flat, row_stride


def tile_edges(n: int, parts: int) -> np.ndarray:
    """The edges of ``parts`` tiles along a side of ``n >= 2 * parts`` pixels: as even in
    size as can be, each edge but the last at an even pixel (so a Haar 2x2 block never
    straddles two tiles), the first at 0 and the last at ``n``; int64, ``parts + 1`` long."""
    edges = [2 * ((k * n) // (2 * parts)) for k in range(parts)] + [n]
    return np.array(edges, np.int64)


def check_grid(tiles: Sequence[int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The row and column edges (`tile_edges`) of a ``tiles = (rows, cols)`` grid over a
    frame of ``shape = (H, W)``.

    Raises
    ------
    ValueError
        If ``tiles`` is not two integers >= 1, or the frame has fewer than 2 pixels per
        tile along a side.
    """
    try:
        rows, cols = (int(v) for v in tiles)
        ok = all(int(v) == v for v in tiles)
    except (TypeError, ValueError):
        ok = False
    if not ok or rows < 1 or cols < 1:
        raise ValueError(f"`tiles` must be two integers >= 1 (rows, cols), got {tiles!r}")
    height, width = shape
    if height < 2 * rows or width < 2 * cols:
        raise ValueError(
            f"a {rows}x{cols} grid needs a frame of at least {2 * cols}x{2 * rows} (2 pixels "
            f"per tile a side), got {width}x{height}"
        )
    return tile_edges(height, rows), tile_edges(width, cols)


def saturation_level(dtype: np.dtype, scale: float = 1.0, offset: float = 0.0) -> int:
    """The sample value from which a sample counts as saturated: the top of the range the
    frame is reported in, the sample that ``(v - offset) * scale`` maps to 255 (at most
    the dtype's largest), or the dtype's largest for samples reported as they are
    (``scale == 1``, ``offset == 0``). 255 for 8-bit full range, 235 for limited range,
    1023 for a 10-bit frame in uint16 (scale 255 / 1023), 65535 for a raw 16-bit one."""
    top = np.iinfo(np.dtype(dtype)).max
    if scale == 1.0 and offset == 0.0:
        return int(top)
    return int(min(top, max(1, math.floor(offset + 255.0 / scale + 0.5))))
