"""Degenerate frames: the cases, and a run of them on the CUDA backend under the simulator.

test_hostile.py scores `degenerate_cases()` with the CPU backends in its own process, and runs
this file as a script with NUMBA_ENABLE_CUDASIM=1 for ``numba-cuda`` (the simulator runs
every GPU thread as a Python thread, so the frames are small). The script prints one line
per case, ``CHECKED n`` at the end, and exits 1 on the first case that goes wrong, or 3 with
``UNAVAILABLE reason`` where the CUDA backend cannot run even simulated.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

#: Shapes below the 3x3 minimum, including empty ones: each must be refused, naming it.
TOO_SMALL = [(0, 0), (0, 5), (1, 1), (1, 9), (9, 1), (2, 2), (2, 9), (9, 2)]
DTYPES = (np.uint8, np.uint16)
SHARPNESS = ("laplacian_var", "tenengrad", "sobel_mean", "haar_energy")
DIRECTIONS = ("detail_x", "detail_y", "detail_xy")
RTOL = 1e-9


@dataclass(frozen=True)
class Case:
    """A frame and what must come of scoring it.

    ``expect`` is ``"refused"`` (a ValueError naming the shape), ``"flat"`` (every sharpness
    measure, the std and the direction energies exactly 0, the mean exactly the value, the
    saturated share exactly 1 at the top of the range and 0 below) or ``"reference"`` (the
    NumPy reference's scores, every field of `FocusScores`, to 1e-9 relative, all finite).
    """

    name: str
    frame: np.ndarray
    expect: str


def checkerboard(shape: tuple[int, int], dtype: type) -> np.ndarray:
    """0 and full scale alternating: every stencil term at its largest."""
    return (np.indices(shape).sum(axis=0) % 2 * np.iinfo(dtype).max).astype(dtype)


def degenerate_cases() -> Iterator[Case]:
    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        kind, top = np.dtype(dtype).name, np.iinfo(dtype).max
        for shape in TOO_SMALL:
            yield Case(f"{shape} {kind}", np.zeros(shape, dtype), "refused")
        for shape in [(3, 3), (4, 7)]:
            for value in (0, top):  # black, and saturated
                yield Case(f"flat {value} {shape} {kind}", np.full(shape, value, dtype), "flat")
        yield Case(f"random 3x3 {kind}", rng.integers(0, top, (3, 3), dtype, True), "reference")
        for shape in [(3, 3), (7, 9), (8, 12)]:
            yield Case(f"checkerboard {shape} {kind}", checkerboard(shape, dtype), "reference")
        # One-pixel stripes three pixels long: the narrowest frames that are allowed.
        stripes = (np.arange(40) % 2 * top).astype(dtype)
        yield Case(f"stripes 3x40 {kind}", np.repeat(stripes[None, :], 3, axis=0), "reference")
        yield Case(f"stripes 40x3 {kind}", np.repeat(stripes[:, None], 3, axis=1), "reference")


def check(backend, case: Case) -> str | None:
    """What went wrong scoring ``case`` with ``backend``, or None."""
    from focusmon.kernels import FocusScores, reference_scores

    frame = case.frame
    if case.expect == "refused":
        try:
            backend.scores(frame)
        except ValueError as exc:
            return None if str(frame.shape) in str(exc) else f"message without the shape: {exc}"
        return "accepted a frame below 3x3"
    got = backend.scores(frame)
    if case.expect == "flat":
        zeros = [getattr(got, m) for m in (*SHARPNESS, "std", *DIRECTIONS)]
        clipped = float(frame.flat[0] == np.iinfo(frame.dtype).max)
        if zeros != [0.0] * 8 or got.mean != float(frame.flat[0]) or got.saturated != clipped:
            return f"not exactly flat: {got}"
        return None
    want = reference_scores(frame)
    for m in (f.name for f in fields(FocusScores)):
        g, w = getattr(got, m), getattr(want, m)
        if not (np.isfinite(g) and abs(g - w) <= RTOL * abs(w) + 1e-12):
            return f"{m}: {g!r}, reference {w!r}"
    return None


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    from focusmon import kernels

    why = kernels.available()["numba-cuda"]
    if why is not None:
        print(f"UNAVAILABLE {why}")
        return 3
    checked = 0
    with kernels.get("numba-cuda") as backend:
        for case in degenerate_cases():
            problem = check(backend, case)
            if problem is not None:
                print(f"FAILED {case.name}: {problem}")
                return 1
            checked += 1
            print(f"ok {case.name}")
    print(f"CHECKED {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
