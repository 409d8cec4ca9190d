"""GPU throughput: frames per second per backend and batch size, on a machine with a GPU.

On a machine without a usable GPU it prints one line saying so (and why) and nothing else:
there is nothing to measure, and no figure is made up.

With a GPU, all in one run, on 1920x1080 uint8 frames of real image content:

* ``numba-cuda`` given frames in host memory (as a CPU decoder delivers them), in batches of
  1, 4, 16 and 64 frames, one batch in flight and two (the copy of one overlapping the
  kernel of the other, as the watcher's batch scorer runs it);
* ``numba-cuda`` given frames already on the GPU (as NVDEC leaves them with ``hw_frames``);
* ``numba-cpu`` (one thread) and the NumPy reference on the same frames, for the ratios;
* where PyAV decodes on the GPU here: an H.264 clip decoded on the GPU and scored there,
  against CPU decoding and ``numba-cpu`` scoring, end to end.

Run: ``python bench/bench_gpu.py`` (``--quick`` for fewer repetitions). Under Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, with ``--size 40x24 --batches 2 --rounds 1 --repeats 1
--no-decode``) it runs the same code on tiny frames, as the tests do, and says that its
timings mean nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from focusmon import kernels

BATCHES = (1, 4, 16, 64)
WIDTH, HEIGHT = 1920, 1080


def frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Real image content (bench_kernels' frame), shifted so no two frames are equal."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_kernels import frame_of_size

    base = frame_of_size(width, height)
    return [np.roll(base, 7 * k, axis=1) for k in range(n)]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def fps(run, frames_per_call: int, repeats: int) -> float:
    run()  # compile, allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return frames_per_call / statistics.median(times)


def host_batches(backend, batch: list[np.ndarray], in_flight: int, rounds: int):
    """``rounds`` batches, with up to ``in_flight`` submitted before the oldest is read."""

    def run() -> None:
        pending = []
        for _ in range(rounds):
            pending.append(backend.submit(batch))
            if len(pending) >= in_flight:
                pending.pop(0).result()
        for p in pending:
            p.result()

    return run


def decode_rows(repeats: int) -> list[tuple[str, float]]:
    """End to end: a 1080p H.264 clip decoded on the GPU and scored there, against CPU."""
    from focusmon.source import SourceOptions, open_source

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25", "-t", "8", "-c:v", "libx264",
             "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)],
            check=True,
        )  # fmt: skip
        rows = []
        setups = [
            ("CPU decode, numba-cpu", SourceOptions(), "numba-cpu"),
            ("GPU decode to host, numba-cuda", SourceOptions(hwaccel="cuda"), "numba-cuda"),
            (
                "GPU decode, frames stay on GPU, numba-cuda",
                SourceOptions(hwaccel="cuda", hw_frames=True),
                "numba-cuda",
            ),
        ]
        for label, options, name in setups:
            with kernels.get(name) as backend:
                best = 0.0
                for _ in range(repeats):
                    start = time.perf_counter()
                    n = 0
                    with open_source(str(clip), options) as source:
                        for frame in source:
                            backend.scores(frame.luma, scale=frame.scale, offset=frame.offset)
                            n += 1
                    best = max(best, n / (time.perf_counter() - start))
            rows.append((label, best))
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--size", type=_size, default=(WIDTH, HEIGHT), metavar="WxH")
    parser.add_argument(
        "--batches", default=",".join(map(str, BATCHES)), metavar="N,N",
        help="batch sizes (default 1,4,16,64)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=8, help="batches per timed run")
    parser.add_argument("--repeats", type=int, help="timed runs per row (default 10, --quick 3)")
    parser.add_argument("--no-decode", action="store_true", help="kernel rows only")
    args = parser.parse_args()
    why = kernels.available()["numba-cuda"]
    if why is not None:
        print(f"no usable GPU here ({why}): nothing to measure")
        return 0
    from numba import cuda

    width, height = args.size
    batches = [int(b) for b in args.batches.split(",")]
    repeats = args.repeats or (3 if args.quick else 10)
    pool = frames(max(batches), width, height)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("simulated GPU (NUMBA_ENABLE_CUDASIM=1): this checks that the bench runs; "
              "its timings mean nothing")  # fmt: skip
    device = getattr(cuda.get_current_device(), "name", "the simulator")
    device = device.decode() if isinstance(device, bytes) else device
    print(f"GPU: {device}; frames {width}x{height} uint8; median of {repeats} runs\n")
    print("| backend | batch | in flight | frames/s | ms/frame |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    rounds = args.rounds
    with kernels.get("numba-cuda") as gpu:
        for size in batches:
            for in_flight in (1, 2):
                rate = fps(
                    host_batches(gpu, pool[:size], in_flight, rounds), rounds * size, repeats
                )
                rows.append(("numba-cuda, host frames", size, in_flight, rate))
        size = min(16, max(batches))
        on_device = [cuda.to_device(f) for f in pool[:size]]
        rate = fps(host_batches(gpu, on_device, 2, rounds), rounds * size, repeats)
        rows.append(("numba-cuda, frames on the GPU", size, 2, rate))
    for cpu in ("numba-cpu", "numpy"):
        with kernels.get(cpu) as backend:
            rate = fps(lambda b=backend: [b.scores(f) for f in pool[:4]], len(pool[:4]), repeats)
            rows.append((cpu, 1, 1, rate))
    for label, size, in_flight, rate in rows:
        print(f"| {label} | {size} | {in_flight} | {rate:,.0f} | {1e3 / rate:.3f} |")
    cpu_rate = next(r for label, *_, r in rows if label == "numba-cpu")
    best = max(r for label, *_, r in rows if label.startswith("numba-cuda, host"))
    print(f"\nbest numba-cuda (host frames) / numba-cpu: {best / cpu_rate:.1f}x")
    if args.no_decode:
        return 0
    try:
        decoded = decode_rows(2 if args.quick else 3)
    except Exception as exc:  # no NVDEC, no ffmpeg CLI: the kernel rows stand alone
        print(f"\n(decode rows skipped: {exc})")
        return 0
    print("\n| end to end, 8 s 1080p H.264 | frames/s |\n|---|---:|")
    for label, rate in decoded:
        print(f"| {label} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
