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
    assert "CHECKED 15" in proc.stdout, proc.stdout


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("cc", [(7, 5), (8, 6)])
def test_cuda_kernel_compiles_to_ptx(dtype, cc):
    """The real compiler (NVVM) types the kernel; the simulator accepts code it would not."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("PTX compilation needs the real CUDA target, not the simulator")
    from numba import cuda, from_dtype, types

    from focusmon.kernels import _numba_cuda

    sig = (
        types.Array(from_dtype(np.dtype(dtype)), 2, "C"),
        types.Array(types.int64, 1, "C"),
        types.Array(types.float64, 1, "C"),
    )
    try:
        ptx, _ = cuda.compile_ptx(_numba_cuda.fused_kernel.py_func, sig, cc=cc)
    except Exception as exc:  # the toolchain itself missing, as opposed to a typing error
        if "NVVM" in str(exc) or "nvrtc" in str(exc).lower() or "libnvvm" in str(exc):
            pytest.skip(f"CUDA toolchain (NVVM/NVRTC) not found: {exc}")
        raise
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert "atom.global.add.u64" in ptx or "red.global.add.u64" in ptx
    assert "atom.global.add.f64" in ptx or "red.global.add.f64" in ptx
    assert "bar.sync" in ptx
