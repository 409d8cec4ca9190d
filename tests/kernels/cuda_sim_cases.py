"""Run by test_cuda.py in a process of its own, with NUMBA_ENABLE_CUDASIM=1.

Scores small frames (the simulator runs every GPU thread as a Python thread) with the CUDA
backend and compares each with the NumPy reference; prints one line per case and exits 1
on the first mismatch.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from focusmon import kernels
from focusmon.kernels import MEASURES, reference_scores


def cases():
    rng = np.random.default_rng(3)
    for shape in [(3, 3), (4, 5), (5, 4), (9, 40), (17, 33)]:
        for dtype in (np.uint8, np.uint16):
            top = np.iinfo(dtype).max
            yield f"random {shape} {dtype.__name__}", rng.integers(0, top, shape, dtype, True), {}
    plane = rng.integers(0, 255, (12, 48), np.uint8, True)
    yield "padded plane view", plane[:, :37], {}
    yield "roi", plane, {"roi": (5, 2, 20, 9)}
    yield "flat", np.full((6, 7), 200, np.uint8), {}
    board = (np.indices((8, 36)).sum(axis=0) % 2 * 65535).astype(np.uint16)
    yield "full-scale uint16 checkerboard", board, {}
    yield "scaled", plane, {"scale": 255 / 219, "offset": 16.0}


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    assert kernels.available()["numba-cuda"] is None
    checked = 0
    with kernels.get("numba-cuda") as backend:
        for name, frame, options in cases():
            got = backend.scores(frame, **options)
            want = kernels.get("numpy").scores(frame, **options)
            assert want == reference_scores(frame) or options
            for m in MEASURES:
                g, w = getattr(got, m), getattr(want, m)
                if not (np.isfinite(g) and abs(g - w) <= 1e-9 * abs(w) + 1e-12):
                    print(f"MISMATCH {name}: {m} cuda={g!r} numpy={w!r}")
                    return 1
            checked += 1
            print(f"ok {name}")
    print(f"CHECKED {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
