"""A camera that no longer shows the view it learned: turned a little or a lot, not fooled
by people crossing, a change of light or a defocus, and relearned after a while. SSIM as
scikit-image defines it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from focusmon import kernels, testing
from focusmon.scheduler import (
    AlertSettings,
    AlertState,
    AlertTracker,
    picture_samples,
    ssim_map,
    thumbnail,
)
from focusmon.scheduler._views import inner

FPS = 5.0


def test_ssim_is_scikit_image_s(photos):
    rng = np.random.default_rng(0)
    for photo in photos:
        a = thumbnail(photo)
        b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.float32)
        for x, y in ((a, b), (a, np.roll(a, 5, axis=1)), (a, a)):
            want = structural_similarity(x.astype(np.float64), y.astype(np.float64),
                                         data_range=255.0)  # fmt: skip
            assert float(inner(ssim_map(x, y)).mean()) == pytest.approx(want, abs=1e-9)


def test_a_thumbnail_is_the_frame_s_area_averages(camera):
    frame = cv2.resize(camera, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    thumb = thumbnail(frame)
    assert thumb.shape == (36, 64) and thumb.dtype == np.float32
    exact = cv2.resize(frame.astype(np.float32), (64, 36), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb - exact).mean() < 2.0  # thinned first: a grey level or two
    sixteen = frame.astype(np.uint16) * 257
    assert np.allclose(thumbnail(sixteen, scale=255 / 65535), thumb, atol=0.01)


def scene(photo: np.ndarray, x: int = 96, y: int = 120) -> np.ndarray:
    return photo[y : y + 240, x : x + 320] * 0.75


def run(frames, settings: AlertSettings, start: float = 0.0):
    """Frames (float scenes) exposed with noise, to the tracker at FPS; its changes."""
    rng = np.random.default_rng(7)
    tracker = AlertTracker("cam", settings, live=True)
    cpu = kernels.get("numba-cpu")
    changes = []
    for k, view in enumerate(frames):
        frame = testing.expose(view, photons_at_white=2000.0, rng=rng)
        change = tracker.update(cpu.scores(frame), start + k / FPS, picture_samples(frame),
                                True, thumbnail(frame))  # fmt: skip
        if change is not None:
            changes.append(change)
    return changes


@pytest.fixture(scope="module")
def photo():
    return testing.demo_scene((512, 480), rng=3)


@pytest.mark.parametrize("dx, dy", [(60, 0), (-12, 8), (0, 40)])
def test_a_turned_camera_is_moved_then_relearned(photo, dx, dy):
    learn = [scene(photo)] * int(10 * FPS)
    turned = [scene(photo, 96 + dx, 120 + dy)] * int(40 * FPS)
    settings = AlertSettings(moved_s=10.0, relearn_s=25.0)
    changes = run(learn + turned, settings)
    assert [(c.previous, c.state) for c in changes] == [
        (AlertState.OK, AlertState.MOVED), (AlertState.MOVED, AlertState.OK)
    ], changes  # fmt: skip
    # Turned at 10 s: moved 10 s later (plus the dwell), the new view taken 25 s after it.
    assert 20.0 <= changes[0].time <= 21.5, changes[0]
    assert 35.0 <= changes[1].time <= 36.5, changes[1]
    # The event says how: the whole picture slid against the turn (a share of its size).
    event = changes[0].as_dict()
    assert event["shift_x"] == pytest.approx(-dx / 320, abs=0.02), event
    assert event["shift_y"] == pytest.approx(-dy / 240, abs=0.03), event
    assert 0 <= event["changed"] <= 1 and "shift_x" not in changes[1].as_dict()


def test_people_crossing_light_changes_and_a_defocus_do_not_move_a_camera(photo):
    view = scene(photo)
    frames = [view] * int(10 * FPS)
    for k in range(int(20 * FPS)):  # a person (a tenth of the picture) walks across
        crossed = view.copy()
        x = int(k * 320 / (20 * FPS))
        crossed[60:200, max(x - 40, 0) : x] = 0.12
        frames.append(crossed)
    frames += [view * 0.85] * int(15 * FPS)  # a cloud: a little less light
    frames += [cv2.GaussianBlur(view, (0, 0), 3.0)] * int(15 * FPS)  # knocked out of focus
    changes = run(frames, AlertSettings(moved_s=5.0))
    assert [c.state for c in changes] == [AlertState.BLURRED], changes


def test_moved_can_be_switched_off(photo):
    frames = [scene(photo)] * int(10 * FPS) + [scene(photo, 156)] * int(20 * FPS)
    assert run(frames, AlertSettings(moved_s=0.0)) == []
