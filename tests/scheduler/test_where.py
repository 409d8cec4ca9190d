"""Where and why: `partial` from the focus map's tiles, and a blur's kind, on frames of the
camera model (a person crossing throughout)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data

from focusmon import kernels, testing
from focusmon.scheduler import AlertSettings, AlertState, AlertTracker
from focusmon.scheduler._tiles import blur_kind, direction_tensor

TIMELINE = (
    (0.0, 20.0, "ok", "day"), (20.0, 35.0, "partial", "smear"), (35.0, 45.0, "ok", "day"),
    (45.0, 60.0, "partial", "occlude"), (60.0, 70.0, "ok", "day"),
    (70.0, 78.0, "blurred", "shake"), (78.0, 86.0, "ok", "day"),
    (86.0, 94.0, "blurred", "defocus"), (94.0, 100.0, "ok", "day"),
)  # fmt: skip


@pytest.fixture(scope="module")
def changes():
    scene = skimage.data.camera().astype(np.float32) / 255
    camera = testing.SurveillanceCamera(scene, timeline=TIMELINE, fps=10, shake_angle=90.0,
                                        rng=3)  # fmt: skip
    backend = kernels.get("numba-cpu")
    settings = AlertSettings(partial_s=8.0)
    tracker = AlertTracker("cam", settings)
    out = []
    for i in range(1000):
        t = i / 10
        focus_map = backend.focus_map(camera.render(t), settings.focus_map)
        change = tracker.update(focus_map.frame, t, tiles=focus_map)
        if change is not None:
            out.append(change)
    return out


def entered(changes, state, start, end):
    return [c for c in changes if c.state is state and start <= c.time < end]


def test_a_smear_and_an_occluder_are_partial_and_say_where(changes):
    assert changes, "no state changed at all"
    smear = entered(changes, AlertState.PARTIAL, 20.0, 35.0)
    assert smear and smear[0].time <= 20.0 + 8.0 + 3.0
    tiles = dict(smear[0].detail)["tiles"]
    assert tiles and all(r <= 1 and c <= 1 for r, c in tiles)  # the top left quarter
    occluder = entered(changes, AlertState.PARTIAL, 45.0, 60.0)
    assert occluder and all(r >= 2 and c >= 2 for r, c in dict(occluder[0].detail)["tiles"])
    # ... and nothing partial or moved while the day is quiet but for the person crossing.
    for start, end, _, event in TIMELINE:
        if event == "day":
            wrong = [c for c in changes if start <= c.time < end
                     and c.state in (AlertState.PARTIAL, AlertState.MOVED)]  # fmt: skip
            assert not wrong, (start, wrong)


def test_a_blur_says_whether_it_is_a_shake_or_a_defocus(changes):
    shake = entered(changes, AlertState.BLURRED, 70.0, 78.0)
    defocus = entered(changes, AlertState.BLURRED, 86.0, 94.0)
    assert shake and defocus
    assert dict(shake[0].detail)["blur"] == "motion"
    assert abs(dict(shake[0].detail)["angle"] - 90.0) <= 20.0
    assert dict(defocus[0].detail) == {"blur": "defocus"}
    assert not entered(changes, AlertState.PARTIAL, 70.0, 94.0)  # all of it, not a part


@pytest.mark.parametrize("angle", [0.0, 90.0])
def test_the_kind_of_a_blur_from_the_detail_by_direction(angle):
    rng = np.random.default_rng(5)
    scene = skimage.data.brick().astype(np.float32) / 255
    sharp = testing.expose(scene, light=1.0, photons_at_white=4000, read_noise_e=3, gain=1.0,
                           bits=8, rng=rng)  # fmt: skip
    normal = direction_tensor(kernels.reference_scores(sharp))
    moved = testing.motion_blur(scene, 9.0, angle)
    shaken = testing.expose(moved, light=1.0, photons_at_white=4000, read_noise_e=3, gain=1.0,
                            bits=8, rng=rng)  # fmt: skip
    kind, found = blur_kind(direction_tensor(kernels.reference_scores(shaken)), normal)
    assert kind == "motion" and abs((found - angle + 90) % 180 - 90) <= 10
    soft = testing.expose(testing.defocus(scene, 3.0), light=1.0, photons_at_white=4000,
                          read_noise_e=3, gain=1.0, bits=8, rng=rng)  # fmt: skip
    kind, angle_of = blur_kind(direction_tensor(kernels.reference_scores(soft)), normal)
    assert kind == "defocus" and math.isnan(angle_of)
    # A scene without detail in some direction says nothing of a blur's kind.
    assert blur_kind(direction_tensor(kernels.reference_scores(soft)), np.zeros((2, 2))) is None
