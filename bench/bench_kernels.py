"""Kernel speed: focusmon's backends against the recipes users would otherwise write.

Prints a Markdown table of the median milliseconds per frame for 640x480, 1920x1080 and
3840x2160 uint8 frames of real image content (scikit-image photographs, resized), and the
ratio of each peer to ``numba-cpu`` on one thread, all measured in the same run:

* plain recipes: OpenCV Laplacian variance + OpenCV Sobel magnitude on float64 images +
  PyWavelets Haar energy, as blog posts and the seed recipes write them;
* the same three tuned as well as OpenCV allows (16-bit stencils, ``meanStdDev``,
  float32 magnitude, Haar energy from an INTER_AREA 2x2 mean), OpenCV on one thread;
* the NumPy reference backend;
* focusmon's numba-cpu (1 and 2 threads) and numba-cuda where a GPU is usable.

Run: ``python bench/bench_kernels.py`` (``--quick`` for fewer repetitions).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import pywt
import skimage.data

from focusmon import kernels

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}


def frame_of_size(width: int, height: int) -> np.ndarray:
    """Real image content at the given size: two photographs side by side, resized."""
    a = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    b = skimage.data.camera()
    both = np.hstack([a, b])
    return cv2.resize(both, (width, height), interpolation=cv2.INTER_CUBIC)


def plain_recipes(g: np.ndarray) -> tuple[float, float, float]:
    f = g.astype(np.float64)
    lap = cv2.Laplacian(f, cv2.CV_64F).var()
    gx = cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3)
    sobel = float(np.mean(np.sqrt(gx**2 + gy**2)))
    ll, (lh, hl, hh) = pywt.dwt2(f, "haar")
    haar = float(((lh**2).sum() + (hl**2).sum() + (hh**2).sum()) / ll.size)
    return lap, sobel, haar


def tuned_opencv(g: np.ndarray) -> tuple[float, float, float]:
    _, sd = cv2.meanStdDev(cv2.Laplacian(g, cv2.CV_16S))
    gx = cv2.Sobel(g, cv2.CV_16S, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_16S, 0, 1, ksize=3)
    mag = cv2.magnitude(gx.astype(np.float32), gy.astype(np.float32))
    sobel = cv2.mean(mag)[0]
    # Haar detail energy = sum(g^2) - 4 * sum(mean of each 2x2 block ^ 2) (Parseval).
    h2, w2 = g.shape[0] // 2 * 2, g.shape[1] // 2 * 2
    f = g[:h2, :w2].astype(np.float32)
    ll = cv2.resize(f, (w2 // 2, h2 // 2), interpolation=cv2.INTER_AREA)
    haar = (cv2.norm(f, cv2.NORM_L2SQR) - 4 * cv2.norm(ll, cv2.NORM_L2SQR)) / ll.size
    return float(sd[0, 0] ** 2), sobel, haar


def median_ms(fn: Callable[[], object], repeat: int, budget_s: float) -> float:
    fn()  # warm up: compilation, buffers
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeat and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    repeat, budget = (7, 2.0) if args.quick else (31, 8.0)
    cv2.setNumThreads(1)

    backends: dict[str, kernels.Backend] = {
        "numba-cpu, 1 thread": kernels.get("numba-cpu", threads=1),
        "numba-cpu, 2 threads": kernels.get("numba-cpu", threads=2),
        "numpy reference": kernels.get("numpy"),
    }
    if kernels.available()["numba-cuda"] is None:
        backends["numba-cuda"] = kernels.get("numba-cuda")
    print(f"machine: {platform.processor() or platform.machine()}, {_cpu_name()}")
    print(f"numba-cuda: {kernels.available()['numba-cuda'] or 'available'}\n")

    rows: dict[str, dict[str, float]] = {}
    for size in args.sizes:
        g = frame_of_size(*SIZES[size])
        col = rows.setdefault(size, {})
        col["plain recipes (OpenCV f64 + PyWavelets)"] = median_ms(
            lambda g=g: plain_recipes(g), repeat, budget
        )
        col["tuned OpenCV trio, 1 thread"] = median_ms(lambda g=g: tuned_opencv(g), repeat, budget)
        for label, backend in backends.items():
            col[label] = median_ms(lambda b=backend, g=g: b.scores(g), repeat, budget)

    labels = list(next(iter(rows.values())))
    sizes = list(rows)
    print("| ms per frame (median) | " + " | ".join(sizes) + " | vs numba-cpu 1 thread |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    ref = "numba-cpu, 1 thread"
    for label in labels:
        cells = [f"{rows[s][label]:.2f}" for s in sizes]
        ratio = ", ".join(f"{rows[s][label] / rows[s][ref]:.1f}x" for s in sizes)
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    for backend in backends.values():
        backend.close()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
