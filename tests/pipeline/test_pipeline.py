"""The decode thread, the hand-over queue and the scoring loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from focusmon import ConfigError, SourceError, kernels
from focusmon.pipeline import FrameQueue, iter_frames, score_source
from focusmon.source import LumaFrame, Source, open_source

from media import h264_clip


def frame(i: int) -> LumaFrame:
    return LumaFrame(np.full((4, 4), i % 256, np.uint8), i, i / 25)


class FakeSource(Source):
    """Frames as fast as a generator makes them; optionally live, optionally failing."""

    def __init__(self, n: int, *, live: bool, fail_at: int | None = None) -> None:
        super().__init__()
        self.name, self.live, self.n, self.fail_at = "fake", live, n, fail_at
        self.closed = threading.Event()

    def __iter__(self):
        for i in range(self.n):
            if self.stopping:
                return
            if i == self.fail_at:
                raise SourceError(f"fake failure at {i}")
            self.stats.decoded += 1
            time.sleep(0.001)
            yield frame(i)

    def close(self) -> None:
        super().close()
        self.closed.set()


def test_queue_drops_the_oldest_when_asked_and_counts():
    drops = []
    q = FrameQueue(2, drop_oldest=True, on_drop=lambda: drops.append(1))
    for i in range(5):
        assert q.put(frame(i))
    q.close()
    assert [q.get().index, q.get().index, q.get()] == [3, 4, None]
    assert len(drops) == 3


def test_queue_without_dropping_makes_the_producer_wait():
    q = FrameQueue(1, drop_oldest=False)
    q.put(frame(0))
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(frame(1)), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # blocked: the queue is full
    assert q.get().index == 0
    assert done.wait(5) and q.get().index == 1
    with pytest.raises(TimeoutError):
        q.get(timeout=0.05)


def test_queue_hands_over_the_producers_error_after_its_frames():
    q = FrameQueue(4, drop_oldest=False)
    q.put(frame(0))
    q.close(SourceError("boom"))
    assert q.get().index == 0
    with pytest.raises(SourceError, match="boom"):
        q.get()
    assert not q.put(frame(1))  # closed: the producer is told to stop


def test_a_file_never_drops_even_for_a_slow_consumer(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    got = []
    for f in iter_frames(open_source(str(clip))):
        got.append(f.index)
        time.sleep(0.01)
    assert got == list(range(25))


def test_a_live_source_keeps_the_newest_frame_and_counts_the_rest():
    source = FakeSource(300, live=True)
    got = []
    for f in iter_frames(source):
        got.append(f.index)
        time.sleep(0.02)
    assert got == sorted(got) and got[-1] == 299  # the newest always comes through
    assert source.stats.dropped > 100
    assert source.stats.dropped + len(got) == source.stats.decoded == 300


def test_a_decoder_error_reaches_the_consumer_after_the_frames_before_it():
    got = []
    with pytest.raises(SourceError, match="fake failure at 3"):
        for f in iter_frames(FakeSource(10, live=False, fail_at=3)):
            got.append(f.index)
    assert got == [0, 1, 2]


@pytest.mark.parametrize(
    "start", [iter_frames, lambda source: score_source(source, kernels.get("numpy"))],
    ids=["iter_frames", "score_source"],
)  # fmt: skip
def test_stopping_early_ends_the_decode_thread_and_closes_the_source(start):
    before = threading.active_count()
    source = FakeSource(10_000, live=False)
    items = start(source)
    assert next(items).index == 0
    items.close()
    assert source.closed.is_set()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert source.stats.decoded < 100


def test_score_source_counts_and_stops_after_max_frames():
    source = FakeSource(50, live=False)
    backend = kernels.get("numpy")
    records = list(score_source(source, backend, max_frames=7))
    assert [r.index for r in records] == list(range(7))
    assert source.stats.analysed == 7
    assert records[3].scores == kernels.reference_scores(frame(3).luma)
    with pytest.raises(ConfigError, match="max_frames"):
        list(score_source(FakeSource(1, live=False), backend, max_frames=0))
    with pytest.raises(ConfigError, match="roi"):
        list(score_source(FakeSource(1, live=False), backend, roi=(0, 0, 9, 9)))


def test_a_scoring_error_reaches_the_caller_after_the_records_before_it():
    source = FakeSource(10, live=False, fail_at=4)
    got = []
    with pytest.raises(SourceError, match="fake failure at 4"):
        for record in score_source(source, kernels.get("numpy")):
            got.append(record.index)
    assert got == [0, 1, 2, 3] and source.stats.analysed == 4
