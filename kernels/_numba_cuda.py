"""The CUDA backend: a fused Numba CUDA kernel with a block-level reduction.

Device memory, pinned host buffers and the stream come from CuPy on a real GPU. Under
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how the tests run this code on
machines without a GPU, Numba's own (simulated) allocations stand in for CuPy's; the kernel,
the launch and the reduction are the same code either way.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import cuda, int64

from ._backend import FusedBackend
from ._scores import RawSums

#: Threads per block: 32 x 8, one warp per row of the tile. The reduction below assumes
#: a power of two.
TPB_X = 32
TPB_Y = 8
TPB = TPB_X * TPB_Y
N_INT = 6  # sum_g, sum_g2, sum_lap, sum_lap2, sum_grad2, sum_haar4


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@cuda.jit
def fused_kernel(img, out_i, out_f):
    """Score one pixel per thread, reduce per block, add the block's sums to the output.

    Thread (x, y) computes, for pixel (y, x) of the (h, w) uint8/uint16 ``img``, the luma,
    the Laplacian and the Sobel gradient with BORDER_REFLECT_101, and, if y and x are both
    even, the Haar detail energy (x4) of the 2x2 block it starts (edges repeated for odd
    sizes). The block sums its threads' integer terms in int64 and the gradient magnitudes
    in float64 in shared memory; thread 0 then adds them to ``out_i[0:6]`` and
    ``out_f[0]`` with atomics. Integer sums are exact whatever the order of the atomics.
    """
    h, w = img.shape
    x, y = cuda.grid(2)
    tid = cuda.threadIdx.y * TPB_X + cuda.threadIdx.x
    s_int = cuda.shared.array((N_INT, TPB), int64)
    s_mag = cuda.shared.array(TPB, np.float64)
    for k in range(N_INT):
        s_int[k, tid] = 0
    s_mag[tid] = 0.0
    if x < w and y < h:
        yu = y - 1 if y > 0 else 1
        yd = y + 1 if y < h - 1 else h - 2
        xl = x - 1 if x > 0 else 1
        xr = x + 1 if x < w - 1 else w - 2
        a = int64(img[yu, xl])
        b = int64(img[yu, x])
        c = int64(img[yu, xr])
        d = int64(img[y, xl])
        e = int64(img[y, x])
        f = int64(img[y, xr])
        g = int64(img[yd, xl])
        hh = int64(img[yd, x])
        k = int64(img[yd, xr])
        lap = b + hh + d + f - 4 * e
        gx = (c - a) + 2 * (f - d) + (k - g)
        gy = (g + 2 * hh + k) - (a + 2 * b + c)
        grad2 = gx * gx + gy * gy
        s_int[0, tid] = e
        s_int[1, tid] = e * e
        s_int[2, tid] = lap
        s_int[3, tid] = lap * lap
        s_int[4, tid] = grad2
        s_mag[tid] = math.sqrt(np.float64(grad2))
        if y % 2 == 0 and x % 2 == 0:
            y2 = y + 1 if y + 1 < h else y
            x2 = x + 1 if x + 1 < w else x
            b2 = int64(img[y, x2])
            c2 = int64(img[y2, x])
            d2 = int64(img[y2, x2])
            p = e + b2 - c2 - d2
            q = e - b2 + c2 - d2
            r = e - b2 - c2 + d2
            s_int[5, tid] = p * p + q * q + r * r
    cuda.syncthreads()
    stride = TPB // 2
    while stride > 0:
        if tid < stride:
            for k in range(N_INT):
                s_int[k, tid] += s_int[k, tid + stride]
            s_mag[tid] += s_mag[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        for k in range(N_INT):
            cuda.atomic.add(out_i, k, s_int[k, 0])
        cuda.atomic.add(out_f, 0, s_mag[0])


class _NumbaMemory:
    """Pinned host and device buffers and a stream from Numba (used under the simulator)."""

    def __init__(self) -> None:
        self.stream = cuda.stream()
        self.launch_stream = self.stream

    def host(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return cuda.pinned_array(shape, dtype)

    def device(self, shape: tuple[int, ...], dtype: type):
        return cuda.device_array(shape, dtype, stream=self.stream)

    def upload(self, host: np.ndarray, dev) -> None:
        dev.copy_to_device(host, stream=self.stream)

    def download(self, dev, host: np.ndarray) -> None:
        dev.copy_to_host(host, stream=self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()


class _CupyMemory(_NumbaMemory):
    """The same through CuPy, which owns device memory on a real GPU."""

    def __init__(self) -> None:
        import cupy
        import cupyx

        self._cupy, self._cupyx = cupy, cupyx
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.launch_stream = cuda.external_stream(self.stream.ptr)

    def host(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return self._cupyx.empty_pinned(shape, dtype)

    def device(self, shape: tuple[int, ...], dtype: type):
        return self._cupy.empty(shape, dtype)

    def upload(self, host: np.ndarray, dev) -> None:
        dev.set(host, stream=self.stream)

    def download(self, dev, host: np.ndarray) -> None:
        dev.get(stream=self.stream, out=host)


class NumbaCudaBackend(FusedBackend):
    """Fused CUDA kernel; buffers are kept per frame shape and reused."""

    name = "numba-cuda"

    def __init__(self) -> None:
        self._mem = _NumbaMemory() if _simulated() else _CupyMemory()
        self._buffer_key: tuple[tuple[int, int], np.dtype] | None = None
        self._zeros_i = np.zeros(N_INT, np.int64)
        self._zeros_f = np.zeros(1, np.float64)
        self._out_i = self._mem.device((N_INT,), np.int64)
        self._out_f = self._mem.device((1,), np.float64)
        self._host_i = self._mem.host((N_INT,), np.int64)
        self._host_f = self._mem.host((1,), np.float64)

    def _buffers_for(self, view: np.ndarray) -> None:
        key = (view.shape, view.dtype)
        if self._buffer_key != key:
            self._host_img = self._mem.host(view.shape, view.dtype)
            self._dev_img = self._mem.device(view.shape, view.dtype)
            self._buffer_key = key

    def raw_sums(self, view: np.ndarray) -> RawSums:
        h, w = view.shape
        self._buffers_for(view)
        mem = self._mem
        np.copyto(self._host_img, view)  # padded rows -> one contiguous pinned block
        mem.upload(self._host_img, self._dev_img)
        mem.upload(self._zeros_i, self._out_i)
        mem.upload(self._zeros_f, self._out_f)
        grid = (-(-w // TPB_X), -(-h // TPB_Y))
        fused_kernel[grid, (TPB_X, TPB_Y), mem.launch_stream](
            self._dev_img, self._out_i, self._out_f
        )
        mem.download(self._out_i, self._host_i)
        mem.download(self._out_f, self._host_f)
        mem.synchronize()
        ints = [int(v) for v in self._host_i]
        return RawSums.of_kernel(view.shape, ints, float(self._host_f[0]))


def unavailable_reason() -> str | None:
    """Why this backend cannot run here, or None (always None under the simulator)."""
    if _simulated():
        return None
    try:
        import cupy
    except ImportError:
        return "needs 'cupy': pip install 'focusmon[gpu]'"
    if not cuda.is_available():
        return "no CUDA device (Numba found no usable GPU or driver)"
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own CUDARuntimeError family
        return f"no CUDA device usable by CuPy: {exc}"
    return None
