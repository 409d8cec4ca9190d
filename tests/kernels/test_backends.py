"""Every backend that runs in this process against the NumPy reference, and the properties
the measures must have whatever the backend. (CUDA runs in its own process: test_cuda.py.)"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from focusmon import kernels
from focusmon.kernels import MEASURES, reference_scores

RTOL = 1e-9
CPU_BACKENDS = [("numpy", {}), ("numba-cpu", {}), ("numba-cpu", {"threads": 2})]


@pytest.fixture(params=CPU_BACKENDS, ids=lambda p: p[0] + "".join(f"-{v}" for v in p[1].values()))
def backend(request):
    name, options = request.param
    with kernels.get(name, **options) as b:
        yield b


def assert_close(got, want, rtol=RTOL):
    for name in MEASURES:
        g, w = getattr(got, name), getattr(want, name)
        assert np.isfinite(g), name
        assert g == pytest.approx(w, rel=rtol, abs=1e-12), name


@st.composite
def frames(draw):
    """uint8/uint16 frames of 3x3 and up, some of them strided views of a wider plane."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    h = draw(st.integers(3, 40))
    w = draw(st.integers(3, 70))
    pad = draw(st.sampled_from([0, 0, 1, 13]))
    top = np.iinfo(dtype).max
    hi = draw(st.sampled_from([1, 3, 255, top]))
    plane = draw(
        hnp.arrays(dtype, (h, w + pad), elements=st.integers(0, min(hi, top)), fill=st.nothing())
        if h * (w + pad) < 200
        else st.builds(
            lambda seed: np.random.default_rng(seed).integers(0, hi, (h, w + pad), dtype, True),
            st.integers(0, 2**32 - 1),
        )
    )
    return plane[:, :w]


@settings(max_examples=120, deadline=None)
@given(g=frames())
def test_cpu_backends_match_reference(g):
    want = reference_scores(g)
    for name, options in CPU_BACKENDS:
        with kernels.get(name, **options) as b:
            assert_close(b.scores(g), want)


@settings(max_examples=60, deadline=None)
@given(g=frames(), data=st.data())
def test_roi_is_the_same_as_cropping(g, data):
    h, w = g.shape
    rw = data.draw(st.integers(3, w))
    rh = data.draw(st.integers(3, h))
    x = data.draw(st.integers(0, w - rw))
    y = data.draw(st.integers(0, h - rh))
    crop = np.ascontiguousarray(g[y : y + rh, x : x + rw])
    with kernels.get("numba-cpu") as b:
        assert_close(b.scores(g, roi=(x, y, rw, rh)), reference_scores(crop))


def test_photographs(backend, photos):
    for g in photos:
        assert_close(backend.scores(g), reference_scores(g))


def test_large_frames_and_4k_width(backend):
    rng = np.random.default_rng(7)
    for shape in [(1080, 1920), (37, 3840 + 3)]:
        g = rng.integers(0, 256, shape, dtype=np.uint8)
        assert_close(backend.scores(g), reference_scores(g))
    g16 = rng.integers(0, 65536, (301, 2049), dtype=np.uint16)
    assert_close(backend.scores(g16), reference_scores(g16))


@pytest.mark.parametrize("w", [1024, 1025, 1026, 1027, 2049, 2050])
def test_widths_around_column_blocks(backend, w):
    """numba-cpu scores 1024 interior columns per block and puts the border columns after
    the last one: widths where a block ends at, just before, or just after a border."""
    rng = np.random.default_rng(w)
    for dtype in (np.uint8, np.uint16):
        g = rng.integers(0, np.iinfo(dtype).max, (5, w), dtype, endpoint=True)
        assert_close(backend.scores(g), reference_scores(g))


def test_sobel_mean_is_float64_accurate(backend):
    """Ramps give every pixel the same gradient, so a rounding error of the magnitude would
    not average out; numba-cpu takes its uint8 square roots in float32 plus a correction."""
    cols = np.arange(1100)
    for slope in (1, 2, 3, 5, 7, 97, 255):
        for g in (
            (cols * slope // 4 % 256).astype(np.uint8)[None, :].repeat(9, axis=0),
            ((cols[:, None] * slope + cols[None, :300]) // 3 % 256).astype(np.uint8),
        ):
            want = reference_scores(g).sobel_mean
            assert backend.scores(g).sobel_mean == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_extreme_values_do_not_overflow(backend):
    """A full-scale checkerboard maximises every stencil term."""
    for dtype in (np.uint8, np.uint16):
        top = np.iinfo(dtype).max
        board = (np.indices((64, 2500)).sum(axis=0) % 2 * top).astype(dtype)
        assert_close(backend.scores(board), reference_scores(board))


def test_non_unit_column_stride_is_scored_correctly(backend, camera):
    view = camera[::2, ::3]
    assert_close(backend.scores(view), reference_scores(np.ascontiguousarray(view)))


def test_scale_and_offset(backend, camera):
    base = backend.scores(camera)
    got = backend.scores(camera, scale=0.5, offset=16)
    assert got.laplacian_var == pytest.approx(base.laplacian_var * 0.25, rel=RTOL)
    assert got.tenengrad == pytest.approx(base.tenengrad * 0.25, rel=RTOL)
    assert got.haar_energy == pytest.approx(base.haar_energy * 0.25, rel=RTOL)
    assert got.sobel_mean == pytest.approx(base.sobel_mean * 0.5, rel=RTOL)
    assert got.std == pytest.approx(base.std * 0.5, rel=RTOL)
    assert got.mean == pytest.approx((base.mean - 16) * 0.5, rel=RTOL)


# Properties (scikit-image style): what any sharpness measure must do.

SHARPNESS = ("laplacian_var", "tenengrad", "sobel_mean", "haar_energy")


def test_flat_frame_scores_zero(backend):
    for dtype, value in ((np.uint8, 0), (np.uint8, 255), (np.uint16, 4095)):
        s = backend.scores(np.full((17, 23), value, dtype))
        assert [getattr(s, m) for m in SHARPNESS] == [0.0] * 4
        assert s.std == 0.0 and s.mean == value


def test_unchanged_by_an_added_constant(backend, camera):
    dim = (camera // 2).astype(np.uint8)
    a, b = backend.scores(dim), backend.scores(dim + 100)
    for m in (*SHARPNESS, "std"):
        assert getattr(a, m) == pytest.approx(getattr(b, m), rel=RTOL)
    assert b.mean == pytest.approx(a.mean + 100, rel=RTOL)


@pytest.mark.parametrize("k", [2, 3])
def test_contrast_times_k_scales_by_k_squared(backend, camera, k):
    dim = (camera // 4).astype(np.uint8)
    a, b = backend.scores(dim), backend.scores(dim * k)
    for m in ("laplacian_var", "tenengrad", "haar_energy"):
        assert getattr(b, m) == pytest.approx(getattr(a, m) * k * k, rel=RTOL)
    assert b.sobel_mean == pytest.approx(a.sobel_mean * k, rel=RTOL)
    assert b.std == pytest.approx(a.std * k, rel=RTOL)


def test_scores_fall_as_blur_grows(backend, photos):
    for g in photos:
        series = [backend.scores(g)]
        for sigma in (0.7, 1.5, 3.0, 6.0):
            series.append(backend.scores(cv2.GaussianBlur(g, (0, 0), sigma)))
        for m in SHARPNESS:
            values = [getattr(s, m) for s in series]
            assert values == sorted(values, reverse=True), (m, values)
            assert values[-1] < 0.5 * values[0], (m, values)


# Bad input: a clear error that names what is wrong.


@pytest.mark.parametrize(
    ("luma", "error", "words"),
    [
        (np.zeros((2, 5), np.uint8), ValueError, "at least 3x3"),
        (np.zeros((1, 1), np.uint8), ValueError, "(1, 1)"),
        (np.zeros((5, 5, 3), np.uint8), ValueError, "2-D"),
        (np.zeros((5, 5), np.float32), TypeError, "uint8 or uint16"),
        (np.zeros((5, 5), np.int16), TypeError, "int16"),
        ([[1, 2, 3]] * 3, TypeError, "numpy.ndarray"),
    ],
)
def test_bad_frames_are_rejected_clearly(backend, luma, error, words):
    with pytest.raises(error, match=None) as info:
        backend.scores(luma)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("roi", "words"),
    [
        ((600, 0, 100, 100), "x=600"),
        ((0, 0, 2, 10), "at least 3x3"),
        ((-1, 0, 10, 10), "x=-1"),
        ((0, 0, 10), "four integers"),
        ((0.5, 0, 10, 10), "four integers"),
    ],
)
def test_bad_roi_is_rejected_clearly(backend, roi, words):
    with pytest.raises(ValueError) as info:
        backend.scores(np.zeros((480, 640), np.uint8), roi=roi)
    assert words in str(info.value) and "roi" in str(info.value)


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_scale(backend, scale):
    with pytest.raises(ValueError, match="scale"):
        backend.scores(np.zeros((5, 5), np.uint8), scale=scale)


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads"):
        kernels.get("numba-cpu", threads=0)


def test_16_bit_rows_too_long_for_exact_sums_are_refused(backend):
    """Sums are exact int64 over bands of rows; a 16-bit row over 2^20 samples could
    overflow a band, so it is refused by name. 8-bit rows that long are fine."""
    from focusmon.kernels._frame import MAX_ROW_16

    with pytest.raises(ValueError, match="at most 1048576"):
        backend.scores(np.zeros((3, MAX_ROW_16 + 1), np.uint16))
    assert backend.scores(np.zeros((3, MAX_ROW_16), np.uint16)).laplacian_var == 0.0
    wide = np.zeros((3, MAX_ROW_16 + 1), np.uint8)
    wide[1, ::2] = 255
    got, want = backend.scores(wide), kernels.get("numpy").scores(wide)
    for m in MEASURES:
        assert getattr(got, m) == pytest.approx(getattr(want, m), rel=1e-12), m
