"""``focusmon score`` and ``focusmon backends`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from focusmon import kernels
from focusmon.cli import main

from media import h264_clip, write_tone, write_video, yuv420_of


@pytest.fixture(scope="module")
def clip(tmp_path_factory, camera):
    """A 6-frame limited-range H.264 clip: sharp, then more and more blurred."""
    import cv2

    pic = np.ascontiguousarray(camera[:240, :320])
    frames = [yuv420_of(cv2.GaussianBlur(pic, (0, 0), s) if s else pic) for s in range(6)]
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    return write_video(path, frames, pix_fmt="yuv420p", codec="libx264", options={"qp": "0"})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_score_writes_one_json_object_per_frame(capsys, clip):
    code, out, err = run(capsys, "score", str(clip), "--backend", "numba-cpu")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == list(range(6))
    assert rows[1]["pts"] == pytest.approx(0.04)
    assert list(rows[0]) == ["index", "pts", *kernels.MEASURES, *kernels.DIRECTIONS]
    lap = [r["laplacian_var"] for r in rows]
    assert lap == sorted(lap, reverse=True)  # the clip blurs frame by frame
    assert err == ""  # no progress bar when stderr is not a terminal


def test_every_and_roi(capsys, clip):
    code, out, _ = run(capsys, "score", str(clip), "--every", "2", "--roi", "10,20,100,50")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == [0, 2, 4]
    _, full, _ = run(capsys, "score", str(clip))
    assert rows[0]["laplacian_var"] != json.loads(full.splitlines()[0])["laplacian_var"]


def test_backends_agree_through_the_cli(capsys, clip):
    outs = {}
    for name in ("numpy", "numba-cpu"):
        code, out, _ = run(capsys, "score", str(clip), "--backend", name)
        assert code == 0
        outs[name] = [json.loads(line) for line in out.splitlines()]
    for a, b in zip(outs["numpy"], outs["numba-cpu"], strict=True):
        for m in kernels.MEASURES:
            assert a[m] == pytest.approx(b[m], rel=1e-9)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["score", "/nonexistent/clip.mp4"], "no such file: /nonexistent/clip.mp4"),
        (["score", "CLIP", "--roi", "300,0,100,100"], "`roi` must lie inside the 320x240"),
        (["score", "CLIP", "--roi", "1,2,3"], "argument --roi: must be X,Y,W,H"),
        (["score", "CLIP", "--every", "0"], "must be an integer >= 1"),
        (
            ["score", "CLIP", "--backend", "opencl"],
            "one of auto, numba-cuda, numba-cpu, numpy, got 'opencl'",
        ),
        (["score", "CLIP", "--max-fps", "-3"], "must be a number > 0"),
        (
            ["score", "CLIP", "--decoder-threads", "-1"],
            "argument --decoder-threads: must be an integer >= 0",
        ),
        (["score", "CLIP", "--ffmpeg-option", "stimeout=5"], "unknown FFmpeg option 'stimeout'"),
        (["score", "CLIP", "--ffmpeg-option", "novalue"], "must be NAME=VALUE"),
        (["score"], "required: source"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, clip, argv, words):
    argv = [str(clip) if a == "CLIP" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("focusmon: error:")]
    assert len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err


def test_audio_only_file_exits_2(capsys, tmp_path):
    audio = tmp_path / "tone.wav"
    write_tone(audio)
    code, _, err = run(capsys, "score", str(audio))
    assert code == 2 and "has no video stream" in err


def test_truncated_file_fails_with_one_line_not_a_traceback(capsys, tmp_path, clip):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:2000])  # no faststart: the moov atom is gone
    code, _, err = run(capsys, "score", str(cut))
    assert code in (1, 2) and err.startswith("focusmon: error:") and "Traceback" not in err


def test_backends_command(capsys):
    code, out, _ = run(capsys, "backends")
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["numpy"] == "available" and lines["numba-cpu"] == "available"
    assert lines["numba-cuda"].startswith(("available", "unavailable: "))


def test_the_installed_command_scores_the_demo():
    proc = subprocess.run(
        [sys.executable, "-m", "focusmon", "score", "demo", "--every", "25"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(0, 250, 25))
    assert all(np.isfinite(r[m]) for r in rows for m in kernels.MEASURES)


def test_progress_is_drawn_on_a_terminal_only():
    import io

    from focusmon.cli._progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = Progress(stream, "score", total=10)
        for _ in range(10):
            progress.advance()
        progress.close()
    assert pipe.getvalue() == ""
    assert tty.getvalue().startswith("\rscore: 10/10 frames") and tty.getvalue().endswith("\n")


def test_decoding_options_through_the_cli(capsys, tmp_path):
    gop = h264_clip(tmp_path / "gop.mp4", 2.0, gop=10)
    _, out, _ = run(capsys, "score", str(gop), "--keyframes")
    assert [json.loads(r)["pts"] for r in out.splitlines()] == pytest.approx(
        [0, 0.4, 0.8, 1.2, 1.6]
    )
    _, out, _ = run(capsys, "score", str(gop), "--max-fps", "2", "--decoder-threads", "1")
    assert [json.loads(r)["index"] for r in out.splitlines()] == [0, 13, 25, 38]
    _, out, _ = run(capsys, "score", str(gop), "--frames", "3")
    assert len(out.splitlines()) == 3


def test_skipped_frames_are_reported_in_one_warning(capsys, tmp_path):
    data = bytearray(h264_clip(tmp_path / "c.ts", 2.0).read_bytes())
    rng = np.random.default_rng(3)
    for pos in rng.integers(2000, len(data), 40):
        data[pos] ^= 0x10
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    code, out, err = run(capsys, "score", str(damaged))
    assert code == 0 and len(out.splitlines()) > 10
    warnings = [line for line in err.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and "corrupt frames skipped" in warnings[0], err


# -- what a person meets ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "peak", "watch", "check-config", "autofocus"])
def test_a_usage_error_shows_the_commands_own_usage(capsys, command):
    positional = {"score": ["demo"], "peak": ["demo"], "check-config": ["s.toml"]}
    code, out, err = run(capsys, command, *positional.get(command, []), "--no-such-flag")
    assert code == 2 and out == ""
    usage, error = err.splitlines()[0], err.splitlines()[-1]
    assert usage.startswith(f"usage: focusmon {command} ")
    assert error == "focusmon: error: unrecognized arguments: --no-such-flag"
    code, _, err = run(capsys, "score")  # a missing argument: the command's usage too
    assert code == 2 and err.startswith("usage: focusmon score ")


@pytest.mark.parametrize(
    "command", ["score", "peak", "watch", "check-config", "autofocus", "backends"]
)
def test_each_help_shows_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    example = out.split("example:\n", 1)[1].splitlines()[0].strip()
    assert example.startswith(f"focusmon {command}"), out


def focusmon_run(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "focusmon", *argv], capture_output=True, text=True,
        timeout=120, env=env,
    )  # fmt: skip


def test_log_lines_carry_their_time_unless_the_journal_adds_it(clip):
    import datetime
    import os
    import re

    argv = ["score", str(clip), "--hwaccel", "cuda", "--frames", "1"]  # logs one warning
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    line = next(x for x in focusmon_run(*argv, env=env).stderr.splitlines() if "WARNING" in x)
    stamp, rest = line.split(" ", 1)
    assert rest.startswith("focusmon: WARNING: ") and "hardware decoding" in rest
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), stamp
    when = datetime.datetime.fromisoformat(stamp)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 120
    journald = focusmon_run(*argv, env={**env, "JOURNAL_STREAM": "8:12345"}).stderr
    line = next(x for x in journald.splitlines() if "WARNING" in x)
    assert line.startswith("focusmon: WARNING: ")  # the journal stamps it itself
