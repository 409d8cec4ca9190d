"""The focus peak of a heavily compressed sweep: the quantiser and picture types the
decoder tells (`SourceOptions.quantiser`, `LumaFrame.qp`, `LumaFrame.pict_type`) and what
`find_peak` does with them, on real H.264 encodes and through `focusmon peak`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_scheduler import S  # scores as the scheduler reads them

from focusmon import testing
from focusmon.cli import main
from focusmon.scheduler import (
    COMPRESSED_QP,
    PeakTracker,
    find_peak,
    peak_position,
    peak_uncertainty,
    sweep_bframes,
    sweep_quantiser,
)
from focusmon.scheduler._peak import (
    COMPRESSED_CONTRAST,
    COMPRESSED_LEVEL,
    COMPRESSED_MARKS,
    STREAM_UNCERTAINTY,
)
from focusmon.scheduler._score import NOISE_RATIO
from focusmon.source import SourceOptions, open_source

from decisions import image, random_view, through_video, write_video


def persisted(focus: int = 12, n: int = 31) -> list[S]:
    """A curve as a coarse quantiser leaves it: a rise to the focus, then the frames keep
    their predecessors' detail (repeats, a slow fall) for six frames."""
    x = np.arange(n, dtype=float)
    true = np.exp(-0.5 * ((x - focus) / 3.0) ** 2)
    decoded = true.copy()
    decoded[focus : focus + 7] = true[focus] * np.linspace(1.0, 0.97, 7)
    return [S(tenengrad=(0.05 + v) * 1e4) for v in decoded]


def sweep_file(
    tmp_path, crf: int, focus: float = 14.0, tune: str | None = None
) -> tuple[str, int]:
    rng = np.random.default_rng(5)
    scene = random_view(image("astronaut"), rng)
    sweep = testing.focus_sweep(scene, n_frames=31, focus=focus, bits=8, rng=rng)
    path = str(tmp_path / f"sweep_crf{crf}_{tune}.mp4")
    write_video(path, sweep.frames, lossless=False, fps=10.0, crf=crf, tune=tune)
    return path, sweep.focus_index


def marks_position(values: np.ndarray, bframes: bool) -> float:
    """`find_peak`'s compressed position, computed apart: the top of the 3-frame median,
    the level over the rising side's floor, its crossings by interpolation along each
    (monotonic) flank, the weights."""
    middle = np.median(np.stack([values[:-2], values[1:-1], values[2:]]), axis=0)
    top = 1 + int(np.argmax(middle))
    floor = values[: top + 1].min()
    level = floor + COMPRESSED_LEVEL * (values.max() - floor)
    x = np.arange(values.size, dtype=float)
    rise = np.interp(level, values[: top + 1], x[: top + 1])
    fall = np.interp(level, values[top:][::-1], x[top:][::-1])
    w_rise, w_fall, offset = COMPRESSED_MARKS[bframes]
    return top + w_rise * (rise - top) + w_fall * (fall - top) + offset


def test_a_compressed_sweep_s_peak_is_placed_by_its_top_and_crossings():
    curve = persisted(focus=12)
    fitted = find_peak(curve)
    assert fitted.best_index >= 14 and not fitted.compressed  # the fit centres the plateau
    values = np.array(fitted.values)
    positions = {}
    for bframes in (True, False, None):
        told = find_peak(curve, quantiser=COMPRESSED_QP + 8, bframes=bframes)
        assert told.compressed and told.measure == "tenengrad_nc"
        expected = marks_position(values, bframes is not False)  # not told: B-frames
        assert told.position == pytest.approx(expected, abs=1e-9)
        assert told.best_index == round(expected) and abs(told.best_index - 12) <= 1
        positions[bframes] = told.position
    assert positions[True] != positions[False] and positions[None] == positions[True]
    light = find_peak(curve, quantiser=COMPRESSED_QP - 6)  # crf 18: the fit, as before
    assert light.best_index == fitted.best_index and not light.compressed
    with pytest.raises(ValueError, match="quantiser"):
        find_peak(curve, quantiser=math.nan)


@pytest.mark.parametrize(
    "tenengrads",
    [[5e3] * 7, [1e3] * 5 + [9e3] + [1e3] * 5, [4e3], [4e3, 6e3], [0.0] * 4],
    ids=["flat", "lone spike", "one frame", "two frames", "black"],
)
def test_a_compressed_curve_without_flanks_still_gets_a_frame(tenengrads):
    peak = find_peak([S(tenengrad=t) for t in tenengrads], quantiser=40.0, bframes=False)
    assert peak.compressed and math.isfinite(peak.position)
    assert 0 <= peak.best_index < len(tenengrads) and 0 <= peak.position <= len(tenengrads) - 1


def test_a_sweep_has_b_frames_where_the_decoder_told_one():
    assert sweep_bframes([]) is None and sweep_bframes([None, None]) is None
    assert sweep_bframes(["I", "P", None, "P"]) is False
    assert sweep_bframes(["I", "B", "P"]) is True and sweep_bframes([None, "BI"]) is True


def test_the_streaming_tracker_tells_find_peak_the_median_quantiser_and_b_frames():
    curve = persisted(focus=12)
    qps = ([34.0, 38.0, 36.0] * 11)[: len(curve)]
    for picts, bframes in ((["I"] + ["P"] * 30, False), (["I", "B", "B", "P"] * 8, True)):
        tracker = PeakTracker()
        pushes = (tracker.push(*f) for f in zip(curve, qps, picts[: len(curve)], strict=True))
        peak = next(p for p in pushes if p)
        assert tracker.quantiser == 36.0 and peak.compressed
        n = len(peak.values)  # the frames pushed before it stopped
        told = find_peak(curve[:n], quantiser=36.0, pict_types=picts[:n])
        assert peak.position == told.position and abs(peak.best_index - 12) <= 1
        assert told.position == find_peak(curve[:n], quantiser=36.0, bframes=bframes,
                                          pict_types=picts[:n]).position  # fmt: skip
    plain = PeakTracker()
    assert next(p for p in map(plain.push, curve) if p).compressed is False
    assert plain.quantiser is None


def intra_jump(focus: int = 10, n: int = 31) -> tuple[list[S], list[str]]:
    """A low-latency stream's curve: P-frames rise to the focus and keep its detail (a
    slow fall) for six frames; an I-frame, coded afresh at a finer quantiser, jumps above
    them seven frames past the focus; P-frames fall slowly from it; then I-frames to the
    end, falling."""
    x = np.arange(n, dtype=float)
    true = np.exp(-0.5 * ((x - focus) / 3.0) ** 2)
    cut, tail = focus + 7, focus + 11
    values = np.where(x <= focus, true, true[focus] * 0.999 ** (x - focus))
    values[cut:tail] = 1.3 * 0.97 ** (x[cut:tail] - cut)
    values[tail:] = 0.9 * np.exp(-0.5 * ((x[tail:] - focus) / 6.0) ** 2)
    picts = ["I"] + ["P"] * (cut - 1) + ["I"] + ["P"] * (tail - cut - 1) + ["I"] * (n - tail)
    return [S(tenengrad=(0.05 + v) * 1e4) for v in values], picts


def bridged(values: np.ndarray, picts: list[str]) -> np.ndarray:
    """The curve with each P-to-I step replaced by the mean of its neighbouring steps
    (none of which is such a step here), rebuilt by summing the steps."""
    steps = np.diff(values)
    jumps = [k for k in range(steps.size) if picts[k + 1] == "I" and picts[k] != "I"]
    out = steps.copy()
    for k in jumps:
        out[k] = (steps[k - 1] + steps[k + 1]) / 2
    return np.concatenate([values[:1], values[0] + np.cumsum(out)])


def test_an_intra_frame_s_jump_is_bridged_where_the_picture_types_are_told():
    curve, picts = intra_jump(focus=10)
    untold = find_peak(curve, quantiser=36.0, bframes=False)
    assert untold.best_index - 10 > 1  # the I-frame's jump takes the top, and the marks
    told = find_peak(curve, quantiser=36.0, pict_types=picts)
    assert told.compressed and told.values == untold.values  # the curve is kept as scored
    expected = marks_position(bridged(np.array(told.values), picts), bframes=False)
    assert told.position == pytest.approx(expected, abs=1e-9)
    assert abs(told.best_index - 10) <= 1, told.position
    # Told the types, `bframes` defaults to what they say (here: none).
    assert told.position == find_peak(curve, quantiser=36.0, bframes=False,
                                      pict_types=picts).position  # fmt: skip
    assert told.position != find_peak(curve, quantiser=36.0, bframes=True,
                                      pict_types=picts).position  # fmt: skip
    tracker = PeakTracker()
    pushes = (tracker.push(s, 36.0, t) for s, t in zip(curve, picts, strict=True))
    stop = next(p for p in pushes if p)
    n = len(stop.values)
    assert n < len(curve) and abs(stop.best_index - 10) <= 1
    assert stop.position == find_peak(curve[:n], quantiser=36.0, pict_types=picts[:n]).position
    light = find_peak(curve, quantiser=COMPRESSED_QP - 6, pict_types=picts)
    assert not light.compressed and light.position == find_peak(curve).position
    with pytest.raises(ValueError, match="pict_types"):
        find_peak(curve, quantiser=36.0, pict_types=picts[:-1])


def test_the_decoder_tells_each_frame_s_quantiser_and_picture_type(tmp_path):
    light, _ = sweep_file(tmp_path, crf=18)
    heavy, _ = sweep_file(tmp_path, crf=40)
    low_latency, _ = sweep_file(tmp_path, crf=40, tune="zerolatency")
    qp, types = {}, {}
    for name, path in (("light", light), ("heavy", heavy), ("low latency", low_latency)):
        with open_source(path, SourceOptions(quantiser=True)) as source:
            frames = list(source)
        assert len(frames) == 31 and all(f.qp is not None for f in frames)
        qp[name] = float(np.median([f.qp for f in frames]))
        assert all(0 <= f.qp <= 51 for f in frames)
        types[name] = [f.pict_type for f in frames]
    assert qp["light"] < COMPRESSED_QP <= min(qp["heavy"], qp["low latency"]), qp
    # x264's default GOP: an I-frame, then P-frames with B-frames between (in display
    # order, as decoded); its low-latency stream has no B-frames.
    assert types["heavy"][0] == "I" and {"P", "B"} <= set(types["heavy"]) <= {"I", "P", "B"}
    assert types["low latency"][0] == "I" and set(types["low latency"][1:]) == {"P"}
    with open_source(heavy) as source:  # not asked: not read
        assert all(f.qp is None and f.pict_type is None for f in source)
    lossless = str(tmp_path / "lossless.mkv")
    write_video(lossless, [np.full((32, 32), 100, np.uint8)] * 3, lossless=True, fps=10.0)
    with open_source(lossless, SourceOptions(quantiser=True)) as source:
        assert [f.qp for f in source] == [None] * 3  # FFV1 quantises nothing


def test_the_quantisers_are_the_same_in_every_decode(tmp_path):
    """FFmpeg's H.264 decoder exported the quantisers racily across frame threads (a
    frame's mean QP read 0, or another frame's, in some runs): asked for them, the source
    decodes with slice threads, as one thread decodes."""
    path, _ = sweep_file(tmp_path, crf=40)

    def told(threads: int) -> list[tuple[float | None, str | None]]:
        with open_source(path, SourceOptions(quantiser=True, decoder_threads=threads)) as src:
            return [(f.qp, f.pict_type) for f in src]

    one = told(1)
    assert len(one) == 31 and all(qp is not None for qp, _ in one)
    assert all(told(0) == one for _ in range(6))


@pytest.mark.parametrize("tune", [None, "zerolatency"])
def test_peak_on_a_heavily_compressed_file_says_so_and_finds_the_focus(tmp_path, capsys, tune):
    path, truth = sweep_file(tmp_path, crf=40, tune=tune)
    assert main(["peak", path, "--backend", "numpy"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compressed"] is True and result["quantiser"] >= COMPRESSED_QP
    assert result["bframes"] is (tune is None)
    assert abs(result["best_index"] - truth) <= 1, (result["best_index"], truth)
    light, truth = sweep_file(tmp_path, crf=18)
    assert main(["peak", light, "--backend", "numpy"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compressed"] is False and abs(result["best_index"] - truth) <= 1


def test_score_prints_each_frame_s_quantiser_and_picture_type_when_asked(tmp_path, capsys):
    path, _ = sweep_file(tmp_path, crf=40)
    assert main(["score", path, "--backend", "numpy", "--quantiser"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 31 and all(COMPRESSED_QP <= line["qp"] <= 51 for line in lines)
    assert lines[0]["pict_type"] == "I" and {line["pict_type"] for line in lines} == {
        "I",
        "P",
        "B",
    }
    assert main(["score", path, "--backend", "numpy"]) == 0
    plain = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(plain) == 31 and not any("qp" in line or "pict_type" in line for line in plain)


def test_a_streaming_stop_places_a_compressed_peak_as_the_whole_sweep_does():
    """The marks' height is over the rising side's floor: frames after the stop that fall
    below everything before (a blurrier I-frame, coded afresh) do not move them."""
    curve = persisted(focus=12)
    tail = [S(tenengrad=s.tenengrad * 0.2) for s in curve[24:]]  # below the first frame
    whole = curve[:24] + tail
    for bframes, pict in ((True, "B"), (False, "P")):
        tracker = PeakTracker()
        stop = next(p for p in (tracker.push(s, 36.0, pict) for s in whole) if p)
        assert len(stop.values) < 24  # it stopped before the tail
        peak = find_peak(whole, quantiser=36.0, bframes=bframes)
        assert stop.position == pytest.approx(peak.position, abs=1e-12)
        assert abs(peak.best_index - 12) <= 1


def test_a_noisy_sweep_at_a_coarse_quantiser_is_not_taken_for_a_compressed_one():
    """A camera's noise, coded frame after frame, drives the quantiser up as well, but its
    frames do not persist: where the fine curve rises less than `COMPRESSED_CONTRAST`
    times the noise power it cancelled, the sweep is fitted as an uncompressed one."""
    for lap, compressed in ((1e4, False), (100.0, True)):
        # The same fine curve each time; only the noise power it cancels differs.
        curve = [
            S(tenengrad=s.tenengrad + NOISE_RATIO * lap, laplacian_var=lap)
            for s in persisted(focus=12)
        ]
        values = np.array(find_peak(curve, measure="tenengrad_nc").values)
        noise = NOISE_RATIO * lap / 100.0**2  # as `tenengrad_nc` normalises it (mean 100)
        assert bool(np.ptp(values) >= COMPRESSED_CONTRAST * noise) is compressed
        told = find_peak(curve, quantiser=38.0, bframes=False)
        assert told.compressed is compressed
        if not compressed:  # the fit, as if the decoder had told nothing
            assert told.position == find_peak(curve).position
        tracker = PeakTracker()
        stop = next(p for p in (tracker.push(c, 38.0, "P") for c in curve) if p)
        assert stop.compressed is compressed


def repeated(run: int, focus: int = 12, n: int = 31) -> list[S]:
    """A compressed curve whose focus frame the encoder repeated exactly, ``run`` frames
    in all (it coded no change), before the blur shows."""
    x = np.arange(n, dtype=float)
    values = np.exp(-0.5 * ((x - focus) / 3.0) ** 2)
    values[focus : focus + run] = values[focus]
    values[focus + run :] = np.exp(-0.5 * ((x[focus + run :] - focus - run + 1) / 3.0) ** 2)
    return [S(tenengrad=(0.05 + v) * 1e4) for v in values]


def test_a_compressed_peak_in_a_run_of_repeated_frames_is_as_uncertain_as_the_run():
    """Where in a run of frames the encoder repeated the focus lies, the stream does not
    tell: the run is the uncertainty (a uniform spread), and the tracker does not stop on
    it; the whole sweep still gets its peak, which a stop would have given."""
    for run in (1, 3, 6):
        curve = repeated(run)
        peak = find_peak(curve, quantiser=36.0, bframes=True)
        assert peak.compressed and 12 <= peak.best_index < 12 + run, peak.position
        assert peak.uncertainty == pytest.approx(run / math.sqrt(12.0), rel=1e-12)
        hasty = PeakTracker(uncertainty=None)
        early = next(p for p in (hasty.push(c, 36.0, "B") for c in curve) if p)
        assert early.position == pytest.approx(peak.position, abs=1e-12)
        patient = PeakTracker()
        stop = next((p for p in (patient.push(c, 36.0, "B") for c in curve) if p), None)
        if run / math.sqrt(12.0) <= STREAM_UNCERTAINTY:
            assert stop is not None and stop.position == early.position
        else:  # 6 frames: 1.7 frames of uncertainty, it runs to its end
            assert stop is None and patient.peak is None


def test_a_dim_camera_s_stream_is_fitted_though_its_quantiser_is_coarse(tmp_path):
    """A dim sweep through x264's low-latency stream at crf 24: its noise costs bits, the
    quantiser is coarse, and the noise-compensated fit, not the marks, places its peak."""
    rng = np.random.default_rng(3)
    scene = random_view(image("astronaut"), rng)
    sweep = testing.focus_sweep(
        scene, n_frames=31, focus=15.0, photons_at_white=40.0, bits=8, rng=rng
    )
    quantisers: list[float] = []
    pict_types: list[str | None] = []
    scores, _, _ = through_video(sweep.frames, lossless=False, fps=10.0, workdir=str(tmp_path),
                                 crf=24, tune="zerolatency", quantisers=quantisers,
                                 pict_types=pict_types)  # fmt: skip
    quantiser = sweep_quantiser(quantisers)
    assert quantiser >= COMPRESSED_QP
    assert set(pict_types) <= {"I", "P"} and len(pict_types) == 31
    told = find_peak(scores, quantiser=quantiser, pict_types=pict_types)
    assert not told.compressed and told.position == find_peak(scores).position
    assert abs(told.best_index - sweep.focus_index) <= 1, (told.position, sweep.focus_index)


def test_peak_uncertainty_is_the_spread_of_the_fit_over_the_noise():
    """Against the spread measured apart: the root-mean-square error of `peak_position`
    over 300 independent noisy draws of a known curve."""
    x = np.arange(31.0)
    for width, noise in ((3.0, 0.05), (3.0, 0.15), (5.0, 0.2)):
        true = 0.1 + np.exp(-0.5 * ((x - 14.3) / width) ** 2)
        rng = np.random.default_rng(1)
        curves = true + rng.normal(0.0, noise, (300, x.size))
        spread = math.sqrt(np.mean([(peak_position(c) - 14.3) ** 2 for c in curves]))
        estimates = [peak_uncertainty(c) for c in curves[:40]]
        assert 0.7 * spread < float(np.median(estimates)) < 1.5 * spread, (spread, estimates)
        assert peak_uncertainty(curves[0]) == peak_uncertainty(curves[0])  # a fixed seed
    assert peak_uncertainty(true) < 0.05  # no noise: only the curvature's jitter
    assert peak_uncertainty([1.0, 2.0]) == 0.0 and peak_uncertainty([3.0] * 9) == 0.0


def test_the_tracker_waits_until_the_peak_is_placed():
    """A noisy sweep passes its peak before the fit can place it: the tracker waits, and
    stops later where the frames since placed it, or not at all."""
    x = np.arange(31.0)

    def noisy(seed: int) -> list[S]:
        rng = np.random.default_rng(seed)
        y = 0.1 + np.exp(-0.5 * ((x - 12) / 4.0) ** 2) + rng.normal(0.0, 0.25, x.size)
        return [S(tenengrad=v * 1e4) for v in y]

    outcomes = {}
    for seed in (3, 8):
        curve = noisy(seed)
        hasty = PeakTracker(uncertainty=None)
        early = next(p for p in map(hasty.push, curve) if p)
        assert peak_uncertainty(early.values) > STREAM_UNCERTAINTY
        patient = PeakTracker()
        stop = next((p for p in map(patient.push, curve) if p), None)
        if stop is None:
            outcomes[seed] = None
            continue
        n = len(stop.values)
        assert n > len(early.values) and peak_uncertainty(stop.values) <= STREAM_UNCERTAINTY
        assert stop.position == find_peak(curve[:n]).position
        assert stop.uncertainty == peak_uncertainty(stop.values)
        outcomes[seed] = stop.best_index
    assert outcomes[3] is None and abs(outcomes[8] - 12) <= 1
    hasty3 = next(p for p in map(PeakTracker(uncertainty=None).push, noisy(3)) if p)
    assert abs(hasty3.best_index - 12) > 1  # where waiting mattered: a wrong peak
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="uncertainty"):
            PeakTracker(uncertainty=bad)
