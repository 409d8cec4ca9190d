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
    sweep_bframes,
)
from focusmon.scheduler._peak import COMPRESSED_LEVEL, COMPRESSED_MARKS
from focusmon.source import SourceOptions, open_source

from decisions import image, random_view, write_video


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
        told = find_peak(curve[:n], quantiser=36.0, bframes=bframes)
        assert peak.position == told.position and abs(peak.best_index - 12) <= 1
    plain = PeakTracker()
    assert next(p for p in map(plain.push, curve) if p).compressed is False
    assert plain.quantiser is None


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


def test_the_tracker_does_not_watch_the_coarse_curve_of_a_compressed_sweep():
    """Blurred frames at a coarse quantiser: the fine curve is flat until the focus nears,
    so the sweep so far looks dim, and a bump of the coarse curve (variance) early on
    would pass for the peak. `find_peak` makes no dim-sweep choice on such a sweep, and
    the tracker, told the quantiser, watches the fine curve too."""
    k = np.arange(31.0)
    lap = 8000.0  # its noise power, cancelled in the fine measure, dwarfs the fine curve
    fine = 1e4 * (0.01 + 5.0 * np.exp(-0.5 * ((k - 20) / 2.0) ** 2))
    coarse = 300.0 * np.exp(-0.5 * ((k - 3) / 1.5) ** 2)
    curve = [
        S(tenengrad=1.2 * lap + f, laplacian_var=lap, std=math.sqrt(400.0 + c))
        for f, c in zip(fine, coarse, strict=True)
    ]
    untold = PeakTracker()
    early = next(p for p in map(untold.push, curve) if p)
    assert len(early.values) < 15 and early.best_index < 15  # stopped on the coarse bump
    told = PeakTracker()
    peak = next(p for p in (told.push(s, qp=38.0, pict_type="P") for s in curve) if p)
    assert peak.compressed and peak.measure == "tenengrad_nc"
    assert len(peak.values) > 21 and abs(peak.best_index - 20) <= 1
