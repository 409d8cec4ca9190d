"""Run by test_cuda.py in a process of its own, with NUMBA_ENABLE_CUDASIM=1.

Scores small frames (the simulator runs every GPU thread as a Python thread) with the CUDA
backend and compares each with the NumPy reference: every field of `FocusScores`, of the
frame and of each focus-map tile, and the kernel's raw sums with the reference's maps
summed exactly. Prints one line per case and exits 1 on the first mismatch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields

import numpy as np
from numba import cuda

from focusmon import kernels
from focusmon.kernels import FocusMap, FocusScores, RawSums, reference_scores, rescale
from focusmon.kernels._frame import check_grid, saturation_level
from focusmon.kernels._reference import _maps, reference_map

#: Every field of `FocusScores`, the direction energies and the saturated share included.
FIELDS = tuple(f.name for f in fields(FocusScores))
#: Fields the reference computes exactly too (exact integer or quarter-integer terms,
#: summed exactly in float64 and divided once): the kernel's must be equal, not close. The
#: reference's variances (``var``, ``std``) and magnitudes round differently: 1e-9.
EXACT = ("tenengrad", "haar_energy", "mean", "saturated", "detail_x", "detail_y", "detail_xy")
LIMITED = {"scale": 255 / 219, "offset": 16.0}  # limited range: saturated from 235
TEN_BIT = {"scale": 255 / 1023}  # 10-bit samples in uint16: saturated from 1023


def only_y(s: FocusScores) -> bool:
    """Detail only down the frame (horizontal stripes)."""
    return s.detail_x == 0.0 and s.detail_xy == 0.0 and s.detail_y > 0


def only_x(s: FocusScores) -> bool:
    """Detail only across the frame (vertical stripes)."""
    return s.detail_y == 0.0 and s.detail_xy == 0.0 and s.detail_x > 0


def saturated(share: float, above: float):
    """The saturated share is ``share``, more than ``above`` (what a wrong level gives)."""
    return lambda s: s.saturated == share > above


def stripes(shape, dtype, rng, across: bool):
    """Rows (``across=False``: values change down the frame, each row flat) or columns of
    random values: detail in one direction only."""
    values = rng.integers(0, np.iinfo(dtype).max, shape[1 if across else 0], dtype, True)
    line = values[None, :] if across else values[:, None]
    return np.ascontiguousarray(np.broadcast_to(line, shape))


def cases():
    """(name, frame, options for `scores`, a check of the reference's scores that the case
    is what it says it is, or None)."""
    rng = np.random.default_rng(3)
    for shape in [(3, 3), (4, 5), (5, 4), (9, 40), (17, 33)]:
        for dtype in (np.uint8, np.uint16):
            top = np.iinfo(dtype).max
            frame = rng.integers(0, top, shape, dtype, True)
            yield f"random {shape} {dtype.__name__}", frame, {}, None
    plane = rng.integers(0, 255, (12, 48), np.uint8, True)
    yield "padded plane view", plane[:, :37], {}, None
    yield "roi", plane, {"roi": (5, 2, 20, 9)}, None
    yield "flat", np.full((6, 7), 200, np.uint8), {}, None
    board = (np.indices((8, 36)).sum(axis=0) % 2 * 65535).astype(np.uint16)
    yield "full-scale uint16 checkerboard", board, {}, lambda s: s.saturated == 0.5
    yield "scaled", plane, dict(LIMITED), None

    # Saturation: samples at the level and above it count, below do not.
    sat8 = rng.integers(0, 255, (11, 21), np.uint8, True)
    sat8[rng.random(sat8.shape) < 0.2] = 255
    yield "uint8 saturated at 255", sat8, {}, lambda s: 0.1 < s.saturated < 0.5
    ten = rng.integers(0, 1200, (10, 19), np.uint16, True)  # above 1023 too: clipped
    ten[::3, ::4] = 1023
    assert (ten > 1023).any() and saturation_level(ten.dtype, **TEN_BIT) == 1023
    # The dtype's largest (65535) as the level counts none, `== level` fewer.
    meant = saturated(float(np.mean(ten >= 1023)), float(np.mean(ten == 1023)))
    yield "10-bit in uint16, saturated from 1023", ten, dict(TEN_BIT), meant
    limited = rng.integers(200, 255, (13, 9), np.uint8, True)
    limited[1::4, ::3] = 235
    assert saturation_level(limited.dtype, **LIMITED) == 235
    meant = saturated(float(np.mean(limited >= 235)), float(np.mean(limited == 255)))
    yield "limited range, saturated from 235", limited, dict(LIMITED), meant
    yield "limited range roi", limited, {"roi": (1, 2, 7, 9), **LIMITED}, None

    # Direction terms: one-way detail, odd sizes (the last row or column repeated).
    for shape, dtype in [((10, 13), np.uint8), ((9, 12), np.uint16), ((7, 5), np.uint8)]:
        kind = f"{shape} {dtype.__name__}"
        yield f"horizontal stripes {kind}", stripes(shape, dtype, rng, False), {}, only_y
        yield f"vertical stripes {kind}", stripes(shape, dtype, rng, True), {}, only_x
    yy, xx = np.indices((7, 13))
    ramp = (3 * xx + 11 * yy).astype(np.uint8)  # dx, dy of one sign: dx * dy > 0
    yield "ramp odd sizes, dx * dy > 0", ramp, {}, lambda s: s.detail_xy > 0
    yy, xx = np.indices((13, 6))
    ramp = (100 + 7 * xx - 5 * yy).astype(np.uint16)  # of opposite signs: dx * dy < 0
    yield "ramp odd height, dx * dy < 0", ramp, {}, lambda s: s.detail_xy < 0
    odd = rng.integers(0, 65535, (11, 7), np.uint16, True)
    yield "random odd sizes uint16", odd, {}, lambda s: s.detail_x != s.detail_y


def maps():
    """(frame, grid, options for `focus_map`)."""
    rng = np.random.default_rng(9)
    old = [((37, 70), (3, 4), np.uint8), ((33, 33), (2, 2), np.uint16),
           ((7, 9), (3, 4), np.uint8), ((40, 64), (4, 1), np.uint8)]  # fmt: skip
    for shape, grid, dtype in old:
        yield rng.integers(0, np.iinfo(dtype).max, shape, dtype, True), grid, {}
    ten = rng.integers(0, 1100, (21, 27), np.uint16, True)  # some tiles clipped, some not
    ten[:8, :14] = np.minimum(ten[:8, :14], 900)
    yield ten, (3, 2), dict(TEN_BIT)
    limited = rng.integers(16, 255, (19, 15), np.uint8, True)
    yield limited, (2, 3), {"roi": (1, 0, 14, 19), **LIMITED}


def batches():
    """Batches as the pipeline makes them: mixed sizes and sample types, ROIs, frames
    already on the device, a saturation level per frame, and more batches in flight than
    the backend has slots."""
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
    # One frame per level, both sample types: each part carries its own level.
    ten = rng.integers(0, 1100, (12, 35), np.uint16, True)
    full16 = rng.integers(60000, 65535, (9, 10), np.uint16, True)
    full16[::2] = 65535
    bright = rng.integers(200, 255, (14, 17), np.uint8, True)
    lumas = [bright, ten, bright, full16, cuda.to_device(ten), cuda.to_device(bright)]
    scales = [1.0, 255 / 1023, 255 / 219, 1.0, 255 / 1023, 255 / 219]
    offsets = [0.0, 0.0, 16.0, 0.0, 0.0, 16.0]
    yield "a saturation level per frame", lumas, {"scales": scales, "offsets": offsets}
    # Focus maps in a batch (the pipeline's ``tiles``): their tiles are parts of the launch.
    lumas = [ten, bright, cuda.to_device(bright), frames[2], full16]
    yield "frames and focus maps", lumas, {
        "tiles": [(2, 3), None, (3, 2), (2, 2), None],
        "rois": [None, None, None, (2, 1, 27, 30), None],
        "scales": [255 / 1023, 1.0, 255 / 219, 1.0, 1.0], "offsets": [0.0, 0.0, 16.0, 0.0, 0.0],
    }  # fmt: skip


def same_map(name: str, got: FocusMap, want: FocusMap) -> int:
    """How many tiles of ``got`` are as ``want``'s, the frame too; 0 on a mismatch."""
    if (got.ys, got.xs) != (want.ys, want.xs) or not same_scores(name, got.frame, want.frame):
        print(f"MISMATCH {name}: edges {got.ys} {got.xs}, reference {want.ys} {want.xs}")
        return 0
    for r, row in enumerate(got.tiles):
        for c, tile in enumerate(row):
            if not same_scores(f"{name} tile {r},{c}", tile, want.tiles[r][c]):
                return 0
    return len(got.tiles) * len(got.tiles[0])


def same_scores(name: str, got: FocusScores, want: FocusScores) -> bool:
    for m in FIELDS:
        g, w = getattr(got, m), getattr(want, m)
        if m in EXACT:
            ok = g == w
        else:
            ok = bool(np.isfinite(g)) and abs(g - w) <= 1e-9 * abs(w) + 1e-12
        if not ok:
            print(f"MISMATCH {name}: {m} cuda={g!r} numpy={w!r}")
            return False
    return True


def exact_sums(view: np.ndarray, level: int, box=None) -> RawSums:
    """The reference's per-pixel and per-block maps (`_reference._maps`: exact integers,
    or quarter integers for the Haar terms), summed exactly as int64 over the frame or the
    tile ``box = (y0, y1, x0, x1)`` (its blocks as `reference_map` cuts them)."""
    g, saturated, lap, grad2, detail, dx2, dy2, dxdy = _maps(view, level)
    y0, y1, x0, x1 = box or (0, view.shape[0], 0, view.shape[1])
    px = np.s_[y0:y1, x0:x1]
    half = np.s_[y0 // 2 : -(-y1 // 2), x0 // 2 : -(-x1 // 2)]

    def ints(m: np.ndarray, times: int = 1) -> np.ndarray:
        v = m * times
        assert np.array_equal(v, np.round(v)), "not integer terms"
        return v.astype(np.int64)

    gi, li = ints(g[px]), ints(lap[px])
    return RawSums(
        n_px=gi.size, sum_g=int(gi.sum()), sum_g2=int((gi * gi).sum()), sum_lap=int(li.sum()),
        sum_lap2=int((li * li).sum()), sum_grad2=int(ints(grad2[px]).sum()),
        sum_mag=float(np.sqrt(grad2[px]).sum()), n_ll=detail[half].size,
        sum_haar4=int(ints(detail[half], 4).sum()), sum_dx4=int(ints(dx2[half], 4).sum()),
        sum_dy4=int(ints(dy2[half], 4).sum()), sum_dxdy4=int(ints(dxdy[half], 4).sum()),
        n_sat=int(ints(saturated[px]).sum()),
    )  # fmt: skip


def same_sums(name: str, got: RawSums, want: RawSums) -> bool:
    for f in fields(RawSums):
        g, w = getattr(got, f.name), getattr(want, f.name)
        ok = abs(g - w) <= 1e-12 * abs(w) if f.name == "sum_mag" else g == w
        if not ok:
            print(f"MISMATCH {name}: raw {f.name} cuda={g!r} exact={w!r}")
            return False
    return True


def host(frame):
    return frame if isinstance(frame, np.ndarray) else frame.copy_to_host()


def units(options: dict) -> tuple[float, float]:
    return float(options.get("scale", 1.0)), float(options.get("offset", 0.0))


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    assert kernels.available()["numba-cuda"] is None
    numpy = kernels.get("numpy")
    checked = 0
    with kernels.get("numba-cuda") as backend:
        for name, frame, options, meant in cases():
            view = backend.check(frame, options.get("roi"))
            scale, offset = units(options)
            level = saturation_level(view.dtype, scale, offset)
            got = backend.scores(frame, **options)
            want = rescale(reference_scores(view, level), scale, offset)
            assert numpy.scores(frame, **options) == want, name
            if meant is not None and not meant(want):
                print(f"BAD CASE {name}: the reference's scores are not as meant: {want}")
                return 1
            if not same_scores(name, got, want):
                return 1
            if not same_sums(name, backend.raw_sums(view, level), exact_sums(view, level)):
                return 1
            checked += 1
            print(f"ok {name}")
        # Focus maps: each tile a part of its own, the same as the reference's.
        for frame, grid, options in maps():
            view = backend.check(frame, options.get("roi"))
            scale, offset = units(options)
            level = saturation_level(view.dtype, scale, offset)
            ys, xs = check_grid(grid, view.shape)
            label = f"map {view.shape} {grid} {view.dtype} level {level}"
            got = backend.focus_map(frame, grid, **options)
            want = reference_map(view, ys, xs, level).rescaled(scale, offset)
            if (got.ys, got.xs) != (want.ys, want.xs) or not same_scores(
                label, got.frame, want.frame
            ):
                return 1
            raw = backend.raw_tile_sums(view, ys, xs, level)
            for r, row in enumerate(got.tiles):
                for c, tile in enumerate(row):
                    where = f"{label} tile {r},{c}"
                    box = (ys[r], ys[r + 1], xs[c], xs[c + 1])
                    if not same_scores(where, tile, want.tiles[r][c]) or not same_sums(
                        where, raw[r][c], exact_sums(view, level, box)
                    ):
                        return 1
                    checked += 1
            print(f"ok focus {label}")
        # Submitted before any result is read: the third batch reuses the first's slot.
        in_flight = [
            (name, lumas, opts, backend.submit(lumas, **opts)) for name, lumas, opts in batches()
        ]
        for name, lumas, opts, pending in in_flight:
            n = len(lumas)
            rois = opts.get("rois", [None] * n)
            scales, offsets = opts.get("scales", [1.0] * n), opts.get("offsets", [0.0] * n)
            tiles = opts.get("tiles", [None] * n)
            got = pending.result()
            assert len(got) == n
            for i, luma in enumerate(lumas):
                how = {"roi": rois[i], "scale": scales[i], "offset": offsets[i]}
                if tiles[i] is not None:
                    want_map = numpy.focus_map(host(luma), tiles[i], **how)
                    if not isinstance(got[i], FocusMap):
                        print(f"MISMATCH {name} [{i}]: {type(got[i]).__name__}, not a map")
                        return 1
                    done = same_map(f"{name} [{i}]", got[i], want_map)
                    if not done:
                        return 1
                    checked += done
                    continue
                want = numpy.scores(host(luma), **how)
                if not same_scores(f"{name} [{i}]", got[i], want):
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
