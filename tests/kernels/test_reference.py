"""The NumPy reference against the recipes it is defined by: OpenCV and PyWavelets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pywt

from focusmon.kernels import reference_scores

RTOL = 1e-9


def recipes(g: np.ndarray) -> dict[str, float]:
    """The measures as users of OpenCV and PyWavelets write them."""
    f = g.astype(np.float64)
    gx = cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3)
    ll, (lh, hl, hh) = pywt.dwt2(f, "haar", mode="symmetric")
    return {
        "laplacian_var": cv2.Laplacian(f, cv2.CV_64F).var(),
        "tenengrad": float(np.mean(gx**2 + gy**2)),
        "sobel_mean": float(np.mean(np.sqrt(gx**2 + gy**2))),
        "haar_energy": float(((lh**2).sum() + (hl**2).sum() + (hh**2).sum()) / ll.size),
        "mean": float(f.mean()),
        "std": float(f.std()),
        "saturated": float(np.mean(g == np.iinfo(g.dtype).max)),
        # PyWavelets' horizontal detail cH is the change down the rows (dy), its vertical
        # cV the change along them (dx).
        "detail_x": float(np.mean(hl**2)),
        "detail_y": float(np.mean(lh**2)),
        "detail_xy": float(np.mean(hl * lh)),
    }


def assert_matches(g: np.ndarray) -> None:
    ours = reference_scores(g).as_dict()
    theirs = recipes(np.ascontiguousarray(g))
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=RTOL, abs=1e-12), name


@pytest.mark.parametrize("shape", [(3, 3), (3, 4), (4, 3), (5, 7), (8, 8), (31, 17), (64, 65)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_random_frames_match_opencv_and_pywavelets(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    g = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    assert_matches(g)


def test_photographs_match(photos):
    for g in photos:
        assert_matches(g)
        assert_matches(g.astype(np.uint16) * 257)  # the same picture, 16 bit


def test_strided_view_of_a_padded_plane(camera):
    padded = np.zeros((camera.shape[0], camera.shape[1] + 64), np.uint8)
    padded[:, : camera.shape[1]] = camera
    view = padded[:, : camera.shape[1]]
    assert not view.flags.c_contiguous
    assert reference_scores(view) == reference_scores(camera)
    assert_matches(view)


def test_saturation_counts_from_the_level_given():
    g = np.array([[0, 100, 235], [236, 254, 255], [255, 17, 3]], np.uint8)
    assert reference_scores(g).saturated == pytest.approx(2 / 9)
    assert reference_scores(g, level=235).saturated == pytest.approx(5 / 9)
    wide = np.array([[1023, 4000, 12], [0, 1022, 1023], [5, 5, 5]], np.uint16)
    assert reference_scores(wide, level=1023).saturated == pytest.approx(3 / 9)


def test_direction_energies_tell_stripes_apart():
    across = np.tile(np.array([0, 200, 50, 255, 10], np.uint8), (40, 8))  # changes along x
    down = np.ascontiguousarray(across.T)
    for g, along, still in ((across, "detail_x", "detail_y"), (down, "detail_y", "detail_x")):
        s = reference_scores(g)
        assert getattr(s, still) == 0 and s.detail_xy == 0
        assert getattr(s, along) > 0.5 * s.haar_energy > 0
    diagonal = np.add.outer(np.arange(40), np.arange(40)).astype(np.uint8) * 9
    s = reference_scores(diagonal)
    assert s.detail_x == pytest.approx(s.detail_y) and s.detail_xy == pytest.approx(s.detail_x)


def test_flat_frame_is_zero_not_nan():
    s = reference_scores(np.full((9, 11), 77, np.uint8))
    assert (s.laplacian_var, s.tenengrad, s.sobel_mean, s.haar_energy, s.std) == (0, 0, 0, 0, 0)
    assert s.mean == 77
