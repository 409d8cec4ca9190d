"""A frozen picture: frames keep coming, the picture does not change. Told from a live
still scene by its sensor noise, on rendered frames; and end to end in ``watch``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from focusmon import kernels, testing
from focusmon.cli import main
from focusmon.scheduler import (
    AlertSettings,
    AlertState,
    AlertTracker,
    FreezeWatch,
    picture_samples,
)

from media import write_video, yuv420_of


def exposed(scene: np.ndarray, rng, photons: float = 2000.0, bits: int = 8) -> np.ndarray:
    return testing.expose(scene, photons_at_white=photons, bits=bits, rng=rng)


@pytest.fixture(scope="module")
def scene(camera):
    return camera[100:340, 100:420].astype(np.float32) / 255 * 0.75


def run(tracker: AlertTracker, frames, fps: float = 5.0, start: float = 0.0):
    """Each frame to the tracker at ``fps``; the changes."""
    cpu = kernels.get("numba-cpu")
    changes = []
    for k, frame in enumerate(frames):
        scale = 255 / 65535 if frame.dtype == np.uint16 else 1.0
        change = tracker.update(cpu.scores(frame, scale=scale), start + k / fps,
                                picture_samples(frame, scale))  # fmt: skip
        if change is not None:
            changes.append(change)
    return changes


def test_a_still_scene_s_noise_is_never_frozen_at_day_or_in_the_dark(scene):
    rng = np.random.default_rng(1)
    for photons, bits in ((2000.0, 8), (30.0, 8), (200.0, 16)):  # day, night, 16-bit
        tracker = AlertTracker("cam", AlertSettings(frozen_s=5.0), live=True)
        frames = [exposed(scene, rng, photons, bits) for _ in range(60)]  # 12 s
        changes = run(tracker, frames)
        assert all(c.state is not AlertState.FROZEN for c in changes), (photons, changes)
        assert tracker._freeze.difference > 10 * tracker.settings.frozen_diff, photons


def test_one_picture_repeated_is_frozen_after_frozen_s_and_leaves_at_the_next_change(scene):
    rng = np.random.default_rng(2)
    live = [exposed(scene, rng) for _ in range(20)]  # 4 s
    stuck = [live[-1].copy() for _ in range(40)]  # 8 s of the same picture
    tracker = AlertTracker("cam", AlertSettings(frozen_s=5.0, min_dwell_s=1.0), live=True)
    changes = run(tracker, live + stuck + [exposed(scene, rng) for _ in range(15)])
    assert [(c.previous, c.state) for c in changes] == [
        (AlertState.OK, AlertState.FROZEN), (AlertState.FROZEN, AlertState.OK)
    ]  # fmt: skip
    frozen_at, back_at = changes[0].time, changes[1].time
    # The same picture from frame 19 (3.8 s) on: frozen 5 s later, plus the dwell.
    assert 3.8 + 5.0 + 1.0 - 0.01 <= frozen_at <= 3.8 + 5.0 + 1.0 + 0.21, frozen_at
    assert 12.0 <= back_at <= 12.0 + 1.0 + 0.21, back_at  # live again at 12 s
    # Not even one grey level in one sample breaks it...
    watch = FreezeWatch(frozen_s=1.0, still_diff=0.1)
    samples = picture_samples(live[0])
    assert not watch.update(samples, 0.0)
    assert not watch.update(samples, 0.5) and watch.update(samples, 1.0)
    # ... but a picture that really changes does, even a little everywhere.
    assert not watch.update(samples + 1.0, 1.5)
    assert FreezeWatch(frozen_s=0.0, still_diff=0.1).update(samples, 0.0) is False


def test_frozen_is_judged_before_anything_else_and_can_be_switched_off(scene):
    rng = np.random.default_rng(3)
    soft = cv2.GaussianBlur(scene, (0, 0), 4.0)
    frames = [exposed(scene, rng) for _ in range(20)]
    blurred = exposed(soft, rng)
    frames += [blurred.copy() for _ in range(45)]  # a blurred picture, then stuck on it
    changes = run(AlertTracker("cam", AlertSettings(frozen_s=5.0), live=True), frames)
    assert [c.state for c in changes] == [AlertState.BLURRED, AlertState.FROZEN]
    off = run(AlertTracker("cam", AlertSettings(frozen_s=0.0), live=True), frames)
    assert [c.state for c in off] == [AlertState.BLURRED]
    assert not AlertState.FROZEN.signal_valid
    # A black picture (a camera clipping the night to 0) repeats exactly: it is dark.
    black = [np.zeros((240, 320), np.uint8)] * 60
    changes = run(AlertTracker("cam", AlertSettings(frozen_s=5.0), live=True), black)
    assert [c.state for c in changes] == [AlertState.DARK]


def test_picture_samples_are_single_pixels_in_8_bit_units():
    frame = np.arange(1080 * 1920, dtype=np.uint32).reshape(1080, 1920) % 4096
    sixteen = (frame * 16).astype(np.uint16)
    samples = picture_samples(sixteen, scale=255 / 65535)
    assert samples.shape == (36, 64) and samples.dtype == np.float32
    assert samples[0, 0] == pytest.approx(float(sixteen[15, 15]) * 255 / 65535)
    assert picture_samples(np.zeros((3, 3), np.uint8)).shape == (3, 3)


def test_watch_reports_a_frozen_stretch_of_an_mjpeg_clip(tmp_path, camera, capsys):
    """A Motion-JPEG clip (every frame a keyframe, as an MJPEG camera sends them) whose
    camera resends one picture for 12 s: watch says frozen, then ok when the picture moves
    again."""
    rng = np.random.default_rng(4)
    view = camera[100:340, 100:420].astype(np.float32) / 255 * 0.75
    frames = [exposed(view, rng) for _ in range(25)]
    frames += [frames[-1]] * 60 + [exposed(view, rng) for _ in range(25)]  # 5 fps
    clip = write_video(tmp_path / "frozen.mkv", [yuv420_of(f, limited=False) for f in frames],
                       pix_fmt="yuvj420p", rate=5, codec="mjpeg")  # fmt: skip
    events = tmp_path / "events.jsonl"
    code = main(["watch", str(clip), "--name", "hall", "--no-metrics", "--events",
                 str(events), "--frozen-s", "5"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    said = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["previous"], e["state"]) for e in said] == [("ok", "frozen"), ("frozen", "ok")]
    assert 5.0 + 5.0 <= said[0]["time"] <= 5.0 + 5.0 + 1.5  # stuck from 5 s, +5 s, +dwell
    assert 6.0 <= said[0]["still_s"] <= 6.6 and "still_s" not in said[1]  # 5 s + the dwell
    assert 17.0 <= said[1]["time"] <= 17.0 + 1.5


def test_a_still_scene_at_a_low_bit_rate_is_never_frozen(tmp_path, camera, capsys):
    """x264 at CRF 40 codes a still night scene's frames between keyframes as unchanged
    (a mean sample difference under 0.2), but its noise anew in each keyframe: over 24 s
    with a keyframe every 4 s and frozen_s of 5 s, never frozen."""
    rng = np.random.default_rng(5)
    view = camera[100:340, 100:420].astype(np.float32) / 255 * 0.75
    still = [exposed(view, rng, photons=300.0) for _ in range(120)]  # 24 s at 5 fps
    clip = write_video(
        tmp_path / "still.mp4", [yuv420_of(f) for f in still], pix_fmt="yuv420p", rate=5,
        codec="libx264", options={"crf": "40", "g": "20"},
    )  # fmt: skip
    events = tmp_path / "still.jsonl"
    code = main(["watch", str(clip), "--name", "still", "--no-metrics", "--events",
                 str(events), "--frozen-s", "5"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert events.read_text() == ""  # ok throughout: no change to report


def test_keyframes_tell_a_stuck_stream_from_a_still_one():
    """Between keyframes only motion counts as a change; each keyframe is compared with
    the keyframe before."""
    rng = np.random.default_rng(6)
    base = rng.uniform(0, 255, (36, 64)).astype(np.float32)
    watch = FreezeWatch(frozen_s=2.0, still_diff=0.1)
    assert not watch.update(base, 0.0, key=True)
    # Frames that refine slightly between keyframes, keyframes the same: frozen, once a
    # keyframe has matched and 2 s have passed.
    t, frozen = 0.0, []
    for k in range(1, 16):
        t = k * 0.2
        key = k % 5 == 0
        frozen.append(watch.update(base + (0 if key else 0.05 * (k % 5)), t, key))
    assert frozen.index(True) == 9  # t = 2.0: the keyframe at 1.0 matched, 2 s since 0
    # A keyframe with new noise: a live scene after all.
    assert not watch.update(base + rng.normal(0, 2, base.shape).astype(np.float32), 3.2)
    # Motion between keyframes is a change at once.
    watch = FreezeWatch(frozen_s=0.5, still_diff=0.1)
    for k in range(6):
        watch.update(base, k * 0.2, key=True)
    assert watch.update(base, 1.2, key=False)
    assert not watch.update(base + 5.0, 1.4, key=False)
