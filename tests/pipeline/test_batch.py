"""Many streams' frames scored together (the GPU path), hardware decoding and its fallback.

The batching logic is the same whatever the backend, so it is tested here on the CPU with a
backend that says it batches; the CUDA backend itself runs under Numba's simulator in
`test_watch_batches_on_the_cuda_backend_under_the_simulator`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from focusmon import ConfigError, kernels
from focusmon.cli import main
from focusmon.config import ServiceSettings, StreamSpec, WatchConfig, parse
from focusmon.kernels import MEASURES, BackendError
from focusmon.kernels._reference import NumpyBackend
from focusmon.pipeline import BatchScorer, Watcher
from focusmon.source import LumaFrame, SourceOptions, open_source

from media import h264_clip

HERE = Path(__file__).parent


class SpyBackend(NumpyBackend):
    """The NumPy backend, saying it batches, and logging what it is asked to do."""

    name = "spy"
    batches = True
    log: list[tuple[str, int]] = []
    delay_s = 0.0

    def _submit(self, views, scales, offsets, grids=None):
        pending = super()._submit(views, scales, offsets, grids)
        batch = len(SpyBackend.log)
        SpyBackend.log.append(("submit", len(views)))
        time.sleep(SpyBackend.delay_s)
        wait = pending.result

        def result():
            SpyBackend.log.append(("result", batch))
            return wait()

        return type(pending)(result)


@pytest.fixture
def spy(monkeypatch):
    SpyBackend.log, SpyBackend.delay_s = [], 0.0
    real_get, real_resolve, real_names = kernels.get, kernels.resolve, kernels.names
    monkeypatch.setattr(
        kernels,
        "get",
        lambda name="auto", **kw: SpyBackend() if name == "spy" else real_get(name, **kw),
    )
    monkeypatch.setattr(
        kernels,
        "resolve",
        lambda name="auto", **kw: ("spy", {}) if name == "spy" else real_resolve(name, **kw),
    )
    monkeypatch.setattr(kernels, "names", lambda: (*real_names(), "spy"))
    return SpyBackend


class FakeSource:
    def __init__(self):
        self.stats = type("Stats", (), {"analysed": 0})()


def frames_of(n: int, seed: int = 0) -> list[LumaFrame]:
    rng = np.random.default_rng(seed)
    shapes = [(24, 32), (17, 40), (30, 30), (5, 9)]
    return [
        LumaFrame(rng.integers(0, 255, shapes[i % 4], np.uint8, True), i, i / 25.0)
        for i in range(n)
    ]


def score_from_threads(scorer: BatchScorer, frames: list[LumaFrame], threads: int):
    """Each thread scores its share of ``frames``; all start together."""
    results: dict[int, object] = {}
    start = threading.Barrier(threads)
    sources = [FakeSource() for _ in range(threads)]

    def work(k: int) -> None:
        start.wait()
        for frame in frames[k::threads]:
            try:
                results[frame.index] = scorer.score(frame, None, sources[k])
            except Exception as exc:
                results[frame.index] = exc

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not any(w.is_alive() for w in workers)
    return results, sources


def test_frames_from_many_threads_are_scored_together_and_correctly(spy):
    scorer = BatchScorer("spy", max_frames=8, max_wait_s=0.02)
    frames = frames_of(48)
    try:
        results, sources = score_from_threads(scorer, frames, threads=6)
    finally:
        scorer.close()
    reference = kernels.get("numpy")
    for frame in frames:
        record = results[frame.index]
        assert record.index == frame.index and record.pts == frame.pts
        assert record.scores == reference.scores(frame.luma)
        assert record.kernel_ms >= 0
    assert sum(s.stats.analysed for s in sources) == 48
    sizes = [n for what, n in spy.log if what == "submit"]
    assert sum(sizes) == 48 and max(sizes) <= 8
    assert len(sizes) < 48, "frames waiting together must share a batch"
    assert scorer.frames == 48 and scorer.batches == len(sizes)


def test_the_next_batch_is_submitted_before_the_previous_results_are_read(spy):
    spy.delay_s = 0.05  # a slow submit: meanwhile the other frames arrive
    scorer = BatchScorer("spy", max_frames=2, max_wait_s=0.05)
    try:
        score_from_threads(scorer, frames_of(6), threads=6)
    finally:
        scorer.close()
    assert spy.log[:3] == [("submit", 2), ("submit", 2), ("result", 0)], spy.log
    assert [what for what, _ in spy.log].count("result") == 3


def test_a_lone_frame_is_not_held_for_a_next_batch(spy):
    scorer = BatchScorer("spy", max_frames=16, max_wait_s=0.001)
    try:
        frame = frames_of(1)[0]
        record = scorer.score(frame, None, FakeSource())
    finally:
        scorer.close()
    assert record.scores == kernels.get("numpy").scores(frame.luma)
    assert spy.log == [("submit", 1), ("result", 0)]


def test_a_bad_frame_fails_alone_and_a_bad_roi_is_a_config_error(spy):
    scorer = BatchScorer("spy", max_frames=8, max_wait_s=0.05)
    frames = frames_of(3)
    tiny = LumaFrame(np.zeros((2, 2), np.uint8), 99, None)
    try:
        results, _ = score_from_threads(scorer, [*frames, tiny], threads=4)
        with pytest.raises(ConfigError, match="roi"):
            scorer.score(frames[0], (20, 20, 50, 50), FakeSource())
    finally:
        scorer.close()
    assert isinstance(results[99], ConfigError) and "3x3" in str(results[99])
    assert all(results[f.index].scores.std > 0 for f in frames)
    with pytest.raises(ConfigError, match="closed"):
        scorer.score(frames[0], None, FakeSource())


class FaultyGpu(SpyBackend):
    """Batches as a GPU does, and faults (a sticky device error) from its second batch."""

    name = "numba-cuda"

    def _submit(self, views, scales, offsets, grids=None):
        pending = super()._submit(views, scales, offsets, grids)
        if len(SpyBackend.log) < 2:
            return pending
        return type(pending)(lambda: (_ for _ in ()).throw(BackendError("illegal address")))


def test_a_backend_fault_moves_the_batches_to_the_fallback_and_loses_no_frame(spy):
    asked = []

    def fall_back(name, exc):
        asked.append((name, str(exc)))
        return "numpy", {}

    scorer = BatchScorer(FaultyGpu(), max_frames=2, max_wait_s=0.02, fall_back=fall_back)
    frames = frames_of(12)
    try:
        results, sources = score_from_threads(scorer, frames, threads=3)
    finally:
        scorer.close()
    reference = kernels.get("numpy")
    for frame in frames:
        assert results[frame.index].scores == reference.scores(frame.luma), frame.index
    assert sum(s.stats.analysed for s in sources) == 12
    assert asked == [("numba-cuda", "illegal address")]  # asked once, whatever failed after
    assert scorer._backend.name == "numpy"


def test_without_a_fallback_a_backend_fault_fails_the_batch_not_the_scorer(spy):
    scorer = BatchScorer(FaultyGpu(), max_frames=1, max_wait_s=0.001)
    frames = frames_of(3)
    try:
        results = [scorer.score(f, None, FakeSource()) for f in frames[:1]]
        for frame in frames[1:]:
            with pytest.raises(BackendError, match="illegal address"):
                scorer.score(frame, None, FakeSource())
    finally:
        scorer.close()
    assert results[0].scores == kernels.get("numpy").scores(frames[0].luma)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"max_frames": 0}, "batch"), ({"max_wait_s": -1}, "batch_wait_s")],
)
def test_batch_settings_are_checked(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        BatchScorer("numpy", **kwargs)


def test_an_unknown_backend_fails_at_once():
    with pytest.raises(ConfigError, match="unknown backend"):
        BatchScorer("no-such-backend")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    return [h264_clip(folder / f"c{k}.mp4", 0.6, size=f"{64 + 16 * k}x48") for k in range(3)]


def test_the_watcher_batches_its_streams_and_loses_no_frame(spy, clips):
    specs = [StreamSpec(f"s{k}", str(c)) for k, c in enumerate(clips)]
    watcher = Watcher(WatchConfig(ServiceSettings(backend="spy", batch_wait_ms=20), specs))
    assert watcher._batch == 3  # one frame per stream, by default, on a batching backend
    watcher.start()
    assert watcher.wait(60)
    decoded = [s.source.stats.decoded for s in watcher.streams]
    analysed = [s.source.stats.analysed for s in watcher.streams]
    assert all(d > 0 for d in decoded) and analysed == decoded
    assert not any(s.error for s in watcher.streams)
    assert watcher.batcher.frames == sum(analysed)
    assert watcher.batcher.batches < sum(analysed)
    # The last record of each stream is its last frame, scored as on its own.
    for status, clip in zip(watcher.streams, clips, strict=True):
        with open_source(str(clip)) as source:
            last = list(source)[-1]
        assert status.last.scores == kernels.get("numpy").scores(
            last.luma, scale=last.scale, offset=last.offset
        )


def test_the_watcher_does_not_batch_a_cpu_backend_or_when_told_not_to(clips):
    specs = [StreamSpec(f"s{k}", str(c)) for k, c in enumerate(clips)]
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numpy"), specs))
    assert watcher._batch == 0
    watcher.close()
    with pytest.raises(ConfigError, match="batch"):
        Watcher(WatchConfig(ServiceSettings(backend="numpy", batch=-1), specs))


# -- hardware decoding ---------------------------------------------------------------------


def test_hwaccel_without_a_device_decodes_on_the_cpu_and_says_why_once(caplog, capsys, clips):
    caplog.set_level(logging.WARNING, "focusmon")
    assert main(["score", str(clips[0]), "--backend", "numpy"]) == 0
    plain = capsys.readouterr().out
    assert main(["score", str(clips[0]), "--backend", "numpy", "--hwaccel", "cuda"]) == 0
    assert capsys.readouterr().out == plain
    lines = [r.getMessage() for r in caplog.records if "hardware decoding" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "'cuda' is not available" in lines[0] and "decoding on the CPU" in lines[0]


def test_an_unknown_hwaccel_device_is_a_usage_error(capsys, clips):
    assert main(["score", str(clips[0]), "--hwaccel", "warp-drive"]) == 2
    err = capsys.readouterr().err
    assert "hwaccel" in err and "cuda" in err and "warp-drive" in err
    with pytest.raises(ConfigError, match="`hw_frames` needs `hwaccel`"):
        SourceOptions(hw_frames=True)


def test_a_missing_file_is_still_a_missing_file_with_hwaccel(tmp_path):
    from focusmon import SourceError

    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"), SourceOptions(hwaccel="cuda"))


def test_hw_frames_on_a_cpu_backend_come_to_host_memory(caplog, clips):
    caplog.set_level(logging.INFO, "focusmon")
    options = SourceOptions(hwaccel="cuda", hw_frames=True)
    specs = [StreamSpec("gpu", str(clips[0]), options=options)]
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numpy"), specs))
    watcher.start()
    assert watcher.wait(60)
    status = watcher.streams[0]
    assert status.error is None and status.source.stats.analysed > 0
    assert not status.source.options.hw_frames
    assert any("copied to host memory" in r.getMessage() for r in caplog.records)


def _watch_under_the_simulator(tmp_path, *args: int) -> str:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "cuda_sim_watch.py"), str(tmp_path), *map(str, args)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    streams = [line for line in proc.stdout.splitlines() if line.startswith("stream")]
    assert len(streams) == (args[0] if args else 2), proc.stdout
    for line in streams:
        assert all(f"{m} ok" in line for m in MEASURES), line
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_watch_batches_on_the_cuda_backend_under_the_simulator(tmp_path):
    """Two streams through the real Watcher on the CUDA backend (simulated): the frames go
    through BatchScorer, the batched kernel and its slots, and score as the reference."""
    out = _watch_under_the_simulator(tmp_path)
    assert "BATCHED" in out and "FELL BACK" not in out, out


@pytest.mark.slow
@pytest.mark.parametrize("streams", [2, 1], ids=["batched", "a backend per stream"])
def test_a_gpu_fault_moves_the_streams_to_the_cpu_and_loses_no_frame(tmp_path, streams):
    """The simulated GPU faults (an illegal address, sticky) at its third kernel: the error
    is said once, every stream goes on on the CPU backend, and every frame is scored (the
    failed batch again, on the CPU) as the reference scores it."""
    out = _watch_under_the_simulator(tmp_path, streams, 3)
    assert "FELL BACK to numba-cpu 1" in out, out
    assert out.count("backend numba-cuda failed") == 1, out
    assert "illegal memory access" in out, out


def test_gpu_first_run_says_there_is_no_gpu_here_and_checks_scores_under_the_simulator():
    """bench/gpu_first_run.py: one line and exit 0 without a GPU; under the simulator its
    score checks run (tiny frames) and pass, each a verdict line."""
    script = str(HERE.parents[1] / "bench" / "gpu_first_run.py")
    if kernels.available()["numba-cuda"] is not None:
        proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("no usable GPU here") and proc.stdout.count("\n") == 1
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(verdicts) == 6 and all(v.startswith("PASS") for v in verdicts), proc.stdout
    assert "6 of 6 checks passed" in proc.stdout


def test_bench_gpu_says_there_is_no_gpu_and_prints_nothing_else():
    if kernels.available()["numba-cuda"] is None:
        pytest.skip("a GPU is usable here: the bench measures instead")
    proc = subprocess.run(
        [sys.executable, str(HERE.parents[1] / "bench" / "bench_gpu.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("no usable GPU here"), proc.stdout
    assert "nothing to measure" in lines[0]


def test_batching_and_hardware_decoding_in_a_config_file():
    config = parse({
        "batch": 8, "batch_wait_ms": 2.5,
        "defaults": {"hwaccel": "cuda", "hw_frames": True},
        "streams": [{"source": "a.mp4"}, {"source": "b.mp4", "hw_frames": False}],
    })  # fmt: skip
    assert (config.service.batch, config.service.batch_wait_ms) == (8, 2.5)
    assert config.service == ServiceSettings(batch=8, batch_wait_ms=2.5)
    assert [s.options.hwaccel for s in config.streams] == ["cuda", "cuda"]
    assert [s.options.hw_frames for s in config.streams] == [True, False]
    with pytest.raises(ConfigError, match=r"streams\[0\].*hwaccel.*'nope'"):
        parse({"streams": [{"source": "a.mp4", "hwaccel": "nope"}]})
    with pytest.raises(ConfigError, match="batch must be an integer"):
        parse({"batch": "all", "streams": [{"source": "a.mp4"}]})


@pytest.mark.slow
def test_bench_gpu_runs_its_gpu_code_under_the_simulator():
    """The measuring half of bench_gpu.py (host batches in flight, device frames, the
    table), on tiny frames: what a machine with a GPU will run."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE.parents[1] / "bench" / "bench_gpu.py"), "--size", "40x24",
         "--batches", "2", "--rounds", "1", "--repeats", "1", "--no-decode"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "timings mean nothing" in out
    for row in ("| numba-cuda, host frames | 2 | 1 |", "| numba-cuda, host frames | 2 | 2 |",
                "| numba-cuda, frames on the GPU | 2 | 2 |", "| numba-cpu | 1 | 1 |"):  # fmt: skip
        assert row in out, out
