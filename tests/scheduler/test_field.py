"""The focus across the field: each tile's peak in a sweep of focus maps, and the plane and
bowl through them, on curves whose peaks are known and on rendered tilted slides."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import skimage.data

from focusmon import kernels, testing
from focusmon.kernels import FocusMap, FocusScores
from focusmon.scheduler import fit_field


def synthetic_maps(peak_at, ys=(0, 60, 120, 180, 240), xs=(0, 80, 160, 240, 320), n=41):
    """A sweep of n focus maps whose tile (r, c) peaks (a Gaussian in Tenengrad) at frame
    ``peak_at(x, y)`` of its centre."""
    rows = []
    for r in range(len(ys) - 1):
        row = []
        for c in range(len(xs) - 1):
            x, y = (xs[c] + xs[c + 1]) / 2, (ys[r] + ys[r + 1]) / 2
            row.append(peak_at(x, y))
        rows.append(row)
    maps = []
    for k in range(n):
        tiles = tuple(
            tuple(FocusScores(0.0, 100.0 + 900.0 * math.exp(-(((k - p) / 4.0) ** 2)), 1.0,
                              1.0, 100.0, 10.0) for p in row)
            for row in rows
        )  # fmt: skip
        maps.append(FocusMap(tiles[0][0], tiles, tuple(ys), tuple(xs)))
    return maps, rows


def test_a_known_plane_and_bowl_are_found():
    def peak_at(x, y):
        dx, dy = (x - 160) / 100, (y - 120) / 100
        return 20.0 + 3.0 * dx - 2.0 * dy + 1.5 * (dx * dx + dy * dy)

    maps, truth = synthetic_maps(peak_at)
    fit = fit_field(maps, measure="tenengrad")
    assert np.allclose(fit.positions, truth, atol=0.05)
    assert fit.tilt_x == pytest.approx(3.0, abs=0.05)
    assert fit.tilt_y == pytest.approx(-2.0, abs=0.05)
    assert fit.curvature == pytest.approx(1.5, abs=0.05)
    assert fit.residual < 0.05 and fit.tilt == pytest.approx(math.hypot(3, 2), abs=0.05)
    out = fit.as_dict(z_step=0.5)  # 0.5 um a frame; tile centres 240 px apart along x
    assert out["tilt_x_across"] == pytest.approx(fit.tilt_x * 2.4 * 0.5)
    assert out["curvature_corner"] == pytest.approx(fit.curvature * (1.2**2 + 0.9**2) * 0.5)


def test_a_flat_field_has_no_tilt_and_one_row_has_no_vertical_tilt():
    maps, _ = synthetic_maps(lambda x, y: 17.0)
    fit = fit_field(maps, measure="tenengrad")
    assert abs(fit.tilt_x) < 1e-6 and abs(fit.tilt_y) < 1e-6 and abs(fit.curvature) < 1e-6
    maps, _ = synthetic_maps(lambda x, y: 10 + x / 40, ys=(0, 240))
    fit = fit_field(maps, measure="tenengrad")
    assert fit.tilt_y is None and fit.curvature is None
    assert fit.tilt_x == pytest.approx(2.5, abs=0.05) and fit.tilt == fit.tilt_x
    with pytest.raises(ValueError, match="same grid"):
        fit_field([maps[0], synthetic_maps(lambda x, y: 1.0)[0][0]])
    with pytest.raises(ValueError, match="empty"):
        fit_field([])


@pytest.mark.parametrize("seed, tilt", [(1, (2.0, -1.0)), (2, (-1.5, 0.5)), (3, (0.0, 2.5))])
def test_the_tilt_of_a_rendered_tilted_slide_is_within_ten_percent(seed, tilt):
    tissue = cv2.cvtColor(skimage.data.immunohistochemistry(), cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, tissue.shape[0] - 240), rng.integers(0, tissue.shape[1] - 320)
    crop = tissue[y : y + 240, x : x + 320].astype(np.float32) / 255
    sweep = testing.focus_sweep(crop, n_frames=31, focus=15.0, tilt=tilt, rng=rng)
    assert (sweep.tilt_x, sweep.tilt_y) == tilt
    with kernels.get("numba-cpu") as backend:
        fit = fit_field([backend.focus_map(f, (4, 4)) for f in sweep.frames])
    assert fit.tilt == pytest.approx(math.hypot(*tilt), rel=0.1), (fit.tilt_x, fit.tilt_y)
    assert fit.tilt_x == pytest.approx(tilt[0], abs=0.25)
    assert fit.tilt_y == pytest.approx(tilt[1], abs=0.25)
    assert abs(fit.curvature) < 0.3  # a plane, not a bowl


def test_tiles_mostly_saturated_are_left_out_of_the_fit():
    """A bright spot that clips (a bead in fluorescence) over a corner tile: its curve says
    nothing of focus, so the tile has no position and the plane comes from the rest."""
    tissue = cv2.cvtColor(skimage.data.immunohistochemistry(), cv2.COLOR_RGB2GRAY)
    crop = tissue[100:340, 200:520].astype(np.float32) / 255
    crop[:70, :90] = 4.0  # four times full scale: clipped, even blurred, over tile (0, 0)
    tilt = (2.0, -1.0)
    sweep = testing.focus_sweep(crop, n_frames=31, focus=15.0, tilt=tilt, rng=4)
    with kernels.get("numba-cpu") as backend:
        maps = [backend.focus_map(f, (4, 4)) for f in sweep.frames]
    assert min(m.tiles[0][0].saturated for m in maps) > 0.5
    assert max(m.tiles[2][2].saturated for m in maps) < 0.2  # far from it: not mostly
    fit = fit_field(maps)
    assert fit.positions[0][0] is None
    assert sum(p is None for row in fit.positions for p in row) == 1
    assert fit.tilt == pytest.approx(math.hypot(*tilt), rel=0.1), (fit.tilt_x, fit.tilt_y)
