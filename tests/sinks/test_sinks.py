"""The sinks behind the `Sink` protocol: the log line, the events file, saved frames."""

from __future__ import annotations

import json
import logging
import os
import time

import cv2
import numpy as np
import pytest

from focusmon.kernels import FocusScores
from focusmon.scheduler import CONNECTING, AlertState, BestFrame, StateChange
from focusmon.sinks import (
    BaseSink,
    EventWriter,
    FrameSaver,
    MetricsEndpoint,
    Sink,
    StateLog,
    safe_name,
)

SCORES = FocusScores(1.0, 2.0, 3.0, 4.0, 100.0, 20.0)


def change(state="blurred", previous="ok", *, live=False, time_s=5.0, stream="door"):
    return StateChange(stream, time_s, AlertState(state), previous, 0.21, 0.93, live)


def best(stream="door", index=0, luma=None):
    luma = np.full((8, 10), index % 250, np.uint8) if luma is None else luma
    return BestFrame(stream, index, index / 10, SCORES, 0.5, luma)


def test_every_sink_is_a_sink(tmp_path):
    sinks = [StateLog(), EventWriter(str(tmp_path / "e.jsonl")), FrameSaver(tmp_path)]
    sinks.append(MetricsEndpoint("127.0.0.1", 0))
    try:
        assert all(isinstance(sink, Sink) for sink in sinks)
        assert [sink.wants_best for sink in sinks] == [False, False, True, False]
    finally:
        for sink in sinks:
            sink.close()
    assert isinstance(BaseSink(), Sink)


def test_the_log_line_reads_as_a_person_would_say_it(caplog):
    caplog.set_level(logging.INFO, "focusmon")
    log = StateLog()
    log.on_change(change(live=True, time_s=1795985635.77))
    log.on_change(change(live=False, time_s=5.0))
    log.on_change(change("no_signal", CONNECTING, live=True))
    log.on_change(change("ok", "no_signal", live=True))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "door: ok -> blurred (score 0.21, baseline 0.93)"),  # no Unix time
        (logging.WARNING, "door: ok -> blurred at 5.00 s (score 0.21, baseline 0.93)"),
        (logging.WARNING, "door: connecting -> no_signal (score 0.21, baseline 0.93)"),
        (logging.INFO, "door: no_signal -> ok (score 0.21, baseline 0.93)"),
    ]


def test_events_are_json_lines_with_the_states_as_names(tmp_path):
    path = tmp_path / "e.jsonl"
    writer = EventWriter(str(path))
    writer.on_change(change(live=True, time_s=1795985635.77))
    writer.on_change(change("no_signal", CONNECTING))
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"stream": "door", "time": 1795985635.77, "state": "blurred", "previous": "ok",
         "score": 0.21, "baseline": 0.93},
        {"stream": "door", "time": 5.0, "state": "no_signal", "previous": "connecting",
         "score": 0.21, "baseline": 0.93},
    ]  # fmt: skip


def test_the_events_file_follows_logrotate_without_copytruncate(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(str(path))
    writer.on_change(change(time_s=1.0))
    os.rename(path, tmp_path / "events.jsonl.1")  # logrotate's default: move, then create
    writer.on_change(change(time_s=2.0))
    (tmp_path / "events.jsonl").rename(tmp_path / "events.jsonl.2")  # and again
    path.write_text("")  # `create`: logrotate makes the new file itself
    writer.on_change(change(time_s=3.0))
    writer.close()

    def times(name):
        return [json.loads(line)["time"] for line in (tmp_path / name).read_text().splitlines()]

    assert times("events.jsonl.1") == [1.0]  # nothing more went to the moved file
    assert times("events.jsonl.2") == [2.0]
    assert times("events.jsonl") == [3.0]


def test_an_events_file_that_cannot_be_reopened_says_so_and_recovers(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    writer = EventWriter(str(folder / "e.jsonl"))
    writer.on_change(change(time_s=1.0))
    (folder / "e.jsonl").rename(tmp_path / "moved.jsonl")
    folder.rmdir()  # the folder is gone: the next event cannot be written ...
    with pytest.raises(OSError):
        writer.on_change(change(time_s=2.0))
    folder.mkdir()  # ... and once it is back, events go on
    writer.on_change(change(time_s=3.0))
    writer.close()
    assert [json.loads(x)["time"] for x in (folder / "e.jsonl").read_text().splitlines()] == [3.0]


def test_best_keep_bounds_each_streams_frames_and_leaves_the_others(tmp_path):
    (tmp_path / "door_00000001.png").write_bytes(b"an earlier run's frame")
    (tmp_path / "door_00000001.json").write_text("{}")
    os.utime(tmp_path / "door_00000001.png", (1, 1))  # the oldest
    os.utime(tmp_path / "door_00000001.json", (1, 1))
    (tmp_path / "notes.txt").write_text("not ours")
    saver = FrameSaver(tmp_path, keep=2)
    for index in (10, 20, 30):
        saver.on_best(best("door", index))
        time.sleep(0.01)  # distinct modification times
    saver.on_best(best("door_2", 5))  # a stream whose name starts alike is another stream
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "door_00000020.json", "door_00000020.png", "door_00000030.json", "door_00000030.png",
        "door_2_00000005.json", "door_2_00000005.png", "notes.txt",
    ]  # fmt: skip
    sidecar = json.loads((tmp_path / "door_00000030.json").read_text())
    assert sidecar == {"stream": "door", "index": 30, "time": 3.0, **SCORES.as_dict()}
    with pytest.raises(ValueError, match="best_keep"):
        FrameSaver(tmp_path, keep=0)


def test_best_keep_never_follows_a_planted_link(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep me")
    folder = tmp_path / "best"
    folder.mkdir()
    (folder / "door_00000001.png").symlink_to(outside)
    os.utime(folder / "door_00000001.png", (1, 1), follow_symlinks=False)
    saver = FrameSaver(folder, keep=1)
    saver.on_best(best("door", 7))
    assert outside.read_bytes() == b"keep me"  # the link went, not what it pointed to
    assert sorted(p.name for p in folder.iterdir()) == ["door_00000007.json", "door_00000007.png"]


def test_sinks_keep_to_their_folder_and_to_finite_numbers(tmp_path):
    assert safe_name("door-1.a") == "door-1.a"  # a clean name is kept as it is
    assert safe_name("../../etc/passwd").startswith("etc_passwd-")
    assert safe_name("..").startswith("stream-")
    assert safe_name("rtsp://***@cam/1").startswith("rtsp_cam_1-")
    names = ["cam/1", "cam 1", "cam_1", "cam:1", "../cam_1"]  # alike once cleaned up
    assert len({safe_name(n) for n in names}) == len(names)
    saver = FrameSaver(tmp_path / "out")
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    path = saver.save("../x", 3, 0.5, deep, {"std": 1.0})
    assert path.parent == (tmp_path / "out").resolve() and path.suffix == ".tif"
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), deep)
    writer = EventWriter(str(tmp_path / "e.jsonl"))
    with pytest.raises(ValueError, match="finite"):
        writer.write({"score": float("nan")})
    writer.close()
