"""The CUDA backend: batches of frames of any sizes, scored in one fused kernel launch.

How a batch travels (`NumbaCudaBackend.submit`):

1. Host frames are packed, row after row, into a pinned host buffer (uint8 or uint16 as
   decoded: never float on the wire); frames already on the device (DLPack / CUDA array
   interface, e.g. decoded by NVDEC) are gathered into the device buffer by a small copy
   kernel instead, without a trip through the host.
2. One host-to-device copy of the packed pixels and one of the control table (per frame:
   where its pixels start, its height and width, its first block; per block: its frame).
3. One launch of `batch_kernel` per sample type in the batch: every block scores a 32x32
   tile of one frame and adds its sums to that frame's row of the output with atomics.
4. One device-to-host copy of the output, ``(n_frames, 8)`` int64 (six exact integer sums,
   the float64 magnitude sum stored in the same row).

Each of the (two) slots owns its buffers and its CUDA stream, and `submit` returns before
the GPU is done: while batch k is on the GPU in one slot, the host packs batch k+1 and its
copy to the device overlaps batch k's kernel in the other slot.

Device memory, pinned host buffers and streams come from CuPy on a real GPU; the kernels are
launched and the copies issued through Numba, on the CuPy streams. Under Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how the tests run this code on machines
without a GPU, Numba's own (simulated) allocations and streams stand in for CuPy's; packing,
launches, copies and reductions are the same code either way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import cuda, int64

from ._backend import FusedBackend, PendingScores
from ._frame import cut_roi
from ._scores import RawSums, finish, rescale

#: Threads per block: 32 x 8 (one warp per row). Each thread scores 4 rows of a 32 x 32
#: tile, so one block covers 1024 pixels and adds 7 atomics per 1024 pixels to the output.
TPB_X = 32
TPB_Y = 8
TPB = TPB_X * TPB_Y  # a power of two: the tree reduction halves it
TILE_X = 32
TILE_Y = 32
ROWS_PER_THREAD = TILE_Y // TPB_Y
N_INT = 6  # sum_g, sum_g2, sum_lap, sum_lap2, sum_grad2, sum_haar4
OUT_COLS = 8  # the six int sums, the magnitude sum (float64 bits), one spare (alignment)
MAG_COL = 6
SLOTS = 2  # batches in flight: copy of one overlaps the kernel of the other
CONTROL_COLS = 4  # per frame: pixel offset, height, width, first block


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@cuda.jit
def batch_kernel(pix, control, block_frame, out_i, out_f):
    """Score one 32x32 tile of one frame of the batch per block (a launch per sample type:
    Numba compiles one version for uint8 frames and one for uint16, on first use).

    ``pix`` holds every frame's samples, each frame's rows back to back; ``control[f]``
    is frame f's (pixel offset, height, width, first block counted from the launch's
    first) and ``block_frame[b]`` the frame of the launch's block b.

    Thread (tx, ty) scores pixels (y, x) with x = tile x + tx and y = tile y + ty + 8 r,
    r = 0..3: the luma, the 4-neighbour Laplacian and the 3x3 Sobel gradient with
    BORDER_REFLECT_101, and, where y and x are both even, 4x the Haar detail energy of
    the 2x2 block it starts (edges repeated for odd sizes). The block sums its threads'
    integer terms (int64) and magnitudes (float64) in shared memory, and thread 0 adds
    them to row f of ``out_i`` (columns 0-5) and ``out_f`` (column 6, the same memory)
    with atomics: integer sums are exact whatever the order.
    """
    b = cuda.blockIdx.x
    f = block_frame[b]
    base = control[f, 0]
    h = control[f, 1]
    w = control[f, 2]
    tile = b - control[f, 3]
    tiles_x = (w + TILE_X - 1) // TILE_X
    x = (tile % tiles_x) * TILE_X + cuda.threadIdx.x
    y0 = (tile // tiles_x) * TILE_Y + cuda.threadIdx.y
    tid = cuda.threadIdx.y * TPB_X + cuda.threadIdx.x

    s_g = int64(0)
    s_g2 = int64(0)
    s_lap = int64(0)
    s_lap2 = int64(0)
    s_grad2 = int64(0)
    s_haar = int64(0)
    s_mag = 0.0
    if x < w:
        xl = x - 1 if x > 0 else 1
        xr = x + 1 if x < w - 1 else w - 2
        x2 = x + 1 if x + 1 < w else x
        for r in range(ROWS_PER_THREAD):
            y = y0 + r * TPB_Y
            if y < h:
                up = base + (y - 1 if y > 0 else 1) * w
                mid = base + y * w
                down = base + (y + 1 if y < h - 1 else h - 2) * w
                a = int64(pix[up + xl])
                bb = int64(pix[up + x])
                c = int64(pix[up + xr])
                d = int64(pix[mid + xl])
                e = int64(pix[mid + x])
                ff = int64(pix[mid + xr])
                g = int64(pix[down + xl])
                hh = int64(pix[down + x])
                k = int64(pix[down + xr])
                lap = bb + hh + d + ff - 4 * e
                gx = (c - a) + 2 * (ff - d) + (k - g)
                gy = (g + 2 * hh + k) - (a + 2 * bb + c)
                grad2 = gx * gx + gy * gy
                s_g += e
                s_g2 += e * e
                s_lap += lap
                s_lap2 += lap * lap
                s_grad2 += grad2
                s_mag += math.sqrt(np.float64(grad2))
                if y % 2 == 0 and x % 2 == 0:
                    below = base + (y + 1 if y + 1 < h else y) * w
                    q1 = int64(pix[mid + x2])
                    q2 = int64(pix[below + x])
                    q3 = int64(pix[below + x2])
                    p = e + q1 - q2 - q3
                    q = e - q1 + q2 - q3
                    s = e - q1 - q2 + q3
                    s_haar += p * p + q * q + s * s

    sums = cuda.shared.array((N_INT, TPB), int64)
    mags = cuda.shared.array(TPB, np.float64)
    sums[0, tid] = s_g
    sums[1, tid] = s_g2
    sums[2, tid] = s_lap
    sums[3, tid] = s_lap2
    sums[4, tid] = s_grad2
    sums[5, tid] = s_haar
    mags[tid] = s_mag
    cuda.syncthreads()
    stride = TPB // 2
    while stride > 0:
        if tid < stride:
            for j in range(N_INT):
                sums[j, tid] += sums[j, tid + stride]
            mags[tid] += mags[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        for j in range(N_INT):
            cuda.atomic.add(out_i, (f, j), sums[j, 0])
        cuda.atomic.add(out_f, (f, MAG_COL), mags[0])


_I64 = np.dtype(np.int64)


@cuda.jit
def gather_kernel(src, dst, base):
    """Copy the 2-D device view ``src`` (any strides) into ``dst[base:]``, row after row:
    one thread per sample. Frames decoded on the GPU join a batch this way."""
    x, y = cuda.grid(2)
    h, w = src.shape
    if x < w and y < h:
        dst[base + y * w + x] = src[y, x]


def blocks_of(h: int, w: int) -> int:
    """Blocks (32x32 tiles) that `batch_kernel` spends on an (h, w) frame."""
    return -(-h // TILE_Y) * -(-w // TILE_X)


# -- memory -------------------------------------------------------------------------------


class _NumbaMemory:
    """Pinned host buffers, device buffers and streams from Numba (under the simulator)."""

    def stream(self):
        return cuda.stream()

    def host(self, n: int, dtype: np.dtype) -> np.ndarray:
        return cuda.pinned_array((n,), dtype)

    def device(self, n: int, dtype: np.dtype):
        return cuda.device_array((n,), dtype)

    def as_device(self, obj: object):
        """A Numba device array of a frame already on the device, or None if it is not (the
        simulator's device arrays are the only device frames there are under it)."""
        return obj if type(obj).__name__ == "FakeCUDAArray" else None


class _CupyMemory(_NumbaMemory):
    """The same from CuPy, which owns device memory and streams on a real GPU.

    Numba sees CuPy's memory through the CUDA array interface. ``sync=False``: Numba would
    otherwise synchronise each array's stream before every launch and undo the overlap.
    """

    def __init__(self) -> None:
        import cupy
        import cupyx

        self._cupy, self._cupyx = cupy, cupyx
        self._owners: list[object] = []  # CuPy arrays and streams Numba's views point into

    def stream(self):
        owner = self._cupy.cuda.Stream(non_blocking=True)
        self._owners.append(owner)
        return cuda.external_stream(owner.ptr)

    def host(self, n: int, dtype: np.dtype) -> np.ndarray:
        return self._cupyx.empty_pinned((n,), dtype)

    def device(self, n: int, dtype: np.dtype):
        owner = self._cupy.empty((n,), dtype)
        self._owners.append(owner)
        return cuda.as_cuda_array(owner, sync=False)

    def as_device(self, obj: object):
        if hasattr(obj, "__cuda_array_interface__"):
            return cuda.as_cuda_array(obj, sync=False)
        if hasattr(obj, "__dlpack__"):  # e.g. a PyAV plane decoded on the GPU
            owner = self._cupy.from_dlpack(obj)
            return cuda.as_cuda_array(owner, sync=False)
        return None


@dataclass
class _Slot:
    """One batch in flight: its stream and the buffers it owns until its result is read."""

    stream: object
    host_pix: dict[np.dtype, np.ndarray] = field(default_factory=dict)
    dev_pix: dict[np.dtype, object] = field(default_factory=dict)
    host_control: np.ndarray | None = None
    dev_control: object = None
    host_out: np.ndarray | None = None
    dev_out: object = None
    pending: PendingScores | None = None


def _grown(buffer, n: int, make: Callable[[int], object]):
    """``buffer`` if it holds n items, else a new one with room to spare."""
    if buffer is not None and buffer.shape[0] >= n:
        return buffer
    return make(max(n, 2 * (buffer.shape[0] if buffer is not None else 0), 1024))


class NumbaCudaBackend(FusedBackend):
    """Fused CUDA kernel over batches; buffers are kept per slot and grow as needed."""

    name = "numba-cuda"
    batches = True

    def __init__(self) -> None:
        self._mem = _NumbaMemory() if _simulated() else _CupyMemory()
        self._slots = [_Slot(self._mem.stream()) for _ in range(SLOTS)]
        self._next = 0

    def check(self, luma: object, roi=None):
        if isinstance(luma, np.ndarray):
            return super().check(luma, roi)
        device = self._mem.as_device(luma)
        if device is None:
            raise TypeError(
                "`luma` must be a numpy.ndarray or a device array (CUDA array interface or "
                f"DLPack), got {type(luma).__name__}"
            )
        return cut_roi(device, roi)

    def raw_sums(self, view: np.ndarray) -> RawSums:
        return self._launch([view]).result()[0]

    def close(self) -> None:
        """Wait for the batches in flight: their pinned buffers must outlive the copies."""
        for slot in self._slots:
            if slot.pending is not None:
                slot.pending.result()
                slot.pending = None

    def _submit(self, views, scales, offsets) -> PendingScores:
        raw = self._launch(views)

        def scores() -> list:
            sums = raw.result()
            units = zip(sums, scales, offsets, strict=True)
            return [rescale(finish(r), s, o) for r, s, o in units]

        return PendingScores(scores)

    def _launch(self, views: list) -> PendingScores:
        """Pack, copy and launch ``views`` in the next slot; the result is their `RawSums`."""
        slot = self._slots[self._next]
        self._next = (self._next + 1) % SLOTS
        if slot.pending is not None:  # its buffers still hold the previous batch's output
            slot.pending.result()
        mem, stream, n = self._mem, slot.stream, len(views)

        groups: dict[np.dtype, list[int]] = {}
        for i, view in enumerate(views):
            groups.setdefault(np.dtype(view.dtype), []).append(i)
        blocks = [blocks_of(*view.shape) for view in views]
        n_control = CONTROL_COLS * n + sum(blocks)
        slot.host_control = _grown(slot.host_control, n_control, lambda m: mem.host(m, _I64))
        slot.dev_control = _grown(slot.dev_control, n_control, lambda m: mem.device(m, _I64))
        control = slot.host_control[: CONTROL_COLS * n].reshape(n, CONTROL_COLS)
        block_frame = slot.host_control[CONTROL_COLS * n : n_control]

        # Pack: frames of one sample type back to back, their blocks consecutive.
        gathers = []  # (device view, its type, where it goes): copied on the GPU
        uploads = []  # (type, samples): host-packed ranges to copy up
        launches = []  # (type, first block, blocks): one launch per sample type
        block = 0
        for dtype, members in groups.items():
            size = sum(views[i].size for i in members)
            host = slot.host_pix[dtype] = _grown(
                slot.host_pix.get(dtype), size, lambda m, t=dtype: mem.host(m, t)
            )
            slot.dev_pix[dtype] = _grown(
                slot.dev_pix.get(dtype), size, lambda m, t=dtype: mem.device(m, t)
            )
            base, first = 0, block
            launches.append((dtype, first, sum(blocks[i] for i in members)))
            for i in members:
                view = views[i]
                h, w = view.shape
                control[i] = (base, h, w, block - first)  # blocks count from the launch's
                block_frame[block : block + blocks[i]] = i
                if isinstance(view, np.ndarray):
                    # Padded rows become one contiguous run: the only host-side copy.
                    np.copyto(host[base : base + h * w].reshape(h, w), view)
                else:
                    gathers.append((view, dtype, base))
                base += h * w
                block += blocks[i]
            if any(isinstance(views[i], np.ndarray) for i in members):
                uploads.append((dtype, size))

        out_len = n * OUT_COLS
        slot.host_out = _grown(slot.host_out, out_len, lambda m: mem.host(m, _I64))
        slot.dev_out = _grown(slot.dev_out, out_len, lambda m: mem.device(m, _I64))
        host_out, dev_out = slot.host_out[:out_len], slot.dev_out[:out_len]

        # Everything below is queued on the slot's stream, in order, and returns at once.
        host_out[:] = 0  # the atomics add to zeros, which travel up with the control table
        dev_out.copy_to_device(host_out, stream=stream)
        slot.dev_control[:n_control].copy_to_device(slot.host_control[:n_control], stream=stream)
        for dtype, size in uploads:
            slot.dev_pix[dtype][:size].copy_to_device(slot.host_pix[dtype][:size], stream=stream)
        for view, dtype, base in gathers:  # after the upload, which wrote junk in their place
            h, w = view.shape
            grid = (-(-w // TPB_X), -(-h // TPB_Y))
            gather_kernel[grid, (TPB_X, TPB_Y), stream](view, slot.dev_pix[dtype], base)
        dev_frames = slot.dev_control[: CONTROL_COLS * n].reshape(n, CONTROL_COLS)
        out_i = dev_out.reshape(n, OUT_COLS)
        out_f = out_i.view(np.float64)
        for dtype, first, count in launches:
            start = CONTROL_COLS * n + first
            batch_kernel[count, (TPB_X, TPB_Y), stream](
                slot.dev_pix[dtype], dev_frames, slot.dev_control[start : start + count],
                out_i, out_f,
            )  # fmt: skip
        dev_out.copy_to_host(host_out, stream=stream)  # every frame's sums in one copy
        shapes = [tuple(view.shape) for view in views]

        def collect() -> list[RawSums]:
            stream.synchronize()
            rows = host_out.reshape(n, OUT_COLS)
            mags = rows.view(np.float64)[:, MAG_COL]
            return [
                RawSums.of_kernel(shape, [int(v) for v in rows[i, :N_INT]], float(mags[i]))
                for i, shape in enumerate(shapes)
            ]

        slot.pending = PendingScores(collect)
        return slot.pending


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
