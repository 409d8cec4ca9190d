"""Pipeline speed: decoding a 1080p H.264 clip with and without focusmon's scoring.

Makes a clip of real image content (scikit-image photographs, panned and zoomed, so the
encoder sees motion rather than a test pattern), then prints frames per second for:

* decode only: PyAV at its default (slice) threading and with frame threads on every
  core, touching nothing — the faster of the two is the ceiling the ratios refer to;
* focusmon's pipeline (decode thread + scoring thread, numba-cpu on one thread, all the
  measures);
* the same with PyAV's gray conversion instead of the luma plane view;
* a naive loop decoding and scoring on one thread;
* keyframes-only mode (clip frames covered per second, and frames analysed).

The runs take turns, round after round, and each row is the median of its rounds: this
machine's speed drifts by 10-20% over minutes, and turns keep a drift from favouring
whichever run came first. The ratio column divides by the faster decode-only median.

Run: ``python bench/bench_pipeline.py`` (``--quick`` for a shorter clip).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from focusmon import kernels  # noqa: E402
from focusmon.measures import score_frame  # noqa: E402
from focusmon.pipeline import score_source  # noqa: E402
from focusmon.source import LumaFrame, Source, SourceOptions, SourceState, open_source  # noqa: E402

from media import panned_clip  # noqa: E402

GOP = 50  # frames between keyframes of the clip


def decode_only(clip: Path, *, threaded: bool) -> int:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def pipeline(clip: Path, options: SourceOptions | None = None) -> int:
    with kernels.get("numba-cpu", threads=1) as backend:
        source = open_source(str(clip), options)
        for _ in score_source(source, backend):
            pass
    return source.stats.decoded


class GrayConvertingSource(Source):
    """The file source, but with PyAV's ``to_ndarray(format="gray")`` for the luma."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.name = str(path)

    def __iter__(self) -> Iterator[LumaFrame]:
        self._enter(SourceState.UP)
        with av.open(self.name) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if self.stopping:
                    return
                self.stats.decoded += 1
                yield LumaFrame(frame.to_ndarray(format="gray"), index, frame.time)


def pipeline_gray(clip: Path) -> int:
    with kernels.get("numba-cpu", threads=1) as backend:
        source = GrayConvertingSource(clip)
        for _ in score_source(source, backend):
            pass
    return source.stats.decoded


def naive_loop(clip: Path) -> int:
    """Decode and score on the same thread, as a first script would."""
    n = 0
    with kernels.get("numba-cpu", threads=1) as backend, av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            plane = frame.planes[0]
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            score_frame(backend, rows[:, : frame.width], n, frame.time)
            n += 1
    return n


def rates(
    runs: dict[str, Callable[[], int]], frames_in_clip: int, rounds: int
) -> dict[str, tuple[float, int]]:
    """Each run's median clip frames per second over ``rounds`` rounds of turns, and what
    its last run returned."""
    seen: dict[str, list[float]] = {name: [] for name in runs}
    results = dict.fromkeys(runs, 0)
    for k in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seen[name].append(frames_in_clip / (time.perf_counter() - start))
        print(f"round {k + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {name: (statistics.median(seen[name]), results[name]) for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 4 s clip, 3 rounds")
    parser.add_argument("--clip", type=Path, help="use this clip instead of making one")
    parser.add_argument("--rounds", type=int, help="rounds of turns (default 5; 3 quick)")
    args = parser.parse_args()
    seconds, rounds = (4.0, 3) if args.quick else (12.0, 5)
    rounds = args.rounds or rounds

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or panned_clip(Path(tmp) / "clip.mp4", seconds, gop=GOP)
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            total, size = sum(1 for _ in c.demux(s) if _.size), f"{s.width}x{s.height}"
        pipeline(clip)  # compile and cache the kernel, warm the page cache

        keyframes = SourceOptions(keyframes_only=True)
        runs = {
            "decode only, PyAV default (slice threads)": lambda: decode_only(clip, threaded=False),
            "decode only, frame threads": lambda: decode_only(clip, threaded=True),
            "focusmon pipeline, all measures": lambda: pipeline(clip),
            "same, PyAV gray conversion": lambda: pipeline_gray(clip),
            "naive loop, decode + score on one thread": lambda: naive_loop(clip),
            "keyframes only": lambda: pipeline(clip, keyframes),
        }
        measured = rates(runs, total, rounds)
    best = max(fps for name, (fps, _) in measured.items() if name.startswith("decode only"))
    rows = [(name, fps, "") for name, (fps, _) in measured.items()]
    decoded = measured["keyframes only"][1]
    rows[-1] = (rows[-1][0], rows[-1][1], f"{decoded} of {total} frames analysed")

    print(f"# Pipeline, {size} H.264 ({total} frames, GOP {GOP}), {rounds} rounds")
    print(f"# {len(os.sched_getaffinity(0))} cores, PyAV {av.__version__}\n")
    print("| run | clip frames/s | × best decode-only | note |")
    print("|---|---:|---:|---|")
    for name, fps, note in rows:
        print(f"| {name} | {fps:.0f} | {fps / best:.2f} | {note} |")


if __name__ == "__main__":
    main()
