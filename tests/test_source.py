"""Decoding real encoded media and taking its luma plane, in 8-bit full-range units."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from focusmon import SourceError, kernels
from focusmon.source import DemoSource, luma_of, open_source, range_mapping

from media import write_tone, write_video, yuv420_of

SHARPNESS = ("laplacian_var", "tenengrad", "sobel_mean", "haar_energy")


@pytest.fixture(scope="module")
def picture(camera):
    return np.ascontiguousarray(camera[:240, :320])


def scores_of(path):
    with open_source(str(path)) as source:
        frames = list(source)
    return frames, [
        kernels.get("numpy").scores(f.luma, scale=f.scale, offset=f.offset) for f in frames
    ]


def assert_same_picture(a, b, rel=0.02):
    for m in SHARPNESS:
        assert getattr(a, m) == pytest.approx(getattr(b, m), rel=rel), m
    assert a.mean == pytest.approx(b.mean, abs=0.5)
    assert a.std == pytest.approx(b.std, rel=0.01)


def test_gray_full_range_is_scored_exactly(tmp_path, picture):
    path = write_video(tmp_path / "gray.mkv", [picture] * 3, pix_fmt="gray")
    frames, scores = scores_of(path)
    assert len(frames) == 3 and frames[0].scale == 1.0 and frames[0].offset == 0.0
    assert np.array_equal(frames[0].luma, picture)
    assert scores[0] == kernels.reference_scores(picture)


def test_limited_range_yuv420p_scores_like_the_full_range_picture(tmp_path, picture):
    path = write_video(tmp_path / "tv.mkv", [yuv420_of(picture)] * 2, pix_fmt="yuv420p")
    frames, scores = scores_of(path)
    assert frames[0].luma.dtype == np.uint8
    assert (frames[0].scale, frames[0].offset) == range_mapping(8, full_range=False)
    assert_same_picture(scores[0], kernels.reference_scores(picture))


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "gray16le"])
def test_high_bit_depth_keeps_16_bits_and_scores_in_8_bit_units(tmp_path, picture, pix_fmt):
    if pix_fmt == "gray16le":
        deep = picture.astype(np.uint16) * 257  # full range 16 bit
    else:
        deep = yuv420_of(picture, bits=10)
    path = write_video(tmp_path / f"{pix_fmt}.mkv", [deep] * 2, pix_fmt=pix_fmt)
    frames, scores = scores_of(path)
    assert frames[0].luma.dtype == np.uint16
    assert frames[0].luma.max() > 255
    assert_same_picture(scores[0], kernels.reference_scores(picture))


def test_luma_is_a_view_of_the_padded_plane_not_a_copy(tmp_path, picture):
    odd = picture[:, :300]  # 300 is not a multiple of the decoder's row alignment
    path = write_video(tmp_path / "pad.mkv", [yuv420_of(odd)], pix_fmt="yuv420p")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        luma, _, _ = luma_of(frame)
        plane = frame.planes[0]
        assert plane.line_size > 300
        assert luma.shape == (240, 300) and luma.strides[0] == plane.line_size
        assert not luma.flags.owndata and luma.base is not None


def test_rgb_is_converted_to_gray_once(tmp_path, picture):
    rgb = np.repeat(picture[:, :, None], 3, axis=2)
    path = write_video(tmp_path / "rgb.nut", [rgb], pix_fmt="rgb24", codec="rawvideo")
    frames, scores = scores_of(path)
    assert frames[0].luma.dtype == np.uint8
    assert_same_picture(scores[0], kernels.reference_scores(picture))


def test_odd_size_yuv444p(tmp_path):
    rng = np.random.default_rng(0)
    g = cv2.GaussianBlur(rng.integers(0, 255, (241, 321), np.uint8), (0, 0), 1.0)
    planes = np.stack([g, np.full_like(g, 128), np.full_like(g, 128)])
    path = write_video(tmp_path / "odd.mkv", [planes], pix_fmt="yuv444p")
    frames, _ = scores_of(path)
    assert frames[0].luma.shape == (241, 321)


def test_pts_are_seconds_and_indices_count_from_zero(tmp_path, picture):
    path = write_video(tmp_path / "t.mkv", [picture] * 5, pix_fmt="gray", rate=25)
    frames, _ = scores_of(path)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.pts for f in frames] == pytest.approx([0, 0.04, 0.08, 0.12, 0.16])


def test_images_and_16_bit_tiff_stacks(tmp_path, picture):
    cv2.imwrite(str(tmp_path / "g.png"), picture)
    cv2.imwrite(str(tmp_path / "c.jpg"), cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR))
    deep = [(picture.astype(np.uint16) * 16 + k) for k in range(3)]  # 12-bit data in 16 bits
    assert cv2.imwritemulti(str(tmp_path / "stack.tif"), deep)

    frames, scores = scores_of(tmp_path / "g.png")
    assert len(frames) == 1 and scores[0] == kernels.reference_scores(picture)
    frames, _ = scores_of(tmp_path / "c.jpg")
    assert frames[0].luma.ndim == 2

    with open_source(str(tmp_path / "stack.tif")) as source:
        assert source.total == 3
        pages = list(source)
    assert [p.index for p in pages] == [0, 1, 2]
    assert pages[2].luma.dtype == np.uint16 and np.array_equal(pages[2].luma, deep[2])
    assert pages[0].scale == pytest.approx(255 / 65535)


def test_missing_file_and_file_without_video(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.png"))
    audio = tmp_path / "tone.wav"
    write_tone(audio)
    with pytest.raises(SourceError, match="no video stream"):
        open_source(str(audio))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(junk))


def test_demo_goes_out_of_focus_and_back():
    demo = DemoSource(frames=101, period_s=4.0)
    with kernels.get("numba-cpu") as b:
        lap = [b.scores(f.luma).laplacian_var for f in demo]
    assert len(lap) == 101
    sharp, blurred, sharp_again = lap[0], lap[50], lap[100]  # t = 0, 2 s, 4 s
    assert blurred < 0.2 * sharp and sharp_again > 0.8 * sharp
