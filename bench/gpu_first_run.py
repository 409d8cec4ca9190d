"""The first run on a real GPU: is the CUDA backend right there? Run once, then report.

The CUDA code has only run under simulators here (there is no GPU in this project's
machines). This script checks, on a real device, what a simulator cannot prove:

1. scores: ``numba-cuda`` against the NumPy reference, on frames of every size class —
   tiny (3x3, 17x33), an ROI, 1080p, 4K and 8K, uint8 and uint16 — given from host
   memory, from device memory, and in batches that mix both;
2. ordering, on real streams (CuPy's):
   - a frame filled on a producer stream behind a long kernel, handed over by its CUDA
     array interface and by DLPack: the backend must wait for the fill on the GPU;
   - a temporary device array freed right after `submit` and its memory reused by CuPy's
     pool (filled with junk): the backend must keep it until `result()`;
   - one small batch (a 16x16 frame: a grid of one block) with warnings as errors: the
     low-occupancy warning must not surface;
3. then ``bench/bench_gpu.py``, whose table is the GPU row for the README.

It prints one verdict line per check (``PASS`` or ``FAIL`` and why) and exits 1 if any
check failed. Please send the whole output. Without a usable GPU it says why in one line
and exits 0; under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) it runs the score checks
on tiny frames only (the ordering checks need CuPy's real streams).

Run: ``python bench/gpu_first_run.py`` (``--no-bench`` to skip step 3).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from focusmon import kernels

HERE = Path(__file__).parent
SIZES = {  # name: (height, width)
    "tiny 3x3": (3, 3),
    "tiny 17x33": (17, 33),
    "1080p": (1080, 1920),
    "4K": (2160, 3840),
    "8K": (4320, 7680),
}
SIMULATED_SIZES = ("tiny 3x3", "tiny 17x33")
RESULTS: list[bool] = []


def verdict(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""), flush=True)


def content(shape: tuple[int, int], dtype, seed: int) -> np.ndarray:
    """Real image content (bench_kernels' frame), shifted per seed; 16-bit spans 0-65535."""
    sys.path.insert(0, str(HERE))
    from bench_kernels import frame_of_size

    h, w = shape
    base = frame_of_size(max(w, 8), max(h, 8))[:h, :w]
    base = np.roll(base, 7 * seed, axis=1)
    if np.dtype(dtype) == np.uint16:
        return (base.astype(np.uint16) * 257) ^ np.uint16(seed)
    return np.ascontiguousarray(base)


def mismatch(got, want) -> str:
    """'' if every measure agrees to 1e-9 (relative), else what differs."""
    bad = []
    for m in kernels.MEASURES:
        g, w = getattr(got, m), getattr(want, m)
        if not (np.isfinite(g) and abs(g - w) <= 1e-9 * abs(w) + 1e-12):
            bad.append(f"{m} gpu={g!r} numpy={w!r}")
    return "; ".join(bad)


def check_scores(gpu, to_device, sizes) -> None:
    numpy = kernels.get("numpy")
    for name in sizes:
        for dtype in (np.uint8, np.uint16):
            luma = content(SIZES[name], dtype, seed=1)
            want = numpy.scores(luma)
            host = mismatch(gpu.scores(luma), want)
            device = mismatch(gpu.submit([to_device(luma)]).result()[0], want)
            verdict(f"scores, {name} {np.dtype(dtype).name}, host and device frames",
                    not host and not device, host or device)  # fmt: skip
    real = "1080p" in sizes
    shape, roi = ((720, 1280), (101, 57, 640, 360)) if real else ((24, 40), (3, 2, 20, 9))
    luma = content(shape, np.uint8, seed=2)
    want = numpy.scores(luma, roi=roi)
    got = [gpu.scores(luma, roi=roi), gpu.submit([to_device(luma)], rois=[roi]).result()[0]]
    why = mismatch(got[0], want) or mismatch(got[1], want)
    verdict(f"scores, an ROI of a {shape[1]}x{shape[0]} frame, host and device", not why, why)
    batch = [content(SIZES[n], t, seed=k) for k, (n, t) in enumerate(
        (n, t) for n in sizes[:4] for t in (np.uint8, np.uint16)
    )]  # fmt: skip
    lumas = [to_device(f) if k % 2 else f for k, f in enumerate(batch)]
    got = gpu.submit(lumas).result()
    pairs = zip(got, batch, strict=True)
    why = "; ".join(filter(None, (mismatch(g, numpy.scores(f)) for g, f in pairs)))
    verdict(f"scores, one batch of {len(batch)} frames mixing host and device, both types",
            not why, why)  # fmt: skip


def check_orderings(gpu) -> None:
    import cupy

    numpy = kernels.get("numpy")
    pixels = content((2160, 3840), np.uint8, seed=3)
    want = numpy.scores(pixels)

    spin = cupy.RawKernel(r"""
    extern "C" __global__ void spin(long long cycles) {
        long long start = clock64();
        while (clock64() - start < cycles) { }
    }""", "spin")  # fmt: skip
    for protocol in ("CUDA array interface", "DLPack"):
        producer = cupy.cuda.Stream(non_blocking=True)
        with producer:
            frame = cupy.zeros(pixels.shape, pixels.dtype)
            spin((1,), (1,), (np.int64(2_000_000_000),))  # ~1 s on a ~2 GHz GPU clock
            frame.set(pixels, stream=producer)  # queued behind the spin
            handed = frame if protocol.startswith("CUDA") else _DLPackOnly(frame)
            start = time.perf_counter()
            pending = gpu.submit([handed])
            submit_s = time.perf_counter() - start
        why = mismatch(pending.result()[0], want)
        verdict(f"ordering: a frame filled behind a long kernel on its producer's stream "
                f"({protocol})", not why,
                why or f"the host did not wait at submit ({submit_s * 1e3:.1f} ms)")  # fmt: skip

    pool = cupy.get_default_memory_pool()
    frame = cupy.asarray(pixels)
    pending = gpu.submit([frame])
    del frame  # its block goes back to CuPy's pool at once...
    junk = [cupy.full(pixels.shape, 0xA5, pixels.dtype) for _ in range(4)]  # ...and is reused
    why = mismatch(pending.result()[0], want)
    verdict(
        "lifetime: a device frame freed after submit, its memory reused",
        not why,
        why or f"pool holds {pool.used_bytes() / 2**20:.0f} MiB",
    )
    del junk

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            got = gpu.submit([content((16, 16), np.uint8, seed=4)]).result()[0]
        except Warning as exc:
            verdict("warnings: one small batch with warnings as errors", False, repr(exc))
        else:
            why = mismatch(got, numpy.scores(content((16, 16), np.uint8, seed=4)))
            verdict("warnings: one small batch with warnings as errors", not why, why)


class _DLPackOnly:
    """A CuPy array seen through DLPack alone (as torch or PyAV hand frames over)."""

    def __init__(self, array) -> None:
        self._array = array
        self.shape, self.dtype = array.shape, array.dtype

    def __dlpack__(self, *, stream=None):
        return self._array.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-bench", action="store_true", help="skip bench/bench_gpu.py")
    args = parser.parse_args()
    why = kernels.available()["numba-cuda"]
    if why is not None:
        print(f"no usable GPU here ({why}): nothing to check")
        return 0
    from numba import cuda

    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    device = getattr(cuda.get_current_device(), "name", b"the simulator")
    device = device.decode() if isinstance(device, bytes) else device
    print(f"GPU: {device}; numba-cuda, NVVM {'simulated' if simulated else _nvvm()}")
    with kernels.get("numba-cuda") as gpu:
        if simulated:
            print("simulated (NUMBA_ENABLE_CUDASIM=1): tiny frames only, no ordering checks")
            check_scores(gpu, cuda.to_device, SIMULATED_SIZES)
        else:
            import cupy

            check_scores(gpu, cupy.asarray, tuple(SIZES))
            check_orderings(gpu)
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} of {len(RESULTS)} checks passed", flush=True)
    if not args.no_bench and not simulated:
        subprocess.run([sys.executable, str(HERE / "bench_gpu.py")], check=False)
    return 1 if failed or not RESULTS else 0


def _nvvm() -> str:
    try:
        from numba.cuda.cudadrv import nvvm

        return ".".join(map(str, nvvm.NVVM().get_version()))
    except Exception as exc:  # the version is for the report only
        return f"unknown ({exc})"


if __name__ == "__main__":
    sys.exit(main())
