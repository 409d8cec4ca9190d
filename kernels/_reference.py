"""The NumPy backend: the definition of every measure, written as plainly as possible.

Every other backend is tested against this one, and this one against OpenCV and PyWavelets.
"""

from __future__ import annotations

import numpy as np

from ._backend import Backend
from ._scores import FocusMap, FocusScores


def reference_scores(view: np.ndarray) -> FocusScores:
    """The six measures of a 2-D uint8/uint16 array of at least 3x3, in float64.

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
    g, lap, grad2, detail = _maps(view)
    return _measures(g, lap, grad2, detail)


def reference_map(view: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> FocusMap:
    """The measures of a frame (as `reference_scores`) and of each tile of the grid with
    row edges ``ys`` and column edges ``xs`` (even but the last: see `check_grid`): each
    tile's are those of its pixels' stencils in the whole frame."""
    g, lap, grad2, detail = _maps(view)
    tiles = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        row = []
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            cut, half = np.s_[y0:y1, x0:x1], np.s_[y0 // 2 : -(-y1 // 2), x0 // 2 : -(-x1 // 2)]
            row.append(_measures(g[cut], lap[cut], grad2[cut], detail[half]))
        tiles.append(tuple(row))
    frame = _measures(g, lap, grad2, detail)
    return FocusMap(frame, tuple(tiles), tuple(map(int, ys)), tuple(map(int, xs)))


def _maps(view: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame in float64, its Laplacian, squared Sobel gradient, and the Haar detail
    energy of each 2x2 block (on the half-size grid)."""
    g = view.astype(np.float64)
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
    detail = ((a + b - c - d) ** 2 + (a - b + c - d) ** 2 + (a - b - c + d) ** 2) / 4.0
    return g, lap, grad2, detail


def _measures(g, lap, grad2, detail) -> FocusScores:
    return FocusScores(
        laplacian_var=float(lap.var()),
        tenengrad=float(grad2.mean()),
        sobel_mean=float(np.sqrt(grad2).mean()),
        haar_energy=float(detail.sum() / detail.size),
        mean=float(g.mean()),
        std=float(g.std()),
    )


class NumpyBackend(Backend):
    """The reference backend: plain NumPy, always available, about 15 ms at 1080p."""

    name = "numpy"

    def _scores(self, view: np.ndarray) -> FocusScores:
        return reference_scores(view)

    def _focus_map(self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> FocusMap:
        return reference_map(view, ys, xs)
