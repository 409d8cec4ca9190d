"""Kernel speed: focusmon's backends against the recipes users would otherwise write.

Prints a Markdown table of the median milliseconds per frame for 640x480, 1920x1080 and
3840x2160 uint8 frames of real image content (scikit-image photographs, resized), and the
ratio of each peer to ``numba-cpu`` on one thread, all measured in the same run:

* plain recipes: OpenCV Laplacian variance + OpenCV Sobel magnitude on float64 images +
  PyWavelets Haar energy, as blog posts and the seed recipes write them;
* the same three tuned as well as OpenCV allows (16-bit stencils, ``meanStdDev``,
  float32 magnitude, Haar energy from an INTER_AREA 2x2 mean), OpenCV on one thread;
* the NumPy reference backend;
* focusmon's numba-cpu (1 and 2 threads) and numba-cuda where a GPU is usable;
* a 4x4 focus map (the frame and each tile, `Backend.focus_map`) against the tuned OpenCV
  trio on each tile's crop.

Configurations take turns, one call of each per round, so a slow moment hits them all.

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
from focusmon.kernels._frame import check_grid

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


def opencv_per_tile(g: np.ndarray, rows: int = 4, cols: int = 4) -> list:
    """A focus map as an OpenCV user writes it: the tuned trio on each tile's crop."""
    ys, xs = check_grid((rows, cols), g.shape)
    return [tuned_opencv(g[y0:y1, x0:x1]) for y0, y1 in zip(ys[:-1], ys[1:], strict=True)
            for x0, x1 in zip(xs[:-1], xs[1:], strict=True)]  # fmt: skip


def medians_ms(configs: dict[str, Callable[[], object]], repeat: int, budget_s: float):
    """Each configuration's median milliseconds, the configurations taking turns: one
    call of each per round, so that a slower moment of the machine hits them all."""
    for fn in configs.values():
        fn()  # warm up: compilation, buffers
    times: dict[str, list[float]] = {label: [] for label in configs}
    deadline = time.perf_counter() + budget_s * len(configs)
    rounds = 0
    while rounds < repeat and (rounds < 3 or time.perf_counter() < deadline):
        for label, fn in configs.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
        rounds += 1
    return {label: statistics.median(t) * 1e3 for label, t in times.items()}


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
    cpu, reference = backends["numba-cpu, 1 thread"], backends["numpy reference"]
    for size in args.sizes:
        g = frame_of_size(*SIZES[size])
        configs: dict[str, Callable[[], object]] = {
            "plain recipes (OpenCV f64 + PyWavelets)": lambda g=g: plain_recipes(g),
            "tuned OpenCV trio, 1 thread": lambda g=g: tuned_opencv(g),
        }
        for label, backend in backends.items():
            configs[label] = lambda b=backend, g=g: b.scores(g)
        # The focus map: the frame and each tile of a 4x4 grid, from the same pass.
        configs["4x4 map: tuned OpenCV trio per tile crop"] = lambda g=g: opencv_per_tile(g)
        configs["4x4 map: numpy reference"] = lambda g=g: reference.focus_map(g, (4, 4))
        configs["4x4 map: numba-cpu, 1 thread"] = lambda g=g: cpu.focus_map(g, (4, 4))
        if "numba-cuda" in backends:
            configs["4x4 map: numba-cuda"] = lambda g=g, b=backends["numba-cuda"]: b.focus_map(
                g, (4, 4)
            )
        rows[size] = medians_ms(configs, repeat, budget)

    labels = list(next(iter(rows.values())))
    sizes = list(rows)
    print("| ms per frame (median) | " + " | ".join(sizes) + " | vs numba-cpu 1 thread |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    ref = "numba-cpu, 1 thread"
    for label in labels:
        cells = [f"{rows[s][label]:.2f}" for s in sizes]
        ratio = ", ".join(f"{rows[s][label] / rows[s][ref]:.1f}x" for s in sizes)
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    cost = ", ".join(
        f"{s} {rows[s]['4x4 map: numba-cpu, 1 thread'] / rows[s][ref]:.2f}x" for s in sizes
    )
    print(f"\nthe 4x4 map against the frame alone, numba-cpu on 1 thread: {cost}")
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
