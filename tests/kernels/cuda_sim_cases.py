"""Run by test_cuda.py in a process of its own, with NUMBA_ENABLE_CUDASIM=1.

Scores small frames (the simulator runs every GPU thread as a Python thread) with the CUDA
backend and compares each with the NumPy reference; prints one line per case and exits 1
on the first mismatch.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from numba import cuda

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


def batches():
    """Batches as the pipeline makes them: mixed sizes and sample types, ROIs, frames
    already on the device, and more batches in flight than the backend has slots."""
    rng = np.random.default_rng(5)
    shapes = [(3, 3), (9, 40), (33, 31), (17, 65), (4, 5)]
    frames = [
        rng.integers(0, np.iinfo(t).max, s, t, True)
        for s, t in zip(shapes, (np.uint8, np.uint16, np.uint8, np.uint8, np.uint16), strict=True)
    ]
    yield "mixed sizes and types", frames, {}
    rois = [None, (1, 2, 30, 6), (5, 5, 20, 20), None, (0, 1, 5, 3)]
    scales = [1.0, 255 / 65535, 255 / 219, 1.0, 2.0]
    offsets = [0.0, 0.0, 16.0, 0.0, 1.0]
    yield "rois and units", frames, {"rois": rois, "scales": scales, "offsets": offsets}
    on_device = [cuda.to_device(f) for f in frames[:3]]
    yield "device frames", [on_device[0], frames[3], on_device[1], on_device[2]], {}
    yield "device frame roi", [on_device[2]], {"rois": [(4, 3, 25, 17)]}


def check(name: str, got, want) -> bool:
    for m in MEASURES:
        g, w = getattr(got, m), getattr(want, m)
        if not (np.isfinite(g) and abs(g - w) <= 1e-9 * abs(w) + 1e-12):
            print(f"MISMATCH {name}: {m} cuda={g!r} numpy={w!r}")
            return False
    return True


def host(frame):
    return frame if isinstance(frame, np.ndarray) else frame.copy_to_host()


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    assert kernels.available()["numba-cuda"] is None
    checked = 0
    with kernels.get("numba-cuda") as backend:
        for name, frame, options in cases():
            got = backend.scores(frame, **options)
            want = kernels.get("numpy").scores(frame, **options)
            assert want == reference_scores(frame) or options
            if not check(name, got, want):
                return 1
            checked += 1
            print(f"ok {name}")
        # Focus maps: each tile a part of its own, the same as the reference's.
        rng = np.random.default_rng(9)
        maps = [((37, 70), (3, 4), np.uint8), ((33, 33), (2, 2), np.uint16),
                ((7, 9), (3, 4), np.uint8), ((40, 64), (4, 1), np.uint8)]  # fmt: skip
        for shape, grid, dtype in maps:
            frame = rng.integers(0, np.iinfo(dtype).max, shape, dtype, True)
            got = backend.focus_map(frame, grid)
            want = kernels.get("numpy").focus_map(frame, grid)
            if (got.ys, got.xs) != (want.ys, want.xs) or not check("map", got.frame, want.frame):
                return 1
            for r, row in enumerate(got.tiles):
                for c, tile in enumerate(row):
                    if not check(f"map {shape} {grid} tile {r},{c}", tile, want.tiles[r][c]):
                        return 1
                    checked += 1
            print(f"ok focus map {shape} {grid} {dtype.__name__}")
        # Submitted before any result is read: the third batch reuses the first's slot.
        numpy = kernels.get("numpy")
        in_flight = [
            (name, lumas, opts, backend.submit(lumas, **opts)) for name, lumas, opts in batches()
        ]
        for name, lumas, opts, pending in in_flight:
            n = len(lumas)
            rois = opts.get("rois", [None] * n)
            scales, offsets = opts.get("scales", [1.0] * n), opts.get("offsets", [0.0] * n)
            got = pending.result()
            assert len(got) == n
            for i, luma in enumerate(lumas):
                want = numpy.scores(host(luma), roi=rois[i], scale=scales[i], offset=offsets[i])
                if not check(f"{name} [{i}]", got[i], want):
                    return 1
                checked += 1
            print(f"ok batch {name}")
        for bad, error in (
            (np.zeros((2, 9), np.uint8), ValueError),
            (np.zeros((4, 4), np.int32), TypeError),
        ):
            try:
                backend.submit([np.zeros((5, 5), np.uint8), bad])
            except error as exc:
                print(f"ok refused: {exc}")
            else:
                print(f"NOT REFUSED {bad.shape} {bad.dtype}")
                return 1
    print(f"CHECKED {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
