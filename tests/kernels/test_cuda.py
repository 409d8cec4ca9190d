"""The CUDA backend without a GPU: behaviour under Numba's simulator, typing through PTX."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def test_cuda_kernel_matches_reference_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "cuda_sim_cases.py")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every field of each: 28 frames and 44 tiles of focus maps (with their raw sums,
    # exact), 23 frames and 16 tiles of focus maps in batches.
    assert "CHECKED 111" in proc.stdout, proc.stdout


def test_gpu_orderings_under_a_simulator_that_defers_like_a_gpu():
    """Copies and launches wait in their streams (`_numba_cuda_sim.DeferredDevice`): frames
    from another stream, frames released before their result, a launch error then the
    slot reused, a device fault, frames in parts, the small-grid warning. Each unsafe
    variant of the code (as it was before) is caught by the simulator too."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "cuda_deferred_cases.py")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0 and "ALL PASSED" in out, out + proc.stderr
    assert out.count("\nok ") + out.startswith("ok ") >= 14, out
    assert out.count("ok detects") == 3, out


def _ptx(kernel, sig, cc):
    from numba import cuda

    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    except Exception as exc:  # the toolchain itself missing, as opposed to a typing error
        if "NVVM" in str(exc) or "nvrtc" in str(exc).lower() or "libnvvm" in str(exc):
            pytest.skip(f"CUDA toolchain (NVVM/NVRTC) not found: {exc}")
        raise
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    return ptx


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("cc", [(7, 5), (8, 6), (9, 0)])
def test_cuda_kernels_compile_to_ptx(dtype, cc):
    """The real compiler (NVVM) types the kernels; the simulator accepts code it would not.
    The signatures are those the backend launches with."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("PTX compilation needs the real CUDA target, not the simulator")
    from numba import from_dtype, types

    from focusmon.kernels import _numba_cuda

    samples = from_dtype(np.dtype(dtype))
    i64 = types.int64
    sig = (
        types.Array(samples, 1, "C"),  # packed pixels
        types.Array(i64, 2, "C"),  # per part: its frame, first block, rectangle, level
        types.Array(i64, 1, "C"),  # per block: its part
        types.Array(i64, 2, "C"),  # out: the ten integer sums per part (INT_SUMS)
        types.Array(types.float64, 2, "C"),  # the same memory: the magnitude sum
    )
    ptx = _ptx(_numba_cuda.batch_kernel, sig, cc)
    assert "atom.global.add.u64" in ptx or "red.global.add.u64" in ptx
    assert "atom.global.add.f64" in ptx or "red.global.add.f64" in ptx
    assert "bar.sync" in ptx
    assert "sqrt.rn.f64" in ptx  # float64 magnitudes, as the reference
    # A device frame (a strided view: an ROI of a padded plane) gathered into the batch.
    sig = (types.Array(samples, 2, "A"), types.Array(samples, 1, "C"), i64)
    bits = 8 * np.dtype(dtype).itemsize
    assert f"st.global.u{bits}" in _ptx(_numba_cuda.gather_kernel, sig, cc)
