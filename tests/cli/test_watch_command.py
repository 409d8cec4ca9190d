"""``focusmon peak`` and ``focusmon watch`` on real encoded media, and their sinks."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import skimage.data

from focusmon import testing
from focusmon.cli import main
from focusmon.scheduler import peak_uncertainty
from focusmon.sinks import safe_name

from media import write_video
from servers import camera_launch, free_port, rtsp_camera, rtsp_server_reason

EVENT_KEYS = ["stream", "time", "state", "previous", "score", "baseline"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, camera):
    """15 frames through focus at frame 7 (Gaussian defocus), lossless gray."""
    img = camera[100:340, 100:420].astype(np.float64)
    frames = []
    for i in range(15):
        sigma = 0.7 * abs(i - 7)
        blurred = cv2.GaussianBlur(img, (0, 0), sigma) if sigma else img
        frames.append(np.clip(blurred, 0, 255).astype(np.uint8))
    return write_video(tmp_path_factory.mktemp("sweep") / "sweep.mkv", frames, pix_fmt="gray")


@pytest.fixture(scope="module")
def defocus_clip(tmp_path_factory, camera):
    """10 fps, 9 s: sharp, then blurred from 4 s to 6 s, then sharp; a slow pan and noise."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(90):
        x = 100 + (i % 20)
        view = camera[100:340, x : x + 320].astype(np.float64)
        if 40 <= i < 60:
            view = cv2.GaussianBlur(view, (0, 0), 3.0)
        frames.append(np.clip(view + rng.normal(0, 2, view.shape), 0, 255).astype(np.uint8))
    path = tmp_path_factory.mktemp("clip") / "defocus.mkv"
    return write_video(path, frames, pix_fmt="gray", rate=10)


def test_peak_prints_one_json_object(capsys, sweep):
    code, out, err = run(capsys, "peak", str(sweep))
    assert code == 0, err
    result = json.loads(out)
    assert list(result) == ["best_index", "peak_position", "peak_uncertainty", "measure",
                            "scores"]  # fmt: skip
    assert result["best_index"] == 7 and abs(result["peak_position"] - 7) < 0.5
    assert 0 < result["peak_uncertainty"] < 0.5  # a clean sweep: placed well within a frame
    assert result["measure"] == "tenengrad_nc" and len(result["scores"]) == 15


def test_peak_of_a_dim_16_bit_stack_uses_the_coarse_measure(capsys, tmp_path):
    """A micrograph z-stack at 40 photo-electrons at white, as a 16-bit TIFF: the noise
    drowns Tenengrad's curve (its peak lands 5 frames off), `auto` fits the variance."""
    rng = np.random.default_rng(2)
    cell = skimage.data.cell().astype(np.float32) / 255.0
    y, x = rng.integers(0, cell.shape[0] - 240), rng.integers(0, cell.shape[1] - 320)
    stack = testing.focus_sweep(
        cell[y : y + 240, x : x + 320], n_frames=31, focus=float(rng.uniform(9, 21)),
        photons_at_white=40.0, bits=16, rng=rng,
    )  # fmt: skip
    path = tmp_path / "stack.tif"
    assert cv2.imwritemulti(str(path), list(stack.frames))
    results = {}
    for measure in ("auto", "tenengrad_nc"):
        code, out, err = run(capsys, "peak", str(path), "--measure", measure)
        assert code == 0, err
        results[measure] = json.loads(out)
    assert results["auto"]["measure"] == "variance_nc"
    assert abs(results["auto"]["best_index"] - stack.focus_index) <= 1
    assert abs(results["tenengrad_nc"]["best_index"] - stack.focus_index) > 1


def test_peak_indices_are_decode_order_indices(capsys, sweep):
    code, out, _ = run(capsys, "peak", str(sweep), "--every", "2", "--measure", "laplacian_var")
    result = json.loads(out)
    assert code == 0 and len(result["scores"]) == 8
    assert result["best_index"] in (6, 8) and abs(result["peak_position"] - 7) <= 1
    # The analysed frames' uncertainty, in decode-order frames: twice theirs.
    values = result["scores"]
    assert result["peak_uncertainty"] == pytest.approx(2 * peak_uncertainty(values))


def test_watch_reports_a_defocus_in_stream_time(capsys, caplog, tmp_path, defocus_clip):
    events = tmp_path / "events.jsonl"
    best = tmp_path / "best"
    code, _, err = run(
        capsys, "watch", str(defocus_clip), "--name", "cam/1", "--events", str(events),
        "--save-best", str(best), "--best-every", "30",
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(r["previous"], r["state"]) for r in rows] == [("ok", "blurred"), ("blurred", "ok")]
    # A blurred event says what kind of blur: the clip defocuses its lens.
    assert list(rows[0]) == [*EVENT_KEYS, "blur"] and rows[0]["blur"] == "defocus"
    assert list(rows[1]) == EVENT_KEYS and all(r["stream"] == "cam/1" for r in rows)
    assert 4.9 <= rows[0]["time"] <= 5.1 and 6.9 <= rows[1]["time"] <= 7.1  # 1 s dwell
    assert rows[0]["score"] < 0.5 * rows[0]["baseline"]
    changes = [r.getMessage() for r in caplog.records if "->" in r.getMessage()]
    assert len(changes) == 2 and changes[0].startswith("cam/1: ok -> blurred at 5.00")
    prefix = safe_name("cam/1")
    assert prefix.startswith("cam_1-")  # changed, so hashed: "cam 1" cannot write over it
    images = sorted(best.glob(f"{prefix}_*.png"))
    assert len(images) == 3  # three windows of 30 frames, and a sidecar each
    for image in images:
        sidecar = json.loads(image.with_suffix(".json").read_text())
        assert sidecar["stream"] == "cam/1" and "laplacian_var" in sidecar
        assert image.name == f"{prefix}_{sidecar['index']:08d}.png"
        assert not 40 <= sidecar["index"] < 60  # a sharp frame, not one from the blur


def test_one_failing_stream_does_not_stop_the_others(capsys, tmp_path, defocus_clip):
    broken = tmp_path / "broken.mkv"
    data = defocus_clip.read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # ends early
    code, out, err = run(capsys, "watch", str(broken), str(defocus_clip), "--events", "-")
    assert code == 0, err
    streams = {json.loads(line)["stream"] for line in out.splitlines()}
    assert str(defocus_clip) in streams


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["watch", "/nonexistent.mp4"], "no such file"),
        (["watch", "CLIP", "CLIP", "--name", "a"], "--name must be given once per source"),
        (["watch", "CLIP", "CLIP"], "stream names must be unique"),
        (["watch", "CLIP", "--enter-ratio", "0.9", "--leave-ratio", "0.5"], "`enter_ratio`"),
        (["watch", "CLIP", "--events", "/nonexistent/dir/e.jsonl"], "cannot write events"),
        (["peak", "/nonexistent.mp4"], "no such file"),
    ],
)
def test_watch_and_peak_usage_errors_exit_2_before_starting(capsys, defocus_clip, argv, words):
    argv = [str(defocus_clip) if a == "CLIP" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err


@pytest.mark.network
@pytest.mark.skipif(rtsp_server_reason() is not None, reason=rtsp_server_reason() or "")
@pytest.mark.timeout(90)
def test_watch_a_camera_that_dies_then_stop_it_with_sigterm(tmp_path):
    port = free_port()
    events = tmp_path / "events.jsonl"
    with rtsp_camera(port, camera_launch("smpte")) as camera:  # bright bars: not dark
        watch = subprocess.Popen(
            [sys.executable, "-m", "focusmon", "watch", f"rtsp://127.0.0.1:{port}/cam",
             "--name", "door", "--events", str(events), "--timeout", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(5)  # connect, learn
            camera.stop()
            deadline = time.monotonic() + 20
            while "no_signal" not in events.read_text() if events.exists() else True:
                assert time.monotonic() < deadline, "no no_signal event"
                time.sleep(0.2)
            watch.send_signal(signal.SIGTERM)
            _, err = watch.communicate(timeout=20)
        finally:
            if watch.poll() is None:
                watch.kill()
    assert watch.returncode == 0, err
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["state"] for r in rows] == ["no_signal"], rows  # none while it was connecting
    assert rows[-1]["stream"] == "door"
    assert rows[-1]["time"] == pytest.approx(time.time(), abs=60)  # live: Unix time
    assert os.path.getsize(events) > 0


def test_best_keep_bounds_what_watch_saves(capsys, tmp_path, defocus_clip):
    best = tmp_path / "best"
    code, _, err = run(
        capsys, "watch", str(defocus_clip), "--name", "cam", "--save-best", str(best),
        "--best-every", "10", "--best-keep", "2", "--no-metrics",
    )  # fmt: skip
    assert code == 0, err
    assert len(list(best.glob("cam_*.png"))) == 2
    sidecars = sorted(json.loads(p.read_text())["index"] for p in best.glob("cam_*.json"))
    assert len(sidecars) == 2 and min(sidecars) >= 70  # the newest two of nine windows


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_disk_is_counted_said_once_and_stops_no_stream(capsys, caplog, defocus_clip):
    code, _, err = run(capsys, "watch", str(defocus_clip), "--name", "cam", "--events",
                       "/dev/full", "--no-metrics")  # fmt: skip
    assert code == 0 and "Traceback" not in err
    messages = [r.getMessage() for r in caplog.records]
    failures = [m for m in messages if "EventWriter" in m]
    assert len(failures) == 1 and "No space left on device" in failures[0], failures
    changes = [m for m in messages if m.startswith("cam: ")]
    assert len(changes) == 2  # both changes still logged: the stream went on to its end


def test_a_frame_folder_that_goes_away_stops_no_stream(capsys, caplog, tmp_path, defocus_clip):
    from focusmon.config import ServiceSettings, StreamSpec, WatchConfig
    from focusmon.pipeline import Watcher
    from focusmon.sinks import FrameSaver

    folder = tmp_path / "best"
    saver = FrameSaver(folder)
    folder.rmdir()
    folder.write_text("not a folder any more")  # every save now fails
    config = WatchConfig(ServiceSettings(backend="numpy", best_every=10),
                         [StreamSpec("cam", str(defocus_clip))])  # fmt: skip
    watcher = Watcher(config, [saver])
    watcher.start()
    assert watcher.wait(60)
    watcher.close()
    assert watcher.streams[0].error is None and watcher.streams[0].source.stats.analysed == 90
    assert watcher.sink_failures() == {"FrameSaver": 9}  # a window of 10 frames each
    said = [r.getMessage() for r in caplog.records if "FrameSaver" in r.getMessage()]
    assert len(said) == 1


# -- the focus map on the command line ----------------------------------------------------------


def test_score_with_tiles_prints_each_tile_and_refuses_a_grid_too_fine(capsys, sweep):
    code, out, err = run(capsys, "score", str(sweep), "--frames", "2", "--tiles", "2x3")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    tiles = lines[0]["tiles"]
    assert tiles["grid"] == [2, 3] and tiles["ys"][-1] == 240 and tiles["xs"][-1] == 320
    assert len(tiles["tenengrad"]) == 2 and all(len(row) == 3 for row in tiles["tenengrad"])
    # The frame's measures are the tiles' together: the mean is their pixel-weighted mean.
    sizes = np.outer(np.diff(tiles["ys"]), np.diff(tiles["xs"]))
    assert np.sum(sizes * np.array(tiles["mean"])) / sizes.sum() == pytest.approx(
        lines[0]["mean"], rel=1e-12)  # fmt: skip
    code, out, err = run(capsys, "score", str(sweep), "--tiles", "130x20")
    assert code == 1 and "needs a frame of at least 40x260" in err and out == ""
    for bad in ("0x4", "4", "axb", "100x100"):
        code, _, err = run(capsys, "score", str(sweep), "--tiles", bad)
        assert code == 2 and "--tiles" in err, err


def test_peak_with_tiles_gives_the_field_s_tilt(capsys, tmp_path):
    tissue = cv2.cvtColor(skimage.data.immunohistochemistry(), cv2.COLOR_RGB2GRAY)
    crop = tissue[100:340, 200:520].astype(np.float32) / 255
    stack = testing.focus_sweep(crop, n_frames=31, focus=15.0, tilt=(2.0, -1.0), rng=4)
    path = tmp_path / "tilted.tif"
    assert cv2.imwritemulti(str(path), list(stack.frames))
    code, out, err = run(capsys, "peak", str(path), "--tiles", "4x4", "--z-step", "0.5")
    assert code == 0, err
    field = json.loads(out)["field"]
    assert field["grid"] == [4, 4] and len(field["positions"]) == 4
    assert field["tilt_per_100px"] == pytest.approx(math.hypot(2.0, 1.0), rel=0.1)
    assert field["tilt_x_per_100px"] > 0 > field["tilt_y_per_100px"]
    # 0.5 um a frame: the tilt from the first tile centre to the last, in um.
    xs = field["xs"]
    across = ((xs[-2] + xs[-1]) - (xs[0] + xs[1])) / 2 / 100
    assert field["tilt_x_across"] == pytest.approx(field["tilt_x_per_100px"] * across * 0.5)
    # Every other frame: positions and tilt stay in frames of the stack.
    code, out, err = run(capsys, "peak", str(path), "--tiles", "4x4", "--every", "2")
    assert code == 0, err
    half = json.loads(out)["field"]
    assert half["tilt_per_100px"] == pytest.approx(field["tilt_per_100px"], rel=0.15)
    code, out, err = run(capsys, "peak", str(path), "--z-step", "0.5")
    assert code == 2 and "give --tiles too" in err and out == ""


def test_save_events_keeps_the_sharpest_frame_before_each_change_and_the_one_at_it(
    capsys, tmp_path, defocus_clip
):
    folder = tmp_path / "evidence"
    code, _, err = run(capsys, "watch", str(defocus_clip), "--name", "cam/1", "--no-metrics",
                       "--save-events", str(folder), "--thumb-width", "160")  # fmt: skip
    assert code == 0, err
    prefix = safe_name("cam/1")
    sidecars = sorted(folder.glob(f"{prefix}_*.json"))
    assert [p.name for p in sidecars] == [f"{prefix}_0000000005000_blurred.json",
                                          f"{prefix}_0000000007000_ok.json"]  # fmt: skip
    blurred = json.loads(sidecars[0].read_text())
    assert blurred["state"] == "blurred" and blurred["previous"] == "ok"
    before, at = blurred["before"], blurred["at"]
    assert before["time"] < 4.0 and before["index"] < 40  # sharp: from before the blur
    assert at["index"] == 50 and at["time"] == 5.0 and at["score"] < 0.5 * before["score"]
    for kept in (before, at):
        image = cv2.imread(str(folder / kept["file"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (120, 160) and image.dtype == np.uint8  # --thumb-width 160
    sharp = cv2.imread(str(folder / before["file"]), cv2.IMREAD_UNCHANGED).astype(float)
    soft = cv2.imread(str(folder / at["file"]), cv2.IMREAD_UNCHANGED).astype(float)
    assert cv2.Laplacian(sharp, cv2.CV_64F).var() > 2 * cv2.Laplacian(soft, cv2.CV_64F).var()
