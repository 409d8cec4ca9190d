"""Decoding real encoded media and taking its luma plane, in 8-bit full-range units."""

from __future__ import annotations

import fractions
import logging
import os
import re
import shutil
import subprocess
import time

import av
import cv2
import numpy as np
import pytest

from focusmon import ConfigError, SourceError, kernels
from focusmon.scheduler import AlertTracker
from focusmon.source import (
    FFMPEG_OPTIONS,
    DemoCamera,
    DemoSource,
    SourceOptions,
    Timeline,
    luma_of,
    open_source,
    range_mapping,
)

from media import h264_clip, write_tone, write_video, yuv420_of

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


LUMA_FORMATS = ["yuv420p", "yuvj420p", "nv12", "nv21", "yuv422p", "yuv444p", "gray",
                "yuv420p10le", "yuv422p10le", "yuv444p12le", "gray10le", "gray12le",
                "yuv420p16le", "p010le"]  # fmt: skip


@pytest.mark.parametrize("pix_fmt", LUMA_FORMATS)
def test_luma_formats_are_read_in_place_in_8_bit_full_range_units(picture, pix_fmt):
    """Each format made by FFmpeg's own converter from one gray picture: plane 0 is read
    where it lies, and (sample - offset) * scale gives the picture back."""
    frame = av.VideoFrame.from_ndarray(picture, format="gray").reformat(format=pix_fmt)
    luma, scale, offset = luma_of(frame)
    assert luma.__array_interface__["data"][0] == frame.planes[0].buffer_ptr
    assert luma.dtype == (np.uint8 if frame.format.components[0].bits == 8 else np.uint16)
    back = (luma.astype(np.float64) - offset) * scale
    assert np.abs(back - picture).max() < 1.5


@pytest.mark.parametrize("pix_fmt", ["rgb24", "bgr0", "yuyv422", "gbrp10le"])
def test_formats_without_a_luma_plane_are_converted_once(picture, pix_fmt):
    frame = av.VideoFrame.from_ndarray(picture, format="gray").reformat(format=pix_fmt)
    luma, scale, offset = luma_of(frame)
    assert luma.shape == picture.shape
    assert np.abs((luma.astype(np.float64) - offset) * scale - picture).max() < 1.5


def test_palette_video_is_converted_to_gray(tmp_path, picture):
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 0] = 255  # ARGB: opaque greys
    palette[:, 1:] = np.arange(256)[:, None]
    path = tmp_path / "pal.nut"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.pix_fmt, stream.height, stream.width = "pal8", *picture.shape
        out.mux(stream.encode(av.VideoFrame.from_ndarray((picture, palette), format="pal8")))
        out.mux(stream.encode())
    frames, scores = scores_of(path)
    assert np.abs(frames[0].luma.astype(int) - picture).max() <= 1
    assert_same_picture(scores[0], kernels.reference_scores(picture))


def test_folders_are_read_in_natural_order_and_unreadable_files_are_skipped(tmp_path, picture):
    for k in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{k}.png"), picture + k)
    (tmp_path / "img5.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    cv2.imwritemulti(str(tmp_path / "stack.tif"), [picture, picture // 2])  # 8-bit stack
    with open_source(str(tmp_path)) as source:
        frames = list(source)
    firsts = [int(f.luma[0, 0]) - int(picture[0, 0]) for f in frames[:3]]
    assert firsts == [1, 2, 10]  # img1, img2, img10; img5 is damaged
    assert len(frames) == 5 and frames[-1].luma.dtype == np.uint8
    assert [f.index for f in frames] == [0, 1, 3, 4, 5]  # index 2 is img5
    assert source.stats.corrupt == 1 and source.stats.decoded == 6
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(empty))


def test_variable_frame_rate_keeps_the_stream_times(tmp_path, picture):
    times = [0.0, 0.04, 0.2, 0.21, 1.5]
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.pix_fmt, stream.height, stream.width = "gray", *picture.shape
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for t in times:
            frame = av.VideoFrame.from_ndarray(picture, format="gray")
            frame.pts, frame.time_base = round(t * 1000), stream.time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    frames, _ = scores_of(path)
    assert [f.pts for f in frames] == pytest.approx(times)


def test_raw_h264_without_pts_gets_times_from_the_frame_rate(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    raw = tmp_path / "c.h264"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(clip), "-c", "copy", "-f", "h264",
                    str(raw)], check=True, timeout=60)  # fmt: skip
    with av.open(str(raw)) as container:
        assert next(container.decode(video=0)).pts is None  # the trap this test is about
    frames, _ = scores_of(raw)
    assert len(frames) == 25
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(25)])


def test_timeline_never_runs_backwards():
    line = Timeline(0.04)
    times = [line.time_of(p, 0.0) for p in (None, 0.04, 0.08, None, 0.0, 0.04, 5.0)]
    # None after 0.08 -> 0.12; a restart at 0 continues at 0.16; the forward jump is kept
    assert times == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16, 0.20, 5.16])
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))
    by_arrival = Timeline(None)
    assert [by_arrival.time_of(None, t) for t in (10.0, 10.5, 10.25)] == [0.0, 0.5, 0.5]


def test_a_resolution_change_mid_stream_is_followed(tmp_path):
    small = h264_clip(tmp_path / "a.ts", 0.4, size="320x240")
    large = h264_clip(tmp_path / "b.ts", 0.4, size="480x360")
    both = tmp_path / "both.ts"
    both.write_bytes(small.read_bytes() + large.read_bytes())  # MPEG-TS concatenates
    frames, scores = scores_of(both)
    shapes = [f.luma.shape for f in frames]
    assert shapes[0] == (240, 320) and shapes[-1] == (360, 480)
    assert all(np.isfinite(s.laplacian_var) for s in scores)


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory):
    """4 s at 25 fps, a keyframe every second."""
    return h264_clip(tmp_path_factory.mktemp("gop") / "gop.mp4", 4.0, gop=25)


def test_keyframes_only_decodes_one_frame_per_gop(gop_clip):
    with open_source(str(gop_clip), SourceOptions(keyframes_only=True)) as source:
        frames = list(source)
    assert [f.pts for f in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert source.stats.decoded == 4  # the decoder skipped the rest


def test_every_nth_frame_and_at_most_f_per_second(gop_clip):
    with open_source(str(gop_clip), SourceOptions(every=3)) as source:
        assert [f.index for f in source][:4] == [0, 3, 6, 9]
    assert source.stats.decoded == 100
    with open_source(str(gop_clip), SourceOptions(max_fps=5)) as source:
        times = [f.pts for f in source]
    assert len(times) == 20
    assert min(np.diff(times)) >= 0.2 - 1e-9


def test_truncated_and_bit_flipped_files_decode_what_they_can(tmp_path):
    clip = h264_clip(tmp_path / "c.ts", 2.0)
    data = clip.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(str(cut)) as source:
        frames = list(source)
    assert 10 < len(frames) < 50

    rng = np.random.default_rng(1)
    damaged = bytearray(data)
    for pos in rng.integers(2000, len(data), 30):
        damaged[pos] ^= 1 << int(rng.integers(0, 8))
    flipped = tmp_path / "flipped.ts"
    flipped.write_bytes(bytes(damaged))
    with open_source(str(flipped)) as source, kernels.get("numpy") as backend:
        scores = [backend.scores(f.luma, scale=f.scale, offset=f.offset) for f in source]
    assert len(scores) > 10
    assert all(np.isfinite(list(s.as_dict().values())).all() for s in scores)
    stats = source.stats
    assert stats.corrupt + stats.undecodable > 0  # damage was seen and counted
    assert len(scores) + stats.corrupt == stats.decoded


def test_a_truncated_mp4_without_its_index_fails_at_open(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)  # moov at the end: cut it off
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(cut))


def test_opening_and_closing_300_times_leaks_nothing(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 0.2)
    for _ in range(20):  # warm up allocators and caches
        with open_source(str(clip)) as source:
            next(iter(source))
    fds, rss = _open_fds(), _rss_mb()
    for k in range(300):
        with open_source(str(clip)) as source:
            if k % 2:
                next(iter(source))  # half stopped mid-stream, half never iterated
    assert _open_fds() <= fds
    assert _rss_mb() - rss < 15


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_source_options_are_checked():
    for bad in ({"every": 0}, {"max_fps": -1}, {"timeout_s": float("nan")},
                {"rtsp_transport": "quic"}, {"decoder_threads": -1}):  # fmt: skip
        with pytest.raises(ConfigError, match=next(iter(bad))):
            SourceOptions(**bad)
    with pytest.raises(ConfigError, match="unknown FFmpeg option 'stimeout'"):
        open_source("rtsp://127.0.0.1:1/x", SourceOptions(ffmpeg_options={"stimeout": "1"}))


def test_every_ffmpeg_option_name_we_pass_or_accept_exists_in_ffmpeg():
    """FFmpeg ignores unknown option names silently; our table must hold only real ones."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg CLI is missing: apt-get install ffmpeg")
    help_text = subprocess.run(
        ["ffmpeg", "-hide_banner", "-h", "full"], capture_output=True, text=True, timeout=60
    ).stdout
    known = set(re.findall(r"^\s+-(\w+)\s", help_text, re.MULTILINE))
    for kind, names in FFMPEG_OPTIONS.items():
        assert names <= known, (kind, sorted(names - known))


def test_the_demo_camera_shows_every_state_within_a_minute():
    now = [0.0]
    camera = DemoCamera(size=(160, 96), fps=8.0, clock=lambda: now[0],
                        sleep=lambda s: now.__setitem__(0, now[0] + s))  # fmt: skip
    tracker = AlertTracker("demo")
    backend = kernels.get("numba-cpu")
    states = []
    for frame in camera:
        change = tracker.update(backend.scores(frame.luma), frame.pts)
        if change:
            states.append(change.state)
        if frame.pts >= 60:
            break
    assert states == ["blurred", "ok", "obstructed", "ok", "dark", "ok"]
    assert now[0] == pytest.approx(60, abs=0.2)  # delivered in (simulated) real time


def test_a_watched_sources_log_lines_start_with_its_stream(caplog):
    """A reconnect line names the stream first, then the source (redacted)."""
    import socket
    import threading

    caplog.set_level(logging.INFO, "focusmon")
    with socket.socket() as s:  # a port with nothing listening: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = SourceOptions(retry_first_connect=True, reconnect_initial_s=0.05, timeout_s=2)
    source = open_source(f"rtsp://viewer:hunter2@127.0.0.1:{port}/x", options, stream="door")
    thread = threading.Thread(target=lambda: list(source), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not any("retrying" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no retry line"
        time.sleep(0.05)
    source.close()
    thread.join(10)
    line = next(r.getMessage() for r in caplog.records if "retrying" in r.getMessage())
    assert line.startswith(f"door: cannot open rtsp://***@127.0.0.1:{port}/x: "), line
    assert "hunter2" not in caplog.text
    plain = open_source(f"rtsp://127.0.0.1:{port}/x", options)  # not watched: its name only
    assert plain.stream == "" and plain._said("x") == "x"
    plain.close()


class _FakeGpuPlane:
    """What PyAV's plane of a CUDA frame does with DLPack: exports with no stream only."""

    def __init__(self):
        self.calls = []

    def __dlpack__(self, *, stream=None):
        self.calls.append(stream)
        if stream is not None:
            raise NotImplementedError("CUDA stream synchronization is not supported.")
        return "capsule"

    def __dlpack_device__(self):
        return (2, 0)


def test_a_device_frame_is_handed_over_only_on_the_stream_it_was_written_on():
    """FFmpeg's NVDEC copy is queued on the legacy default stream (PyAV sets no stream of
    its own): a consumer there (1, or DLPack's default None) gets the plane; any other
    stream is refused with BufferError rather than silently unordered, so the consumer
    orders itself after the legacy stream (as the CUDA backend does)."""
    from types import SimpleNamespace

    from focusmon.source import DeviceLuma

    plane = _FakeGpuPlane()
    luma = DeviceLuma(SimpleNamespace(planes=[plane], height=4, width=6), np.dtype(np.uint8))
    assert luma.shape == (4, 6) and luma.__dlpack_device__() == (2, 0)
    assert luma.__dlpack__(stream=1) == "capsule"
    assert luma.__dlpack__() == "capsule"
    with pytest.raises(BufferError, match="legacy default stream"):
        luma.__dlpack__(stream=0x7F0012345678)
    assert plane.calls == [None, None]  # PyAV was never given a stream it would refuse
