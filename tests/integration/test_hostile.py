"""Hostile input: damaged media through ``focusmon score``, degenerate frames through every
backend and through the whole command.

Damaged media are real files made here (H.264 in MP4 with and without faststart, MKV,
MPEG-TS and raw; MJPEG in AVI; FFV1 16-bit gray; PNG 8 and 16 bit; multi-page TIFF 8 and 16
bit) with bytes flipped, ranges overwritten, the end cut, junk inserted or the header
zeroed. Two outcomes are allowed: exit 0 with every number finite, or exit 1 or 2 with one
``focusmon: error:`` line. Never a traceback, a NaN, or a hang: every call is bounded in time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from focusmon import kernels
from focusmon.cli import main
from focusmon.kernels import MEASURES, reference_scores, rescale

from media import h264_clip, write_video, yuv420_of
from servers import ffmpeg_reason

_spec = importlib.util.spec_from_file_location(
    "degenerate_sim_cases", Path(__file__).parents[1] / "kernels" / "degenerate_sim_cases.py"
)
degenerate = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(degenerate)  # the cases, shared with the CUDA simulator's run

#: Seconds one in-process ``focusmon score`` of a damaged 64x48 clip may take (it takes ms).
CALL_TIMEOUT_S = 30.0
#: Fuzz examples per medium: 11 media, about a minute for the module.
EXAMPLES_PER_MEDIUM = 200
CPU_BACKENDS = ("numpy", "numba-cpu")
SHARPNESS = degenerate.SHARPNESS


# -- media ----------------------------------------------------------------------------------

#: Made with PyAV and OpenCV, always; and with the ffmpeg CLI where it is installed.
PYAV_MEDIA = ("h264.mp4", "mjpeg.avi", "gray16.mkv", "gray.png", "gray16.png",
              "stack8.tif", "stack16.tif")  # fmt: skip
CLI_MEDIA = ("faststart.mp4", "h264.mkv", "h264.ts", "raw.h264")
MEDIA = PYAV_MEDIA + CLI_MEDIA


def _pan(camera: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` 48x64 crops of the photograph, panning: frames that differ, and compress."""
    return [np.ascontiguousarray(camera[200:248, 150 + 3 * i : 214 + 3 * i]) for i in range(n)]


@pytest.fixture(scope="module")
def media(tmp_path_factory, camera) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-media")
    frames = _pan(camera, 8)
    deep = [f.astype(np.uint16) * 257 for f in frames]  # the same pictures in 16 bit
    made = {
        "h264.mp4": write_video(
            root / "h264.mp4", [yuv420_of(f) for f in frames], pix_fmt="yuv420p",
            codec="libx264", options={"g": "4"},
        ),
        "mjpeg.avi": write_video(  # full-range 4:2:0 JPEG: "unofficial" to FFmpeg
            root / "mjpeg.avi", [yuv420_of(f, limited=False) for f in frames],
            pix_fmt="yuv420p", codec="mjpeg", options={"strict": "-1"},
        ),
        "gray16.mkv": write_video(
            root / "gray16.mkv", deep, pix_fmt="gray16le", codec="ffv1",
        ),
    }  # fmt: skip
    for name, image in (("gray.png", frames[0]), ("gray16.png", deep[0])):
        assert cv2.imwrite(str(root / name), image)
        made[name] = root / name
    for name, pages in (("stack8.tif", frames[:3]), ("stack16.tif", deep[:3])):
        assert cv2.imwritemulti(str(root / name), pages)
        made[name] = root / name
    if ffmpeg_reason() is None:
        for name in CLI_MEDIA:
            args = ("-movflags", "+faststart") if name == "faststart.mp4" else ()
            made[name] = h264_clip(root / name, 0.32, *args, size="64x48", gop=4)
    return made


def _medium(media: dict[str, Path], name: str) -> Path:
    if name not in media:
        pytest.skip(ffmpeg_reason() or f"{name} was not made")
    return media[name]


def test_the_undamaged_media_score_every_frame(media):
    """The fuzz starts from media that work: 8 frames of video, 3 pages, 1 image."""
    expected = {"png": 1, "tif": 3}
    for name, path in media.items():
        outcome = score_in_process(path, "numpy")
        assert outcome.code == 0, (name, outcome.err)
        assert len(outcome.rows()) == expected.get(name.rsplit(".", 1)[1], 8), name


# -- running focusmon score and judging what came of it ------------------------------------


@dataclass
class Outcome:
    """What one ``focusmon score`` run left: exit code (None if it raised), stdout, stderr,
    and the exception that escaped `main` (with its traceback), if any."""

    code: int | None
    out: str
    err: str
    escaped: BaseException | None = None
    escaped_trace: str = ""

    def rows(self) -> list[dict]:
        return [json.loads(line, parse_constant=_no_constant) for line in self.out.splitlines()]


def _no_constant(name: str) -> float:
    raise AssertionError(f"{name} in the JSON output: scores must be finite")


def score_in_process(path: Path, backend: str, *extra: str) -> Outcome:
    """``focusmon score PATH --backend BACKEND`` through `main`, on a thread of its own, so a
    hang fails the test after CALL_TIMEOUT_S instead of stalling it."""
    out, err = io.StringIO(), io.StringIO()
    result: dict[str, object] = {}

    def call() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                result["code"] = main(["score", str(path), "--backend", backend, *extra])
            except BaseException as exc:  # judged by the caller: here it must not vanish
                result["escaped"] = exc
                result["trace"] = traceback.format_exc()

    thread = threading.Thread(target=call, name="focusmon score", daemon=True)
    thread.start()
    thread.join(CALL_TIMEOUT_S)
    assert not thread.is_alive(), f"focusmon score {path.name} hung (> {CALL_TIMEOUT_S} s)"
    return Outcome(
        result.get("code"), out.getvalue(), err.getvalue(),  # type: ignore[arg-type]
        result.get("escaped"), result.get("trace", ""),  # type: ignore[arg-type]
    )  # fmt: skip


def assert_allowed(outcome: Outcome, what: str) -> None:
    """Exit 0 with finite numbers, or exit 1/2 with one error line; nothing else."""
    assert outcome.escaped is None, f"{what}: an exception escaped:\n{outcome.escaped_trace}"
    assert "Traceback" not in outcome.err, f"{what}: a traceback:\n{outcome.err}"
    for row in outcome.rows():  # also the frames scored before an error
        for key in MEASURES:
            assert math.isfinite(row[key]), f"{what}: {key} = {row[key]} in {row}"
        assert row["pts"] is None or math.isfinite(row["pts"]), f"{what}: {row}"
    if outcome.code == 0:
        return
    assert outcome.code in (1, 2), f"{what}: exit code {outcome.code}\n{outcome.err}"
    errors = [line for line in outcome.err.splitlines() if line.startswith("focusmon: error:")]
    assert len(errors) == 1, f"{what}: exit {outcome.code} needs one error line:\n{outcome.err}"


# -- mutations ------------------------------------------------------------------------------

_POSITION = st.integers(0, 2**20)  # taken modulo the length; shrinks towards the header
MUTATION = st.one_of(
    st.tuples(st.just("flip"), _POSITION, st.integers(0, 7)),
    st.tuples(st.just("overwrite"), _POSITION, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), _POSITION),
    st.tuples(st.just("insert"), _POSITION, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero-header"), st.integers(1, 512)),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, *args in mutations:
        if not out:
            break
        if kind == "zero-header":
            n = min(args[0], len(out))
            out[:n] = bytes(n)
            continue
        at = args[0] % len(out)
        if kind == "flip":
            out[at] ^= 1 << args[1]
        elif kind == "overwrite":
            out[at : at + len(args[1])] = args[1]
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = args[1]
    return bytes(out)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", MEDIA)
def test_damaged_media_score_cleanly_or_fail_in_one_line(media, name, tmp_path):
    original = _medium(media, name).read_bytes()
    damaged = tmp_path / f"damaged-{name}"

    # Derandomized, no example database: CI runs the same examples every time. No shrinking:
    # a hang would be re-run for minutes; a failure prints its mutations, which reproduce it.
    @settings(
        max_examples=EXAMPLES_PER_MEDIUM, deadline=None, derandomize=True, database=None,
        phases=(Phase.explicit, Phase.generate), suppress_health_check=[HealthCheck.too_slow],
    )  # fmt: skip
    @given(
        mutations=st.lists(MUTATION, min_size=1, max_size=4), backend=st.sampled_from(CPU_BACKENDS)
    )
    def fuzz(mutations, backend):
        damaged.write_bytes(mutate(original, mutations))
        outcome = score_in_process(damaged, backend)
        assert_allowed(outcome, f"{name} {mutations} ({backend})")

    fuzz()


def _harsh(data: bytes, seed: str) -> bytes:
    """Damage everywhere at once: 16 flipped bytes, a junk run, the last tenth cut."""
    rng = random.Random(seed)
    mutations: list[tuple] = [
        ("flip", rng.randrange(len(data)), rng.randrange(8)) for _ in range(16)
    ]
    mutations.append(("overwrite", rng.randrange(len(data)), rng.randbytes(32)))
    mutations.append(("truncate", len(data) * 9 // 10))
    return mutate(data, mutations)


def test_damaged_media_through_the_installed_command(media, tmp_path):
    """The same judgement on the real process: damaged media, and the regressions below,
    each run by the ``focusmon`` command with a timeout (a hang or a crash of the process
    itself, which in-process runs cannot see)."""
    command = (
        [shutil.which("focusmon")]
        if shutil.which("focusmon")
        else [sys.executable, "-m", "focusmon"]
    )
    inputs = {}
    for name, path in media.items():
        inputs[f"harsh-{name}"] = _harsh(path.read_bytes(), name)
    stack = media["stack8.tif"].read_bytes()
    inputs["bad-bits-page.tif"] = set_tiff_tag(stack, BITS_PER_SAMPLE, 3, pages={1})
    inputs["bad-bits-all.tif"] = set_tiff_tag(stack, BITS_PER_SAMPLE, 3, pages={0, 1, 2})
    procs = {}
    try:
        for name, data in inputs.items():  # all at once: a second each, mostly start-up
            path = tmp_path / name
            path.write_bytes(data)
            procs[name] = subprocess.Popen(
                [*command, "score", str(path), "--backend", "numpy"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"focusmon score {name} hung (> 120 s)")
            assert proc.returncode >= 0, f"{name}: killed by signal {-proc.returncode}\n{err}"
            assert_allowed(Outcome(proc.returncode, out, err), name)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# -- regressions: inputs the fuzz found, rebuilt by construction ------------------------------

BITS_PER_SAMPLE = 258


def set_tiff_tag(data: bytes, tag: int, value: int, *, pages: set[int]) -> bytes:
    """A little-endian TIFF with the SHORT ``tag`` set to ``value`` in the given pages."""
    out = bytearray(data)
    assert out[:4] == b"II*\x00", "little-endian TIFF expected"
    (ifd,) = struct.unpack_from("<I", out, 4)
    page = 0
    while ifd:
        (count,) = struct.unpack_from("<H", out, ifd)
        for k in range(count):
            entry = ifd + 2 + 12 * k
            if struct.unpack_from("<H", out, entry)[0] == tag and page in pages:
                struct.pack_into("<H", out, entry + 8, value)
        (ifd,) = struct.unpack_from("<I", out, ifd + 2 + 12 * count)
        page += 1
    return bytes(out)


def test_regression_tiff_page_with_impossible_bits_per_sample(media, tmp_path):
    """OpenCV raised cv2.error (a traceback) for 3 bits per sample; one bad page makes it
    refuse the whole stack, which is now one error line, not an exit 0 with no frames."""
    stack = media["stack8.tif"].read_bytes()
    for pages in ({1}, {0}, {0, 1, 2}):
        path = tmp_path / f"bits{min(pages)}{len(pages)}.tif"
        path.write_bytes(set_tiff_tag(stack, BITS_PER_SAMPLE, 3, pages=pages))
        outcome = score_in_process(path, "numpy")
        assert_allowed(outcome, path.name)
        assert outcome.code == 1 and outcome.out == "", outcome.err
        assert "images could be read" in outcome.err or "cannot read" in outcome.err


def test_regression_a_folder_keeps_its_readable_images(media, tmp_path):
    """...while a folder with one unreadable stack and one good image scores the image."""
    folder = tmp_path / "folder"
    folder.mkdir()
    stack = media["stack8.tif"].read_bytes()
    (folder / "a.tif").write_bytes(set_tiff_tag(stack, BITS_PER_SAMPLE, 3, pages={0}))
    shutil.copy(media["gray.png"], folder / "b.png")
    outcome = score_in_process(folder, "numpy")
    # The stack's header declares 3 pages (read from the file, not from OpenCV, which could
    # not count them): all 3 skipped as corrupt, then the image, frame 3, scored.
    assert outcome.code == 0 and [r["index"] for r in outcome.rows()] == [3], outcome.err
    assert "3 corrupt frames skipped" in outcome.err


def test_regression_metadata_that_is_not_utf8(media, tmp_path):
    data = media["h264.mp4"].read_bytes()
    assert data.count(b"VideoHandler") == 1
    path = tmp_path / "latin1.mp4"
    path.write_bytes(data.replace(b"VideoHandler", b"Vid\xe9oHandler"))  # Latin-1, as cameras do
    outcome = score_in_process(path, "numpy")
    assert_allowed(outcome, path.name)
    assert outcome.code == 0 and len(outcome.rows()) == 8  # the video is intact


def test_regression_a_codec_ffmpeg_cannot_decode(media, tmp_path):
    data = media["h264.mp4"].read_bytes()
    path = tmp_path / "unknown-codec.mp4"
    path.write_bytes(data.replace(b"avc1", b"zzzz"))  # the sample entry's four-character code
    outcome = score_in_process(path, "numpy")
    assert_allowed(outcome, path.name)
    assert outcome.code in (1, 2)  # nothing can be decoded: an error, in one line


# -- degenerate frames through every backend ------------------------------------------------


@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_degenerate_frames_on_the_cpu_backends(backend_name):
    cases = list(degenerate.degenerate_cases())
    assert {c.expect for c in cases} == {"refused", "flat", "reference"}
    with kernels.get(backend_name) as backend:
        problems = [(c.name, degenerate.check(backend, c)) for c in cases]
    assert [p for p in problems if p[1] is not None] == []


@pytest.mark.parametrize("dtype", degenerate.DTYPES)
def test_full_scale_checkerboard_has_its_closed_form(dtype):
    """On an even-sized 0/top checkerboard (which reflected borders keep a checkerboard)
    the Laplacian is +-4 top everywhere, the Sobel gradients cancel, and every Haar block
    has one diagonal detail of 2 top (none along x or y): values that overflow 32-bit sums
    at full scale. Half the samples are at the top: saturated."""
    top = float(np.iinfo(dtype).max)
    board = degenerate.checkerboard((64, 48), dtype)
    want = {"laplacian_var": 16 * top**2, "tenengrad": 0.0, "sobel_mean": 0.0,
            "haar_energy": top**2, "mean": top / 2, "std": top / 2, "saturated": 0.5,
            "detail_x": 0.0, "detail_y": 0.0, "detail_xy": 0.0}  # fmt: skip
    for name in CPU_BACKENDS:
        with kernels.get(name) as backend:
            got = backend.scores(board).as_dict()
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9), name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_8k_frames_agree_across_cpu_backends():
    """7680x4320 of 0/full-scale noise on both CPU backends (at 16 bit the sum of squared
    Sobel gradients is ~9e17, the checkerboard's sum of squared Laplacians ~2.3e18: int64
    holds 9.2e18, so a narrower accumulator would show), and the 8K checkerboard against its
    closed form."""
    rng = np.random.default_rng(8)
    with kernels.get("numba-cpu") as fast, kernels.get("numpy") as reference:
        for dtype in degenerate.DTYPES:
            top = np.iinfo(dtype).max
            noise = rng.integers(0, 2, (4320, 7680), dtype) * dtype(top)
            got, want = fast.scores(noise).as_dict(), reference.scores(noise).as_dict()
            assert all(math.isfinite(v) for v in got.values()), got
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), dtype
            board = fast.scores(degenerate.checkerboard((4320, 7680), dtype))
            assert board.laplacian_var == pytest.approx(16.0 * top * top, rel=1e-12)
            assert board.haar_energy == pytest.approx(float(top) * top, rel=1e-12)
            assert (board.tenengrad, board.sobel_mean) == (0.0, 0.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_degenerate_frames_on_cuda_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    script = Path(degenerate.__file__)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 3 and proc.stdout.startswith("UNAVAILABLE"):
        pytest.skip(f"numba-cuda cannot run even simulated: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = len(list(degenerate.degenerate_cases()))
    assert f"CHECKED {expected}" in proc.stdout, proc.stdout


# -- degenerate frames through the whole command ----------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 64), (64, 1), (2, 2)])
@pytest.mark.parametrize("command", ["score", "peak"])
def test_images_below_3x3_are_one_error_line_naming_the_shape(tmp_path, capsys, shape, command):
    path = tmp_path / "tiny.png"
    assert cv2.imwrite(str(path), np.full(shape, 90, np.uint8))
    code = main([command, str(path), "--backend", "numba-cpu"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("focusmon: error:")]
    assert len(errors) == 1 and str(shape) in errors[0] and "3x3" in errors[0], err


def test_the_smallest_image_scores_as_the_reference(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (3, 3), np.uint8)
    assert cv2.imwrite(str(tmp_path / "three.png"), image)
    for backend in CPU_BACKENDS:
        outcome = score_in_process(tmp_path / "three.png", backend)
        assert_allowed(outcome, backend)
        (row,) = outcome.rows()
        want = reference_scores(image).as_dict()
        assert {k: row[k] for k in want} == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_16_bit_images_are_scored_in_8_bit_units(tmp_path):
    """16-bit PNG and TIFF pages keep their 16 bits and are reported divided by 257 (8-bit
    grey levels); a saturated 16-bit page is white (255) and flat."""
    rng = np.random.default_rng(16)
    pages = [rng.integers(0, 65536, (40, 56), np.uint16), np.full((40, 56), 65535, np.uint16)]
    assert cv2.imwrite(str(tmp_path / "deep.png"), pages[0])
    assert cv2.imwritemulti(str(tmp_path / "deep.tif"), pages)
    for name, expected in (("deep.png", pages[:1]), ("deep.tif", pages)):
        outcome = score_in_process(tmp_path / name, "numba-cpu")
        assert_allowed(outcome, name)
        rows = outcome.rows()
        assert len(rows) == len(expected), outcome.err
        for row, page in zip(rows, expected, strict=True):
            want = rescale(reference_scores(page), 255 / 65535, 0.0).as_dict()
            assert {k: row[k] for k in want} == pytest.approx(want, rel=1e-9, abs=1e-9)
    white = outcome.rows()[1]
    assert white["mean"] == pytest.approx(255.0) and [white[m] for m in SHARPNESS] == [0.0] * 4
    assert white["saturated"] == 1.0 and rows[0]["saturated"] < 0.01


@pytest.mark.parametrize("codec", ["ffv1", "libx264"])
def test_a_flat_grey_video_has_zero_sharpness_not_nan(tmp_path, codec):
    flat = np.full((48, 64), 128, np.uint8)
    if codec == "ffv1":  # lossless full-range gray
        path = write_video(tmp_path / "flat.mkv", [flat] * 5, pix_fmt="gray", codec="ffv1")
    else:  # limited-range YUV, as cameras send it
        path = write_video(
            tmp_path / "flat.mp4", [yuv420_of(flat)] * 5, pix_fmt="yuv420p", codec="libx264"
        )
    outcome = score_in_process(path, "numba-cpu")
    assert_allowed(outcome, path.name)
    rows = outcome.rows()
    assert len(rows) == 5 and outcome.code == 0
    for row in rows:
        assert [row[m] for m in (*SHARPNESS, "std")] == [0.0] * 5, row
        assert abs(row["mean"] - 128) < 0.6, row  # limited range: 126 of 16..235 is 128.1


# -- files that cost far more than their size (the attack round) ----------------------------


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("focusmon: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_an_image_declaring_a_huge_picture_is_refused_before_decoding(tmp_path, capsys):
    """A 30000 x 30000 PNG header over a few kB of data: refused from its header. (It drove
    ``score`` to 5.3 GB; here it would have to, before it could fail.)"""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    data = chunk(b"IDAT", zlib.compress(b"\0" * 100_000))
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b""))
    assert main(["score", str(bomb)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "30000x30000" in line and "max_pixels" in line
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 100), np.uint8))
    assert main(["score", str(small), "--max-pixels", "9999"]) == 2  # the limit is a setting
    assert "100x100" in one_error_line(capsys.readouterr().err)
    assert main(["score", str(small), "--max-pixels", "10000"]) == 0
    capsys.readouterr()


def test_a_video_larger_than_max_pixels_is_refused_in_one_line(tmp_path, capsys):
    clip = h264_clip(tmp_path / "c.mp4", 0.2)
    assert main(["score", str(clip), "--max-pixels", "76799"]) == 2  # 320 x 240 = 76800
    line = one_error_line(capsys.readouterr().err)
    assert "320x240" in line and "max_pixels" in line
    assert main(["score", str(clip), "--max-pixels", "76800"]) == 0
    capsys.readouterr()


def test_a_stack_of_pages_is_read_in_a_few_calls_not_one_per_page(tmp_path, monkeypatch):
    """OpenCV walks a TIFF's page list from the start for each read: one read a page made
    4,000 pages of 8x8 take more than ten minutes. Counted here, not timed."""
    rng = np.random.default_rng(0)
    pages = [rng.integers(0, 255, (8, 8), dtype=np.uint8) for _ in range(2000)]
    stack = tmp_path / "stack.tif"
    assert cv2.imwritemulti(str(stack), pages)
    calls = []
    real = cv2.imreadmulti

    def counted(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imreadmulti", counted)
    from focusmon.source import ImageSource

    source = ImageSource(str(stack))
    read = [frame.luma for frame in source]
    assert len(read) == 2000 and all(
        np.array_equal(a, b) for a, b in zip(read, pages, strict=True)
    )
    assert len(calls) <= 2, calls  # 2,000 pages of 8x8 are one read (64 MB a read)


def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert main(["score", str(fifo)]) == 2  # nothing writes to it: opening would wait for ever
    assert "not a regular file (a FIFO)" in one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(ffmpeg_reason() is not None, reason=ffmpeg_reason() or "")
def test_a_file_cut_short_is_a_warning_not_silence(tmp_path, capsys):
    clip = h264_clip(tmp_path / "c.mp4", 4.0)
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(clip), "-c",
                    "copy", "-movflags", "+faststart", str(whole)], check=True)  # fmt: skip
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["score", str(half)]) == 0  # the frames that are there are scored ...
    out, err = capsys.readouterr()
    assert 0 < len(out.splitlines()) < 100
    warnings = [line for line in err.splitlines() if line.startswith("focusmon: warning:")]
    assert len(warnings) == 1 and "of the 100 frames its container declares" in warnings[0]
    assert main(["score", str(whole)]) == 0  # ... and a whole file says nothing
    assert capsys.readouterr().err == ""
