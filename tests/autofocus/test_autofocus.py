"""Autofocus on the simulated microscope: found planes, bounds, backlash, device errors,
tracking, and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focusmon.autofocus import (
    FocusTracker,
    _cusp_apex,
    _cusp_fit,
    _settled_own_fit,
    _symmetric_vertex,
    autofocus,
    half_width,
    measure_backlash,
    run_simulated_autofocus,
    track,
)
from focusmon.cli import main
from focusmon.testing import SimulatedMicroscope, specimen

# With 0.5 px of blur radius per µm, the specimen's score drops by 10% at ~0.55 µm of
# defocus (bench/bench_autofocus.py measures it): in focus means within half of that.
DEPTH_OF_FIELD_UM = 0.3


def scope(focus=7.3, **kw):
    kw.setdefault("blur_px_per_um", 0.5)
    return SimulatedMicroscope(specimen(), z_focus_um=focus, **kw)


@pytest.mark.parametrize("strategy", ["model", "sweep-fit", "golden"])
@pytest.mark.parametrize("focus", [-38.0, 7.3, 41.5])
def test_the_plane_is_found_within_the_depth_of_field(strategy, focus):
    s = scope(focus, flicker=0.2, backlash_um=3.0, photons_at_white=500.0, seed=1)
    result = autofocus(s, s, z_min=-50, z_max=50, strategy=strategy, backlash_um=3.0)
    assert result.ok, result.reason
    assert abs(s.actual_um - s.z_focus_um) <= DEPTH_OF_FIELD_UM  # where the drive really is
    assert s.position() == pytest.approx(result.z)  # left at the chosen plane
    exhaustive = 101  # a sweep every 1 µm over the range
    assert result.snaps <= 0.4 * exhaustive and result.snaps == s.snaps
    assert len(result.curve) == result.snaps and result.moves == s.moves


@pytest.mark.parametrize("focus", [-31.0, 2.6, 30.2])
def test_the_model_search_takes_half_golden_s_snaps_and_says_where_they_went(focus):
    found = {}
    for strategy in ("model", "golden"):
        s = scope(focus, backlash_um=1.5, photons_at_white=2000.0, seed=3)
        found[strategy] = autofocus(s, s, z_min=-50, z_max=50, strategy=strategy)
        assert abs(s.actual_um - s.z_focus_um) <= DEPTH_OF_FIELD_UM, strategy
    model = found["model"]
    assert model.snaps <= 0.6 * found["golden"].snaps and model.snaps <= 16
    # The coarse sweep is a sixth of the range apart and stops past the peak.
    assert 3 <= model.coarse_snaps <= 7 and model.coarse_snaps < model.snaps
    coarse = [z for z, _ in model.curve[: model.coarse_snaps]]
    assert np.allclose(np.diff(coarse), 100 / 6)
    assert 0 < model.uncertainty_um < 1.0 and model.as_dict()["coarse_snaps"] == model.coarse_snaps


def test_the_curve_model_finds_a_cusp_s_apex_exactly():
    """A symmetric cusp's apex from samples either side (as numpy's least squares would
    find it by brute force), and from three coarse samples by symmetry."""
    zs = [-6.0, -4.5, -1.0, 0.5, 2.0, 5.5]
    values = [10.0 - 0.8 * abs(z - 0.7) for z in zs]
    apex, error, top, slope = _cusp_fit(zs, values)
    assert apex == pytest.approx(0.7, abs=0.05) and top == pytest.approx(10.0, abs=0.05)
    assert slope == pytest.approx(0.8, abs=0.01) and error < 0.01
    assert _cusp_fit([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) is None  # no falling flank
    # A broad curve that falls ever slower (convex flanks): symmetry, not the shape, places it.
    points = [(z, 0, 1.0 / (1.0 + abs(z - 3.0) / 20.0), True) for z in (-50.0, -25.0, 0.0, 25.0)]
    assert _symmetric_vertex(points, 2) == pytest.approx(3.0, abs=1.5)
    # The tracker's three probes: the apex between them, at any spacing (a clamped probe).
    for apex in (-0.7, -0.2, 0.0, 0.3, 0.9):
        for probes in ([-1.0, 0.0, 1.0], [-2.0, 0.0, 1.0], [-1.0, 0.0, 3.0]):
            cusp = [10.0 - 2.0 * abs(z - apex) for z in probes]
            assert _cusp_apex(probes, cusp) == pytest.approx(apex, abs=1e-9), (apex, probes)
    assert _cusp_apex([-1.0, 0.0, 1.0], [3.0, 1.0, 3.0]) is None  # a dip: no maximum
    assert _cusp_apex([0.0, 0.0, 1.0], [5.0, 5.0, 6.0]) is None  # the lower pair is one plane


@pytest.mark.parametrize("focus", [-12.0, 3.3, 15.0])
def test_a_broad_focus_curve_that_never_stands_out_is_found_in_few_snaps(focus):
    """Phase contrast (skimage's cell): the focused score's top is never 3x its floor, so
    the fit of the broad score places the probes; the focused score's own fit, once it has
    settled, ends the search (it probed to the cap, 18-21 snaps over ±25 µm, before)."""
    skimage = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    cv2 = pytest.importorskip("cv2")
    cell = skimage.cell()[100:500, 80:480].astype(np.float32) / 255
    cell = cv2.resize(cell, (256, 256), interpolation=cv2.INTER_AREA)
    s = SimulatedMicroscope(cell, z_focus_um=focus, blur_px_per_um=0.5, photons_at_white=2000,
                            flicker=0.1, backlash_um=1.0, seed=2)  # fmt: skip
    result = autofocus(s, s, z_min=-25, z_max=25)
    assert result.ok and result.snaps <= 12, (result.snaps, result.reason)
    assert abs(s.actual_um - s.z_focus_um) <= 0.5  # a third of this curve's depth of field
    # The own fit: from six samples or more, settled, and where the broad fit is.
    zs = [-4.0, -2.5, -1.0, 1.0, 2.0, 3.5]
    near = [
        (z, 0.13 - 0.004 * abs(z - 0.4), 0.2, True) for z in zs
    ]  # (z, focused, broad, settled)
    assert _settled_own_fit(near, 0.6, None)[0] == pytest.approx(0.4, abs=1e-3)
    assert _settled_own_fit(near[:5], 0.6, None) is None  # too few
    assert _settled_own_fit(near, 6.0, None) is None  # the broad fit is elsewhere


def test_nothing_outside_the_range_is_ever_commanded_and_the_end_is_approached_from_below():
    s = scope(focus=-49.5, backlash_um=5.0)  # focus at the very edge: probes pile up there
    result = autofocus(s, s, z_min=-50, z_max=-10, backlash_um=5.0)
    assert min(s.history) >= -50 and max(s.history) <= -10
    assert s.history[-1] == result.z and s.history[-2] <= result.z  # last move upward
    assert abs(s.actual_um - s.z_focus_um) <= DEPTH_OF_FIELD_UM


def test_without_backlash_handling_the_play_would_cost_focus():
    """The simulator's backlash is real: a naive final move down lands off by the play."""
    s = scope(focus=0.0, backlash_um=4.0)
    s.move_to(10.0)
    s.move_to(0.0)  # approached from above: the carriage is where commanded
    here = s.actual_um
    s.move_to(-10.0)
    s.move_to(0.0)  # approached from below: trails by the play
    assert here - s.actual_um == pytest.approx(4.0)


@pytest.mark.parametrize("play", [1.5, 3.0])
def test_a_drive_whose_play_is_not_given_still_ends_in_focus(play):
    """Found when tried as a new user would: 1.5 µm of play and no `backlash_um` ended
    every search 1.5 µm off. Every plane is now reached from below by default."""
    errors, told_none = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        focus = float(rng.uniform(-35, 35))
        s = scope(focus, backlash_um=play, flicker=0.1, seed=seed,
                  z_start_um=float(rng.uniform(-50, 50)))  # fmt: skip
        result = autofocus(s, s, z_min=-50, z_max=50)
        assert result.ok and s.history[-2] < s.history[-1] == result.z  # last move: up
        errors.append(abs(s.actual_um - s.z_focus_um))
        wrong = scope(focus, backlash_um=play, seed=seed)
        autofocus(wrong, wrong, z_min=-50, z_max=50, backlash_um=0.0)  # "no play", wrongly
        told_none.append(abs(wrong.actual_um - wrong.z_focus_um))
    assert max(errors) <= DEPTH_OF_FIELD_UM, errors
    # The default is what saves it: told "no play", searches end off by up to the play.
    assert max(told_none) > 2 * DEPTH_OF_FIELD_UM and np.mean(told_none) > 3 * np.mean(errors)


@pytest.mark.parametrize("play", [0.0, 1.5, 3.0])
def test_the_play_is_measured_from_a_sweep_up_and_one_down(play):
    s = scope(-12.0, backlash_um=play, flicker=0.05, seed=2)
    measured = measure_backlash(s, s, z_min=-50, z_max=50)
    assert measured.backlash_um == pytest.approx(play, abs=0.3), measured
    assert measured.down_um == pytest.approx(-12.0, abs=0.3)  # reached going down: no lag
    assert min(s.history) >= -50 and max(s.history) <= 50 and measured.snaps == s.snaps
    with pytest.raises(ValueError, match="steps"):
        measure_backlash(s, s, z_min=-50, z_max=50, steps=2)


class FlakyCamera:
    def __init__(self, scope, fail_after):
        self.scope, self.fail_after = scope, fail_after

    def snap(self):
        if self.scope.snaps >= self.fail_after:
            raise OSError("USB camera unplugged")
        return self.scope.snap()


class FlakyStage:
    def __init__(self, scope, fail_after):
        self.scope, self.fail_after = scope, fail_after

    def move_to(self, z):
        if self.scope.moves >= self.fail_after:
            raise TimeoutError("drive did not settle")
        self.scope.move_to(z)

    def position(self):
        return self.scope.position()


def test_a_camera_error_ends_the_search_at_a_known_position():
    s = scope(focus=5.0)
    result = autofocus(s, FlakyCamera(s, 6), z_min=-50, z_max=50)
    assert not result.ok and "camera snap failed: USB camera unplugged" in result.reason
    assert result.snaps == 6 and s.position() == pytest.approx(result.z)
    assert result.z == max(result.curve, key=lambda zs: zs[1])[0]  # the best plane seen


def test_a_stage_error_ends_the_search_where_the_stage_says_it_is():
    s = scope(focus=5.0)
    result = autofocus(FlakyStage(s, 5), s, z_min=-50, z_max=50)
    assert not result.ok and "stage move" in result.reason and "did not settle" in result.reason
    assert result.z == s.position()


def test_tracking_follows_a_slow_drift_through_a_200_step_time_lapse():
    s = scope(focus=0.0, drift_um=0.05, flicker=0.1, backlash_um=2.0, seed=4)
    first = autofocus(s, s, z_min=-50, z_max=50, backlash_um=2.0)
    assert first.ok
    tracker = FocusTracker(s, s, z_min=-50, z_max=50, step_um=1.0, backlash_um=2.0)
    errors = []
    for _ in range(200):
        tracker.update()
        errors.append(abs(s.actual_um - s.z_focus_um))
    assert s.z_focus_um > 25  # it really drifted (3 snaps per step)
    assert max(errors) <= DEPTH_OF_FIELD_UM, max(errors)


def test_the_tracker_learns_a_steady_drift_and_does_not_lag_behind_it():
    """A focal plane drifting 0.3 µm between time points: the tracker learns the drift
    (`velocity_um`) and probes where the plane will be, so the planes it leaves the drive
    at are on the focus, not behind it (following the probes' apex alone lagged by 0.2 µm,
    most of the depth of field)."""
    s = scope(focus=-20.0, photons_at_white=10000.0, backlash_um=1.0, seed=7)
    found = autofocus(s, s, z_min=-50, z_max=50, backlash_um=1.0)
    tracker = FocusTracker.after(found, s, s, z_min=-50, z_max=50, backlash_um=1.0)
    errors = []
    for t in range(45):
        s.z_focus_um += 0.3
        tracker.update()
        if t >= 15:  # learnt
            errors.append(s.actual_um - s.z_focus_um)
    assert tracker.velocity_um == pytest.approx(0.3, abs=0.06)
    assert abs(np.mean(errors)) < 0.05 and max(map(abs, errors)) <= DEPTH_OF_FIELD_UM, errors
    assert tracker.reacquired == 0


def test_arguments_are_checked():
    s = scope()
    for kw, words in [({"z_min": 5, "z_max": 5}, "z_min < z_max"),
                      ({"strategy": "random"}, "`strategy` must be one of"),
                      ({"coarse_steps": 2}, "coarse_steps"),
                      ({"backlash_um": -1}, "backlash_um")]:  # fmt: skip
        args = {"z_min": -10, "z_max": 10, **kw}
        with pytest.raises(ValueError, match=words):
            autofocus(s, s, **args)
    with pytest.raises(ValueError, match="step_um"):
        FocusTracker(s, s, z_min=0, z_max=1, step_um=0)


def test_the_command_runs_the_simulator_and_plots(capsys, tmp_path):
    assert main(["autofocus", "--simulate", "--seed", "2", "--strategy", "golden"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["error_um"]) <= DEPTH_OF_FIELD_UM and result["strategy"] == "golden"
    assert {"z", "curve", "snaps", "moves", "reason", "uncertainty_um"} <= set(result)
    assert main(["autofocus"]) == 2
    assert "needs --simulate" in capsys.readouterr().err
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    png = tmp_path / "curve.png"
    assert main(["autofocus", "--simulate", "--seed", "2", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["autofocus", "--simulate", "--seed", "2", "--measure-backlash",
                 "--backlash", "2.5"]) == 0  # fmt: skip
    measured = json.loads(capsys.readouterr().out)
    assert measured["true_backlash_um"] == 2.5
    assert measured["backlash_um"] == pytest.approx(2.5, abs=0.3)


def test_the_plot_draws_the_truth_where_the_samples_are():
    """The truth in the samples' coordinates: the command that reaches the focus from
    below, the true position plus the play (drawn at the true position, a right search
    looked off by the play)."""
    result, truth = run_simulated_autofocus(seed=5, backlash_um=2.0, focus_um=10.0)
    assert truth["true_focus_commanded_um"] == 12.0
    assert result.z == pytest.approx(truth["true_focus_commanded_um"], abs=DEPTH_OF_FIELD_UM)
    assert abs(truth["error_um"]) <= DEPTH_OF_FIELD_UM


def test_the_result_is_reproducible_by_seed():
    a, _ = run_simulated_autofocus(seed=11)
    b, _ = run_simulated_autofocus(seed=11)
    assert a.curve == b.curve and np.isfinite(a.z)


def test_the_tracker_probes_as_wide_as_the_specimen_s_focus_curve():
    curve = [(z, 1.0 / (1.0 + (z / 4.0) ** 2)) for z in np.arange(-20.0, 21.0, 1.0)]
    assert half_width(curve) == pytest.approx(4.0, abs=0.5)  # a Lorentzian of HWHM 4
    assert half_width(curve[:21]) is None  # one flank only
    s = scope(focus=0.0)
    found = autofocus(s, s, z_min=-50, z_max=50)
    tracker = FocusTracker.after(found, s, s, z_min=-50, z_max=50)
    assert 0.2 < tracker.step_um < 3.0


@pytest.mark.parametrize("reacquire_ratio", [0.5, None])
def test_a_tracker_that_loses_focus_finds_it_again(reacquire_ratio):
    """A knock moves the focal plane 12 µm at once, far beyond the probes' reach: the score
    at the plane collapses, and the tracker searches again (unless told never to)."""
    s = scope(focus=0.0, flicker=0.1, backlash_um=2.0, seed=6)
    found = autofocus(s, s, z_min=-50, z_max=50, backlash_um=2.0)
    tracker = FocusTracker.after(
        found, s, s, z_min=-50, z_max=50, backlash_um=2.0, reacquire_ratio=reacquire_ratio
    )
    for _ in range(20):
        tracker.update()
    assert tracker.reacquired == 0  # steady focus, noise and flicker: no false alarm
    assert abs(s.actual_um - s.z_focus_um) <= DEPTH_OF_FIELD_UM
    s.z_focus_um += 12.0
    for _ in range(10):
        tracker.update()
    error = abs(s.actual_um - s.z_focus_um)
    if reacquire_ratio is None:
        # Three probes cannot see that far; the drift estimate lets them climb the flank,
        # but ten updates do not get there.
        assert tracker.reacquired == 0 and error > 1.0, error
    else:
        assert tracker.reacquired == 1 and error <= DEPTH_OF_FIELD_UM, error


def test_reacquire_ratio_is_checked():
    s = scope()
    with pytest.raises(ValueError, match="reacquire_ratio"):
        FocusTracker(s, s, z_min=0, z_max=1, step_um=1.0, reacquire_ratio=1.5)


def test_track_sizes_its_probes_from_the_search_or_takes_a_spacing():
    s = scope(focus=0.0)
    found = autofocus(s, s, z_min=-50, z_max=50)
    after = FocusTracker.after(found, s, s, z_min=-50, z_max=50)
    tracker = track(s, s, z_min=-50, z_max=50, result=found, reacquire_ratio=0.4)
    assert tracker.step_um == after.step_um and tracker.reference == after.reference
    assert tracker.reacquire_ratio == 0.4
    assert track(s, s, z_min=-50, z_max=50, step_um=0.7).step_um == 0.7
    with pytest.raises(ValueError, match="step_um"):
        track(s, s, z_min=-50, z_max=50)


def test_a_long_time_lapse_keeps_a_bounded_record():
    s = scope(focus=0.0)
    tracker = FocusTracker(s, s, z_min=-50, z_max=50, step_um=1.0)
    for _ in range(150):
        tracker.update()
    assert tracker.snaps == 450 and len(tracker._session.curve) <= 303
