"""The stream history: records and small frames in memory allocated once; the best of
any recent window equals the brute-force best over the same records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focusmon.kernels import MEASURES, FocusScores
from focusmon.scheduler import StreamHistory
from focusmon.scheduler._history import STATE_NAMES


def scores(v: float) -> FocusScores:
    return FocusScores(v, 2 * v, 3.0, 4.0, 100.0, 20.0, 0.5)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=400),
    values=st.lists(st.floats(0.0, 10.0), min_size=400, max_size=400),
    window=st.floats(0.05, 30.0),
)
def test_the_best_of_a_window_is_the_brute_force_best_of_the_records(steps, values, window):
    history = StreamHistory(history_s=20.0, max_rate=10.0)
    t, pushed = 0.0, []
    for k, (dt, v) in enumerate(zip(steps, values, strict=False)):
        t += dt
        history.push(k, t, scores(v), v)
        pushed.append((k, t, v))
    got = history.records()
    kept = list(zip(got["index"].tolist(), got["time"].tolist(), got["score"].tolist(),
                    strict=True))  # fmt: skip
    assert kept and len(kept) <= math.ceil(20.0 * 10.0) + 1
    # Each kept record is the sharpest pushed in its slot (a tenth of a second), the first
    # of equals; and the slots are in time order.
    for index, time_s, value in kept:
        slot = [p for p in pushed if math.floor(p[1] * 10.0) == math.floor(time_s * 10.0)]
        assert value == max(p[2] for p in slot) and (index, time_s, value) in slot
    end = kept[-1][1]
    inside = [r for r in kept if r[1] >= end - window]
    index, time_s, value = history.best(window)
    assert value == max(r[2] for r in inside)
    assert (index, time_s) == next((i, t) for i, t, v in inside if v == value)
    assert np.array_equal(got["tenengrad"], 2 * got["score"]) and set(MEASURES) <= set(got)


def test_records_older_than_the_history_drop_out_and_states_are_kept():
    history = StreamHistory(history_s=2.0, max_rate=5.0)
    for k in range(100):  # 10 s at 10 records a second: two per slot of 0.2 s
        history.push(k, k / 10, scores(float(k % 7)), float(k % 7),
                     "blurred" if k >= 95 else "ok")  # fmt: skip
    got = history.records()
    assert len(history) == len(got["time"]) == 11  # 2 s x 5 a second, and the newest
    assert got["time"][-1] == pytest.approx(9.9) and got["time"][0] >= 7.8
    assert STATE_NAMES[got["state"][-1]] == "blurred" and STATE_NAMES[got["state"][0]] == "ok"
    assert history.records(0.5)["time"].size == 3
    history.push(200, 1.0, scores(99.0), 99.0)  # from the past: ignored
    assert history.best(100.0)[2] < 99


def test_frames_are_copied_only_when_the_sharpest_of_their_slot():
    history = StreamHistory(frames_s=2.0, frame_rate=2.0)  # five frames, two a second
    assert history.latest_frame() is None and history.best_frame(5.0) is None
    made = 0
    for k in range(40):  # 4 s at 10 frames a second
        t, v = k / 10, float((k * 37) % 11)
        if history.wants_frame(t, v):
            made += 1
            history.keep_frame(k, t, v, np.full((6, 8), k, np.uint8))
    assert made < 40
    frames = history.frames()
    assert len(frames) == 5 and [f.time for f in frames] == sorted(f.time for f in frames)
    for f in frames:  # the sharpest of its half second, and its own pixels
        slot = [k for k in range(40) if math.floor(k / 10 * 2) == math.floor(f.time * 2)]
        assert f.score == max((k * 37) % 11 for k in slot) and (f.pixels == f.index).all()
    best = history.best_frame(1.0)
    assert best.score == max(f.score for f in frames if f.time >= frames[-1].time - 1.0)
    before = history.best_frame(10.0, before=frames[-1].time)
    assert before.time < frames[-1].time
    best.pixels[:] = 255  # a copy: the history's own frame is untouched
    assert (history.best_frame(1.0).pixels == best.index).all()
    history.keep_frame(99, 10.0, 1.0, np.zeros((3, 3), np.uint8))  # a new size: anew
    assert [f.index for f in history.frames()] == [99]
    with pytest.raises(ValueError, match="uint8"):
        history.keep_frame(100, 11.0, 1.0, np.zeros((3, 3), np.uint16))


def test_the_history_writes_into_the_arrays_it_was_made_with():
    history = StreamHistory(history_s=1.0, max_rate=10.0, frames_s=1.0, frame_rate=2.0)
    history.keep_frame(0, 0.0, 1.0, np.zeros((4, 6), np.uint8))
    arrays = [history._time, history._index, history._score, history._values, history._frames]
    for k in range(200):
        history.push(k, k / 10, scores(float(k)), float(k))
        history.keep_frame(k, k / 10, float(k), np.full((4, 6), k % 256, np.uint8))
    same = [history._time, history._index, history._score, history._values, history._frames]
    assert all(a is b for a, b in zip(arrays, same, strict=True))
    assert history.records()["index"].tolist() == list(range(189, 200))


def test_bad_settings_are_refused():
    for bad in ({"history_s": 0}, {"max_rate": math.nan}, {"frames_s": -1}):
        with pytest.raises(ValueError):
            StreamHistory(**bad)
