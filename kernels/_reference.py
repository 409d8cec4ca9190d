"""The NumPy backend: the definition of every measure, written as plainly as possible.

Every other backend is tested against this one, and this one against OpenCV and PyWavelets.
"""

from __future__ import annotations

import numpy as np

from ._backend import Backend
from ._frame import saturation_level
from ._scores import FocusMap, FocusScores


def reference_scores(view: np.ndarray, level: int | None = None) -> FocusScores:
    """The measures of a 2-D uint8/uint16 array of at least 3x3, in float64; samples
    ``>= level`` count as saturated (default: the dtype's largest, `saturation_level`).

    Notes
    -----
    Borders follow OpenCV's default, BORDER_REFLECT_101 (``numpy.pad(mode="reflect")``) for
    the Laplacian and Sobel stencils, and PyWavelets' ``mode="symmetric"`` (the edge sample
    repeated, ``numpy.pad(mode="symmetric")``) for the Haar transform of odd sizes.

    References
    ----------
    .. [1] Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative
       study", ICPR 2000 (variance of the Laplacian).
    .. [2] Krotkov, "Focusing", IJCV 1(3), 1988 (Tenengrad).
    .. [3] Tong et al., "Blur detection for digital images using wavelet transform",
       ICME 2004 (Haar detail energy).
    """
    maps = _maps(view, _level(view, level))
    return _measures(*maps)


def reference_map(
    view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int | None = None
) -> FocusMap:
    """The measures of a frame (as `reference_scores`) and of each tile of the grid with
    row edges ``ys`` and column edges ``xs`` (even but the last: see `check_grid`): each
    tile's are those of its pixels' stencils in the whole frame."""
    maps = _maps(view, _level(view, level))
    pixel_maps, block_maps = maps[:4], maps[4:]
    tiles = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        row = []
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            cut, half = np.s_[y0:y1, x0:x1], np.s_[y0 // 2 : -(-y1 // 2), x0 // 2 : -(-x1 // 2)]
            row.append(_measures(*(m[cut] for m in pixel_maps), *(m[half] for m in block_maps)))
        tiles.append(tuple(row))
    frame = _measures(*maps)
    return FocusMap(frame, tuple(tiles), tuple(map(int, ys)), tuple(map(int, xs)))


def _level(view: np.ndarray, level: int | None) -> int:
    return saturation_level(view.dtype) if level is None else int(level)


def _maps(view: np.ndarray, level: int) -> tuple[np.ndarray, ...]:
    """Per pixel: the frame in float64, whether it is saturated, its Laplacian and squared
    Sobel gradient; per 2x2 block (the half-size grid): the Haar detail energy and its
    direction terms dx**2, dy**2, dx * dy."""
    g = view.astype(np.float64)
    saturated = (view >= level).astype(np.float64)
    p = np.pad(g, 1, mode="reflect")
    up, mid, down = p[:-2], p[1:-1], p[2:]
    lap = up[:, 1:-1] + down[:, 1:-1] + mid[:, :-2] + mid[:, 2:] - 4.0 * g
    left, centre, right = (slice(None, -2), slice(1, -1), slice(2, None))
    gx = (up[:, right] + 2.0 * mid[:, right] + down[:, right]) - (
        up[:, left] + 2.0 * mid[:, left] + down[:, left]
    )
    gy = (down[:, left] + 2.0 * down[:, centre] + down[:, right]) - (
        up[:, left] + 2.0 * up[:, centre] + up[:, right]
    )
    grad2 = gx * gx + gy * gy

    h, w = g.shape
    q = np.pad(g, ((0, h % 2), (0, w % 2)), mode="symmetric")
    a, b = q[0::2, 0::2], q[0::2, 1::2]
    c, d = q[1::2, 0::2], q[1::2, 1::2]
    dx, dy = (a - b + c - d) / 2.0, (a + b - c - d) / 2.0
    detail = dx**2 + dy**2 + ((a - b - c + d) / 2.0) ** 2
    return g, saturated, lap, grad2, detail, dx * dx, dy * dy, dx * dy


def _measures(g, saturated, lap, grad2, detail, dx2, dy2, dxdy) -> FocusScores:
    return FocusScores(
        laplacian_var=float(lap.var()),
        tenengrad=float(grad2.mean()),
        sobel_mean=float(np.sqrt(grad2).mean()),
        haar_energy=float(detail.sum() / detail.size),
        mean=float(g.mean()),
        std=float(g.std()),
        saturated=float(saturated.mean()),
        detail_x=float(dx2.mean()),
        detail_y=float(dy2.mean()),
        detail_xy=float(dxdy.mean()),
    )


class NumpyBackend(Backend):
    """The reference backend: plain NumPy, always available, about 15 ms at 1080p."""

    name = "numpy"

    def _scores(self, view: np.ndarray, level: int) -> FocusScores:
        return reference_scores(view, level)

    def _focus_map(self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int) -> FocusMap:
        return reference_map(view, ys, xs, level)
