"""The focus peak of a heavily compressed sweep: the quantiser the decoder tells
(`SourceOptions.quantiser`, `LumaFrame.qp`) and what `find_peak` does with it, on a real
H.264 encode and through `focusmon peak`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_scheduler import S  # scores as the scheduler reads them

from focusmon import testing
from focusmon.cli import main
from focusmon.scheduler import COMPRESSED_QP, PeakTracker, find_peak
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


def sweep_file(tmp_path, crf: int, focus: float = 14.0) -> tuple[str, int]:
    rng = np.random.default_rng(5)
    scene = random_view(image("astronaut"), rng)
    sweep = testing.focus_sweep(scene, n_frames=31, focus=focus, bits=8, rng=rng)
    path = str(tmp_path / f"sweep_crf{crf}.mp4")
    write_video(path, sweep.frames, lossless=False, fps=10.0, crf=crf)
    return path, sweep.focus_index


def test_a_persisted_plateau_is_found_at_its_start_once_the_quantiser_says_compressed():
    curve = persisted(focus=12)
    fitted = find_peak(curve)
    assert fitted.best_index >= 14 and not fitted.compressed  # the fit centres the plateau
    told = find_peak(curve, quantiser=COMPRESSED_QP + 8)
    assert told.compressed and told.measure == "tenengrad_nc"
    assert abs(told.best_index - 12) <= 1 and abs(told.position - told.best_index) <= 0.5
    light = find_peak(curve, quantiser=COMPRESSED_QP - 6)  # crf 18: the fit, as before
    assert light.best_index == fitted.best_index and not light.compressed
    with pytest.raises(ValueError, match="quantiser"):
        find_peak(curve, quantiser=math.nan)


def test_the_streaming_tracker_tells_find_peak_the_median_quantiser():
    curve = persisted(focus=12)
    tracker = PeakTracker()
    qps = ([34.0, 38.0, 36.0] * 11)[: len(curve)]
    peak = next(p for p in (tracker.push(s, qp=q) for s, q in zip(curve, qps, strict=True)) if p)
    assert tracker.quantiser == 36.0 and peak.compressed
    assert abs(peak.best_index - 12) <= 1
    plain = PeakTracker()
    assert next(p for p in map(plain.push, curve) if p).compressed is False
    assert plain.quantiser is None


def test_the_decoder_tells_each_frame_s_quantiser(tmp_path):
    light, _ = sweep_file(tmp_path, crf=18)
    heavy, _ = sweep_file(tmp_path, crf=40)
    qp = {}
    for name, path in (("light", light), ("heavy", heavy)):
        with open_source(path, SourceOptions(quantiser=True)) as source:
            frames = list(source)
        assert len(frames) == 31 and all(f.qp is not None for f in frames)
        qp[name] = float(np.median([f.qp for f in frames]))
        assert all(0 <= f.qp <= 51 for f in frames)
    assert qp["light"] < COMPRESSED_QP <= qp["heavy"], qp
    with open_source(heavy) as source:  # not asked: not read
        assert all(f.qp is None for f in source)
    lossless = str(tmp_path / "lossless.mkv")
    write_video(lossless, [np.full((32, 32), 100, np.uint8)] * 3, lossless=True, fps=10.0)
    with open_source(lossless, SourceOptions(quantiser=True)) as source:
        assert [f.qp for f in source] == [None] * 3  # FFV1 quantises nothing


def test_peak_on_a_heavily_compressed_file_says_so_and_finds_the_focus(tmp_path, capsys):
    path, truth = sweep_file(tmp_path, crf=40)
    assert main(["peak", path, "--backend", "numpy"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compressed"] is True and result["quantiser"] >= COMPRESSED_QP
    assert abs(result["best_index"] - truth) <= 1, (result["best_index"], truth)
    light, truth = sweep_file(tmp_path, crf=18)
    assert main(["peak", light, "--backend", "numpy"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compressed"] is False and abs(result["best_index"] - truth) <= 1


def test_score_prints_each_frame_s_quantiser_when_asked(tmp_path, capsys):
    path, _ = sweep_file(tmp_path, crf=40)
    assert main(["score", path, "--backend", "numpy", "--quantiser"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 31 and all(COMPRESSED_QP <= line["qp"] <= 51 for line in lines)
    assert main(["score", path, "--backend", "numpy"]) == 0
    assert all("qp" not in json.loads(line) for line in capsys.readouterr().out.splitlines())
