"""Decisions from scores, driven frame by frame with the time handed in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import skimage.data

import focusmon
from focusmon import testing
from focusmon.kernels import MEASURE_TABLE
from focusmon.scheduler import (
    CONNECTING,
    SHARPNESS,
    STATES,
    AlertSettings,
    AlertState,
    AlertTracker,
    BestFramePicker,
    FrameSlots,
    PeakTracker,
    find_peak,
    no_signal,
    normalised_sharpness,
    signal_valid,
)
from focusmon.scheduler import _peak as peak_module


@dataclass(frozen=True)
class S:
    """Scores as the scheduler reads them."""

    tenengrad: float = 0.0
    mean: float = 100.0
    std: float = 40.0
    laplacian_var: float = 0.0
    sobel_mean: float = 0.0
    haar_energy: float = 0.0
    saturated: float = 0.0
    detail_x: float = 0.0
    detail_y: float = 0.0
    detail_xy: float = 0.0


def gaussian_curve(n, centre, width=3.0, floor=0.1, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(n)
    y = floor + np.exp(-0.5 * ((x - centre) / width) ** 2) + rng.normal(0, noise, n)
    return [S(tenengrad=v * 1e4, laplacian_var=0.0) for v in y]


# -- the normalised score ---------------------------------------------------------------


def test_normalised_sharpness_ignores_the_light(camera):
    img = camera[:200, :200]
    for measure in ("tenengrad", "laplacian_var", "haar_energy", "sobel_mean", "tenengrad_nc"):
        base = normalised_sharpness(focusmon.measure(img, backend="numpy"), measure)
        dim = normalised_sharpness(focusmon.measure(img, backend="numpy", scale=0.3), measure)
        assert dim == pytest.approx(base, rel=1e-12), measure


def test_noise_compensation_cancels_white_noise(camera):
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(128, 10, (400, 400)), 0, 255).astype(np.uint8)
    s = focusmon.measure(noise, backend="numpy")
    assert abs(normalised_sharpness(s, "tenengrad_nc")) < 0.03 * normalised_sharpness(s)
    sharp = focusmon.measure(camera, backend="numpy")
    assert normalised_sharpness(sharp, "tenengrad_nc") > 0.5 * normalised_sharpness(sharp)


def test_variance_noise_compensation_cancels_white_noise(camera):
    rng = np.random.default_rng(1)
    noise = np.clip(rng.normal(128, 10, (400, 400)), 0, 255).astype(np.uint8)
    s = focusmon.measure(noise, backend="numpy")
    plain = s.std**2 / s.mean**2
    assert abs(normalised_sharpness(s, "variance_nc")) < 0.03 * plain
    sharp = focusmon.measure(camera, backend="numpy")
    assert normalised_sharpness(sharp, "variance_nc") > 0.5 * sharp.std**2 / sharp.mean**2


def test_black_and_broken_frames_score_zero_not_nan():
    assert normalised_sharpness(S(tenengrad=5.0, mean=0.0)) == 0.0
    assert normalised_sharpness(S(tenengrad=math.nan, mean=50.0)) == 0.0
    assert normalised_sharpness(S(tenengrad=5.0, mean=math.inf)) == 0.0
    with pytest.raises(ValueError, match="`measure` must be one of"):
        normalised_sharpness(S(), "brenner")


# -- the focus peak ---------------------------------------------------------------------


@pytest.mark.parametrize("centre", [12.3, 2.6, 27.5])
def test_find_peak_interpolates_between_frames(centre):
    peak = find_peak(gaussian_curve(30, centre, noise=0.01))
    assert peak.position == pytest.approx(centre, abs=0.25)
    assert peak.best_index == round(centre)
    assert len(peak.values) == 30 and peak.measure == "tenengrad_nc"


def test_a_flat_noisy_top_still_yields_its_centre():
    x = np.arange(41)
    top = np.clip(1.2 - np.abs(x - 20.4) / 10, 0, 1)  # a plateau from 18 to 22
    rng = np.random.default_rng(1)
    curve = [S(tenengrad=(0.1 + v + rng.normal(0, 0.02)) * 1e4) for v in top]
    raw_argmax = int(np.argmax([s.tenengrad for s in curve]))
    peak = find_peak(curve)
    assert abs(peak.position - 20.4) < 0.6
    assert abs(raw_argmax - 20.4) >= 0.5  # the plain argmax lands elsewhere on the plateau


def test_find_peak_edge_cases():
    assert find_peak([S(tenengrad=1.0)]).best_index == 0
    assert find_peak([S(tenengrad=1.0), S(tenengrad=3.0)]).best_index == 1
    flat = find_peak([S(tenengrad=2.0)] * 7)
    assert 0 <= flat.best_index < 7 and math.isfinite(flat.position)
    black = find_peak([S(tenengrad=0.0, mean=0.0)] * 5)
    assert all(v == 0.0 for v in black.values)
    with pytest.raises(ValueError, match="empty"):
        find_peak([])


def test_a_real_sweep_through_the_kernels(camera):
    """Gaussian defocus around frame 9 of 20, with a lamp that flickers by ±25%."""
    rng = np.random.default_rng(2)
    img = camera[100:356, 100:356].astype(np.float64)
    scores = []
    for i in range(20):
        sigma = 0.6 * abs(i - 9.0)
        frame = cv2.GaussianBlur(img, (0, 0), sigma) if sigma else img
        frame = frame * rng.uniform(0.75, 1.25) * 0.8 + rng.normal(0, 3, img.shape)
        scores.append(focusmon.measure(np.clip(frame, 0, 255).astype(np.uint8)))
    assert abs(find_peak(scores).position - 9.0) <= 1


def test_a_dim_sweep_is_found_on_its_coarse_detail(monkeypatch):
    """40 photo-electrons at white, 16-bit micrographs: Tenengrad's fine detail drowns in
    photon noise, the variance's coarse detail does not. Streamed, the tracker must not
    stop on a dip of the noise and report a wrong peak: `auto` watches the coarse curve,
    and no tracker stops before its peak stands out of the jitter and is placed (without
    those rules, one watching Tenengrad stopped wrong in 3 or more of the 8)."""
    cell = skimage.data.cell().astype(np.float32) / 255.0
    auto_hits = fine_hits = 0
    wrong_stops = {"auto": 0, "tenengrad_nc": 0, "tenengrad_nc, stopping at once": 0}
    for seed in range(8):
        rng = np.random.default_rng(seed)
        y, x = rng.integers(0, cell.shape[0] - 240), rng.integers(0, cell.shape[1] - 320)
        sweep = testing.focus_sweep(
            cell[y : y + 240, x : x + 320], n_frames=31, focus=float(rng.uniform(9, 21)),
            photons_at_white=40.0, bits=16, rng=rng,
        )  # fmt: skip
        scores = [focusmon.measure(f, backend="numba-cpu") for f in sweep.frames]
        auto, fine = find_peak(scores), find_peak(scores, measure="tenengrad_nc")
        assert auto.measure == "variance_nc"
        auto_hits += abs(auto.best_index - sweep.focus_index) <= 1
        fine_hits += abs(fine.best_index - sweep.focus_index) <= 1
        for name in wrong_stops:
            with monkeypatch.context() as patch:
                hasty = name.endswith("at once")
                if hasty:
                    patch.setattr(peak_module, "STREAM_PROMINENCE", 0.0)
                placed = None if hasty else peak_module.STREAM_UNCERTAINTY
                tracker = PeakTracker(measure=name.split(",")[0], uncertainty=placed)
                stop = next((p for p in map(tracker.push, scores) if p is not None), None)
            if stop is not None:
                wrong_stops[name] += abs(stop.best_index - sweep.focus_index) > 1
    assert auto_hits >= 7 and fine_hits <= 5
    assert wrong_stops["auto"] <= 1 and wrong_stops["tenengrad_nc"] <= 1, wrong_stops
    assert wrong_stops["tenengrad_nc, stopping at once"] >= 3, wrong_stops


def dim_sweep(coarse_centre: float, n: int = 21, seed: int = 0) -> list[S]:
    """Scores whose fine measure is buried in noise (noise power 400 at mean 100) and whose
    variance holds a broad peak at ``coarse_centre``."""
    rng = np.random.default_rng(seed)
    x = np.arange(n)
    broad = 300 * np.exp(-0.5 * ((x - coarse_centre) / 5.0) ** 2)
    lap = 20 * 400 + rng.normal(0, 10, n)
    return [
        S(tenengrad=1.2 * lap[i] + rng.normal(0, 40), laplacian_var=lap[i],
          std=math.sqrt(400 + broad[i]))
        for i in range(n)
    ]  # fmt: skip


def test_auto_takes_the_coarse_measure_only_for_a_dim_sweep_with_its_peak_inside():
    inside = find_peak(dim_sweep(8.4))
    assert inside.measure == "variance_nc" and inside.best_index == 8
    # Cut off by the sweep's end, the broad peak is not trusted: the fine measure stays.
    assert find_peak(dim_sweep(0.3)).measure == "tenengrad_nc"
    assert find_peak(dim_sweep(19.8)).measure == "tenengrad_nc"
    # Bright: the fine measure rises well above its noise.
    bright = find_peak(gaussian_curve(21, 8.4, noise=0.01))
    assert bright.measure == "tenengrad_nc" and bright.best_index == 8
    with pytest.raises(ValueError, match="`measure` must be one of auto"):
        find_peak(dim_sweep(8.4), measure="brenner")
    with pytest.raises(ValueError, match="`measure` must be one of auto"):
        PeakTracker(measure="brenner")


def test_peak_tracker_reports_once_the_curve_has_passed():
    curve = gaussian_curve(40, 15.0, width=2.5)
    tracker = PeakTracker(patience=2)
    reported_at = None
    for i, s in enumerate(curve):
        peak = tracker.push(s)
        if peak is not None:
            reported_at = i
            assert peak.best_index == 15
    assert reported_at is not None and 17 <= reported_at <= 22
    with pytest.raises(ValueError, match="drop"):
        PeakTracker(drop=1.5)


# -- storage ----------------------------------------------------------------------------


def test_frame_slots_follow_a_change_of_size():
    slots = FrameSlots(2)
    a = slots.store(0, np.ones((4, 4), np.uint8))
    assert slots.store(1, np.zeros((4, 4), np.uint8)) is not a
    assert slots.store(0, np.full((4, 4), 3, np.uint8)) is a  # reused
    bigger = slots.store(0, np.ones((6, 8), np.uint16))
    assert bigger.shape == (6, 8) and bigger.dtype == np.uint16


def test_best_frame_of_each_window_with_its_own_pixels():
    picker = BestFramePicker(window_frames=5)
    out = []
    frame = np.zeros((3, 3), np.uint8)
    for i, v in enumerate([1, 5, 2, 3, 4, 9, 1, 1, 8, 1, 2, 7]):
        frame[:] = i  # the caller reuses its buffer: kept frames must be copies
        best = picker.push(i, i * 0.1, S(tenengrad=float(v)), frame)
        if best:
            out.append(best)
    tail = picker.flush()
    assert [b.index for b in out] == [1, 5] and tail.index == 11
    assert [int(b.luma[0, 0]) for b in out] == [1, 5]
    by_time = BestFramePicker(window_s=1.0, floor=0.5)
    emitted = [
        by_time.push(i, i * 0.25, S(tenengrad=1e4 if i == 6 else 1.0), frame) for i in range(9)
    ]
    assert [b.index for b in emitted if b] == [6]  # the first second is below the floor
    with pytest.raises(ValueError, match="exactly one"):
        BestFramePicker()
    assert BestFramePicker("door", window_frames=1).push(0, 0.0, S(), frame).stream == "door"


# -- alerts -----------------------------------------------------------------------------


def run_alerts(tracker, frames, fps=10.0, start=0.0):
    """Feed (tenengrad, mean, std) triples; returns the state changes."""
    changes = []
    for k, (t, m, sd) in enumerate(frames):
        change = tracker.update(S(tenengrad=t * m * m, mean=m, std=sd), start + k / fps)
        if change:
            changes.append(change)
    return changes


def steady(n, score=1.0, mean=120.0, std=40.0, jitter=0.1, seed=0):
    rng = np.random.default_rng(seed)
    return [(score * (1 + rng.uniform(-jitter, jitter)), mean, std) for _ in range(n)]


def test_alerts_learn_a_baseline_and_catch_a_defocus_with_hysteresis_and_dwell():
    tracker = AlertTracker("cam")
    frames = steady(100) + steady(40, score=0.3) + steady(40, score=0.6) + steady(60)
    changes = run_alerts(tracker, frames)
    assert [(c.previous, c.state) for c in changes] == [("ok", "blurred"), ("blurred", "ok")]
    blurred, ok = changes
    assert 10.0 + 1.0 <= blurred.time <= 10.0 + 1.5  # within the dwell of the event
    assert ok.time >= 18.0  # 0.6 x baseline is above enter but below leave: still blurred
    assert blurred.baseline == pytest.approx(1.0, rel=0.1) and blurred.score < 0.5


def test_a_stream_given_its_learned_baselines_judges_at_once():
    """What a fleet does when a shard starts on another host: the new tracker gets the old
    one's learned levels (plain JSON data) and catches a blur in the first second — where
    a tracker that learns anew would take the blurred picture for the normal one."""
    import json

    old = AlertTracker("cam")
    run_alerts(old, steady(100) + steady(100, score=0.3, mean=30.0, std=12.0))  # day, night
    learned = json.loads(json.dumps(old.learned()))
    assert len(learned["levels"]) == 2
    moved, fresh = AlertTracker("cam"), AlertTracker("cam")
    assert moved.restore(learned) == 2
    blurred_day = steady(30, score=0.3)
    assert [c.state for c in run_alerts(moved, blurred_day)] == ["blurred"]
    assert run_alerts(fresh, blurred_day) == []  # it learns the blur as normal
    # Garbage in the store is ignored, never a failure: the stream learns anew.
    for junk in (None, [], {"levels": {"x": [1, 2], "3": ["nan", 1], "4": [1]}}, {"levels": 5}):
        assert AlertTracker("cam").restore(junk) == 0


def test_short_dips_do_not_flap():
    frames = steady(60)
    for _ in range(10):
        frames += steady(5, score=0.2) + steady(10)  # half-second dips
    assert run_alerts(AlertTracker("cam"), frames) == []


def test_night_is_dark_or_its_own_baseline_never_blurred():
    tracker = AlertTracker("cam")
    night_lit = steady(100) + steady(200, score=0.25, mean=30.0, std=12.0)  # IR, NR: softer
    changes = run_alerts(tracker, night_lit)
    assert all(c.state != "blurred" for c in changes)
    changes = run_alerts(tracker, steady(50, mean=8.0, std=3.0), start=30.0)
    assert [c.state for c in changes] == ["dark"]
    back = run_alerts(tracker, steady(50), start=40.0)
    assert [c.state for c in back] == ["ok"]  # day's baseline remembered: no relearning


def test_a_covered_lens_is_obstructed_and_no_signal_is_immediate():
    tracker = AlertTracker("cam")
    changes = run_alerts(tracker, steady(100) + steady(30, score=0.05, mean=60.0, std=2.0))
    assert [c.state for c in changes] == ["obstructed"]
    change = tracker.no_signal(20.0)
    assert (change.previous, change.state) == ("obstructed", "no_signal")
    assert tracker.no_signal(21.0) is None
    assert run_alerts(tracker, steady(30), start=22.0)[0].state == "ok"


def test_a_fixed_threshold_when_asked_and_settings_are_checked():
    tracker = AlertTracker("cam", AlertSettings(blur_threshold=0.8))
    changes = run_alerts(tracker, steady(30, score=0.5))
    assert [c.state for c in changes] == ["blurred"] and changes[0].baseline == 0.8
    for bad in ({"enter_ratio": 0.9, "leave_ratio": 0.5}, {"min_dwell_s": -1},
                {"measure": "nope"}, {"blur_threshold": math.nan}):  # fmt: skip
        with pytest.raises(ValueError):
            AlertSettings(**bad)


def test_no_nan_leaves_the_tracker():
    tracker = AlertTracker("cam")
    frames = steady(50) + [(math.nan, 0.0, 0.0)] * 20 + [(0.0, 255.0, 0.0)] * 20
    for change in run_alerts(tracker, frames):
        assert math.isfinite(change.score) and math.isfinite(change.baseline)


# -- the states and the rules that judge a stream ---------------------------------------


def test_alert_states_are_their_names_and_say_what_they_mean():
    assert [str(s) for s in STATES] == [
        "ok", "blurred", "obstructed", "dark", "no_signal", "frozen", "moved", "partial"
    ]  # fmt: skip
    assert AlertState.BLURRED == "blurred" and f"{AlertState.NO_SIGNAL}" == "no_signal"
    judged = [AlertState.OK, AlertState.BLURRED, AlertState.PARTIAL]
    assert [s for s in STATES if s.judged] == judged
    assert [s for s in STATES if not s.signal_valid] == [
        AlertState.DARK, AlertState.NO_SIGNAL, AlertState.FROZEN
    ]  # fmt: skip


def test_the_no_signal_rule():
    # A camera that is starting up is not an alarm, until its open timeout has passed.
    assert not no_signal(connected=False, delivering=False, waiting_s=9.9, open_timeout_s=10)
    assert no_signal(connected=False, delivering=False, waiting_s=10.1, open_timeout_s=10)
    # Connected: stalled or reconnecting is no signal at once; up (or a file's end) is not.
    assert no_signal(connected=True, delivering=False, waiting_s=0.0, open_timeout_s=10)
    assert not no_signal(connected=True, delivering=True, waiting_s=99.0, open_timeout_s=10)


def test_the_signal_valid_rule():
    assert signal_valid(AlertState.OK, 0.1, 5.0) and signal_valid(AlertState.BLURRED, 5.0, 5.0)
    assert signal_valid(AlertState.OBSTRUCTED, 1.0, 5.0)  # a covered lens is a real view
    assert not signal_valid(AlertState.OK, 5.1, 5.0)  # a stale frame
    assert not signal_valid(AlertState.OK, None, 5.0)  # no frame yet
    assert not signal_valid(AlertState.DARK, 0.1, 5.0)
    assert not signal_valid(AlertState.NO_SIGNAL, 0.1, 5.0)


def test_a_stream_that_never_connected_was_connecting_not_ok():
    tracker = AlertTracker("cam", live=True)
    change = tracker.no_signal(1795985635.0)
    assert (change.previous, change.state, change.live) == (CONNECTING, "no_signal", True)
    assert change.as_dict()["previous"] == "connecting"
    back = run_alerts(tracker, steady(5), start=1795985640.0)[0]
    assert (back.previous, back.state) == ("no_signal", "ok")  # connected now
    assert tracker.no_signal(1795985650.0).previous == "ok"


def test_the_measures_come_from_the_kernels_table():
    """The scheduler's sharpness measures are the kernels' table's and the two derived ones;
    each is normalised by the mean to the power the table gives."""
    sharp = {m.name for m in MEASURE_TABLE.values() if m.sharpness}
    assert set(SHARPNESS) == sharp | {"tenengrad_nc", "variance_nc"}
    brighter = {"mean": 200.0, "std": 80.0}
    base = S(tenengrad=1e4, laplacian_var=1e3, sobel_mean=50.0, haar_energy=500.0)
    lit = S(tenengrad=4e4, laplacian_var=4e3, sobel_mean=100.0, haar_energy=2e3, **brighter)
    for name in sharp:  # twice the light: each measure x 2**power, the score unchanged
        assert normalised_sharpness(lit, name) == pytest.approx(normalised_sharpness(base, name))
