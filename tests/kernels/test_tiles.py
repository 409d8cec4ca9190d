"""The focus map: each tile's measures from the same pass, on every backend in this process
(CUDA in its own: cuda_sim_cases.py), against the recipes of OpenCV and PyWavelets cut per
tile, and the tiles' exact sums adding up to the frame's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pywt
from hypothesis import given, settings
from hypothesis import strategies as st

from focusmon import kernels
from focusmon.kernels import MEASURES, FocusMap, RawSums
from focusmon.kernels._frame import check_grid, tile_edges
from focusmon.kernels._reference import reference_map

from test_backends import CPU_BACKENDS, assert_close, frames


def test_edges_are_even_cover_the_side_and_differ_by_at_most_two():
    for n in range(2, 200):
        for parts in range(1, n // 2 + 1):
            edges = tile_edges(n, parts)
            sizes = np.diff(edges)
            assert edges[0] == 0 and edges[-1] == n and len(edges) == parts + 1
            assert all(e % 2 == 0 for e in edges[:-1]), (n, parts, edges)
            assert sizes.min() >= 2 and sizes.max() - sizes.min() <= 2 + n % 2, (n, parts)


@pytest.mark.parametrize(
    "tiles, shape, why",
    [((0, 4), (64, 64), "two integers >= 1"), ((4,), (64, 64), "two integers"),
     ((2.5, 2), (64, 64), "two integers"), ("4x4", (64, 64), "two integers"),
     ((4, 4), (7, 64), "at least 8x8"), ((2, 40), (64, 64), "at least 80x4")],
)  # fmt: skip
def test_a_grid_the_frame_cannot_hold_is_refused(tiles, shape, why):
    with pytest.raises(ValueError, match=why):
        check_grid(tiles, shape)


def recipe_map(g: np.ndarray, ys, xs) -> list[list[dict[str, float]]]:
    """Each tile's measures as a user of OpenCV and PyWavelets would write them: the
    whole frame's Laplacian, Sobel gradients and Haar details, cut per tile."""
    f = g.astype(np.float64)
    lap = cv2.Laplacian(f, cv2.CV_64F)
    gx = cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3)
    _, (lh, hl, hh) = pywt.dwt2(f, "haar", mode="symmetric")
    detail = lh**2 + hl**2 + hh**2
    out = []
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        row = []
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            cut = np.s_[y0:y1, x0:x1]
            half = np.s_[y0 // 2 : -(-y1 // 2), x0 // 2 : -(-x1 // 2)]
            grad2 = gx[cut] ** 2 + gy[cut] ** 2
            row.append({
                "laplacian_var": lap[cut].var(), "tenengrad": grad2.mean(),
                "sobel_mean": np.sqrt(grad2).mean(),
                "haar_energy": detail[half].sum() / detail[half].size,
                "mean": f[cut].mean(), "std": f[cut].std(),
                "saturated": np.mean(g[cut] == np.iinfo(g.dtype).max),
                "detail_x": np.mean(hl[half] ** 2), "detail_y": np.mean(lh[half] ** 2),
                "detail_xy": np.mean(hl[half] * lh[half]),
            })  # fmt: skip
        out.append(row)
    return out


@pytest.mark.parametrize("grid", [(1, 1), (4, 4), (3, 5), (2, 1)])
def test_the_reference_map_is_the_recipes_cut_per_tile(photos, grid):
    numpy = kernels.get("numpy")
    for g in [*photos, photos[0][:101, :67]]:
        m = numpy.focus_map(g, grid)
        assert m.grid == grid and m.frame == numpy.scores(g)
        for row, want_row in zip(m.tiles, recipe_map(g, m.ys, m.xs), strict=True):
            for tile, want in zip(row, want_row, strict=True):
                for name in MEASURES:
                    assert getattr(tile, name) == pytest.approx(want[name], rel=1e-9), name


@settings(max_examples=80, deadline=None)
@given(g=frames(), rows=st.integers(1, 6), cols=st.integers(1, 9))
def test_cpu_backends_match_the_reference_map(g, rows, cols):
    rows, cols = min(rows, g.shape[0] // 2) or 1, min(cols, g.shape[1] // 2) or 1
    want = kernels.get("numpy").focus_map(g, (rows, cols))
    for name, options in CPU_BACKENDS[1:]:
        with kernels.get(name, **options) as b:
            got = b.focus_map(g, (rows, cols))
            assert (got.ys, got.xs) == (want.ys, want.xs)
            assert_close(got.frame, want.frame)
            assert_close(got.frame, b.scores(g))
            for row, want_row in zip(got.tiles, want.tiles, strict=True):
                for tile, want_tile in zip(row, want_row, strict=True):
                    assert_close(tile, want_tile)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_the_tiles_exact_sums_add_up_to_the_frames(threads, dtype):
    rng = np.random.default_rng(threads)
    g = rng.integers(0, np.iinfo(dtype).max, (233, 411), dtype, True)
    with kernels.get("numba-cpu", threads=threads) as b:
        ys, xs = check_grid((5, 7), g.shape)
        tiles = b.raw_tile_sums(g, ys, xs)
        total, whole = RawSums.total([t for row in tiles for t in row]), b.raw_sums(g)
    exact = [f for f in RawSums.__dataclass_fields__ if f != "sum_mag"]
    assert [getattr(total, f) for f in exact] == [getattr(whole, f) for f in exact]
    assert total.sum_mag == pytest.approx(whole.sum_mag, rel=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS, ids=lambda p: p[0] + str(p[1]))
def test_a_defocused_corner_shows_in_its_tiles_only(camera, backend):
    name, options = backend
    soft = camera.copy()
    soft[:256, :256] = cv2.GaussianBlur(camera[:256, :256], (0, 0), 3.0)
    with kernels.get(name, **options) as b:
        sharp, blurred = b.focus_map(camera, (4, 4)), b.focus_map(soft, (4, 4))
    ratio = np.array(blurred.values("tenengrad")) / np.array(sharp.values("tenengrad"))
    assert (ratio[:2, :2] < 0.3).all(), ratio  # the corner lost most of its sharpness
    # Tiles away from it (not touching row or column 256) are the same to the last bit.
    assert (ratio[3:, :] == 1).all() and (ratio[:, 3:] == 1).all(), ratio
    assert blurred.frame.tenengrad < sharp.frame.tenengrad


def test_roi_and_units_apply_to_the_map_as_to_the_scores(camera):
    numpy, cpu = kernels.get("numpy"), kernels.get("numba-cpu")
    roi, units = (40, 30, 301, 203), {"scale": 255 / 219, "offset": 16.0}
    got = cpu.focus_map(camera, (3, 4), roi=roi, **units)
    ys, xs = check_grid((3, 4), (203, 301))
    # Limited range: samples from 235 up are saturated.
    want = reference_map(camera[30:233, 40:341], ys, xs, 235).rescaled(units["scale"], 16.0)
    assert got.frame.saturated == np.mean(camera[30:233, 40:341] >= 235) > 0
    assert got.ys[-1] == 203 and got.xs[-1] == 301  # in pixels of the ROI
    assert_close(got.frame, numpy.scores(camera, roi=roi, **units))
    for row, want_row in zip(got.tiles, want.tiles, strict=True):
        for tile, want_tile in zip(row, want_row, strict=True):
            assert_close(tile, want_tile)
    assert isinstance(got, FocusMap) and set(got.as_dict()) == {"grid", "ys", "xs", *MEASURES}
