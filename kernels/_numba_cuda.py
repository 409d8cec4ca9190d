"""The CUDA backend: batches of frames of any sizes, scored in one fused kernel launch.

How a batch travels (`NumbaCudaBackend.submit`):

1. Host frames are packed, row after row, into a pinned host buffer (uint8 or uint16 as
   decoded: never float on the wire), each sample type's host frames first, so one copy
   up covers them. Frames already on the device (DLPack / CUDA array interface, e.g.
   decoded by NVDEC) are gathered into the device buffer after them by a small copy
   kernel instead, without a trip through the host, once the slot's stream has been made
   to wait (on the GPU, not the host) for the event that ends their producer's work.
2. One host-to-device copy of those pixels and one of the control table (per part of a
   frame: where its pixels start, its height and width, its first block, its rectangle and
   its frame's saturation level; per block: its part). A part is the whole frame (each
   tile of its focus map, when one is asked for) unless a 16-bit frame is so large (over
   ~53 Mpx) that its int64 sums could overflow: then it is scored in bands of whole tile
   rows.
3. One launch of `batch_kernel` per sample type in the batch: every block scores a 32x32
   tile of one frame and adds its sums to its part's row of the output with atomics.
4. One device-to-host copy of the output, ``(n_parts, OUT_COLS)`` int64 (the ten exact
   integer sums of `INT_SUMS`, the float64 magnitude sum stored in the same row); the host
   adds up the parts of each frame or tile.

Each of the (two) slots owns its buffers and its CUDA stream, and `submit` returns before
the GPU is done: while batch k is on the GPU in one slot, the host packs batch k+1 and its
copy to the device overlaps batch k's kernel in the other slot. A slot keeps the device
frames its gathers read until its result has been waited for, and a batch that fails to
queue waits for what it did queue before the slot is used again.

Device memory, pinned host buffers and streams come from CuPy on a real GPU; the kernels are
launched, the copies issued and the events recorded through Numba, on the CuPy streams
(`CupyDevice`). Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how the
tests run this code on machines without a GPU, `DeferredDevice` stands in: it defers every
copy and launch until its stream is waited for, as a GPU does, and reports the orderings a
GPU would get wrong. Packing, launches, copies and reductions are the same code either way.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import cuda, int64
from numba.core.errors import NumbaPerformanceWarning

from ._backend import BackendError, FusedBackend, PendingScores
from ._frame import cut_roi, saturation_level
from ._scores import INT_SUMS, FocusMap, RawSums, finish, rescale

#: Threads per block: 32 x 8 (one warp per row). Each thread scores 4 rows of a 32 x 32
#: tile, so one block covers 1024 pixels and adds 11 atomics per 1024 pixels to the output.
TPB_X = 32
TPB_Y = 8
TPB = TPB_X * TPB_Y  # a power of two: the tree reduction halves it
TILE_X = 32
TILE_Y = 32
ROWS_PER_THREAD = TILE_Y // TPB_Y
#: The integer sums, in the order of `INT_SUMS`: sum_g, sum_g2, sum_lap, sum_lap2,
#: sum_grad2, sum_haar4, sum_dx4, sum_dy4, sum_dxdy4, n_sat.
N_INT = 10
#: An output row: the ten int sums (columns 0-9), the magnitude sum (float64 bits, column
#: 10), one spare: 96 bytes, so every row starts 32-byte aligned.
OUT_COLS = 12
MAG_COL = N_INT
SLOTS = 2  # batches in flight: copy of one overlaps the kernel of the other
#: Per part: its frame's pixel offset, height, width; its first block; its rectangle
#: (y0, x0, y1, x1); its frame's saturation level.
CONTROL_COLS = 9
assert len(INT_SUMS) == N_INT and MAG_COL < OUT_COLS


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@cuda.jit
def batch_kernel(pix, control, block_part, out_i, out_f):
    """Score 32x32 pixels of one part of one frame of the batch per block (a launch per
    sample type: Numba compiles one version for uint8 frames and one for uint16, on first
    use).

    ``pix`` holds every frame's samples, each frame's rows back to back. A part is a
    rectangle of a frame with a row of the output of its own: the whole frame, a tile of
    its focus map, or a band of whole block rows of one of those (see `parts_of`).
    ``control[p]`` is part p's (pixel offset of its frame, the frame's height and width,
    its first block counted from the launch's first, its rectangle y0, x0, y1, x1, y0 and
    x0 even, and the frame's saturation level) and ``block_part[b]`` the part of the
    launch's block b.

    Thread (tx, ty) scores pixels (y, x) with x = block x + tx and y = block y + ty + 8 r,
    r = 0..3, inside the part's rectangle: the luma, whether it is saturated (``>=`` the
    level), the 4-neighbour Laplacian and the 3x3 Sobel gradient with BORDER_REFLECT_101
    at the frame's edges, and, where y and x are both even, for the 2x2 block it starts
    (edges repeated for odd sizes) 4x its Haar detail energy and 4x its direction terms
    dx**2, dy**2 and dx * dy. The block sums its threads' integer terms (int64) and
    magnitudes (float64) in shared memory, and thread 0 adds them to row p of ``out_i``
    (columns 0 to N_INT - 1, in the order of `INT_SUMS`) and ``out_f`` (column MAG_COL,
    the same memory) with atomics: integer sums are exact whatever the order.
    """
    b = cuda.blockIdx.x
    f = block_part[b]
    base = control[f, 0]
    h = control[f, 1]
    w = control[f, 2]
    local = b - control[f, 3]
    top = control[f, 4]
    left = control[f, 5]
    bottom = control[f, 6]
    right = control[f, 7]
    level = control[f, 8]
    blocks_x = (right - left + TILE_X - 1) // TILE_X
    x = left + (local % blocks_x) * TILE_X + cuda.threadIdx.x
    y0 = top + (local // blocks_x) * TILE_Y + cuda.threadIdx.y
    tid = cuda.threadIdx.y * TPB_X + cuda.threadIdx.x

    s_g = int64(0)
    s_g2 = int64(0)
    s_lap = int64(0)
    s_lap2 = int64(0)
    s_grad2 = int64(0)
    s_haar = int64(0)
    s_dx4 = int64(0)
    s_dy4 = int64(0)
    s_dxdy4 = int64(0)
    s_sat = int64(0)
    s_mag = 0.0
    if x < right:
        xl = x - 1 if x > 0 else 1
        xr = x + 1 if x < w - 1 else w - 2
        x2 = x + 1 if x + 1 < w else x
        for r in range(ROWS_PER_THREAD):
            y = y0 + r * TPB_Y
            if y < bottom:
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
                if e >= level:
                    s_sat += 1
                if y % 2 == 0 and x % 2 == 0:
                    # The block's top row e, q1 (left, right) and the row below q2, q3.
                    below = base + (y + 1 if y + 1 < h else y) * w
                    q1 = int64(pix[mid + x2])
                    q2 = int64(pix[below + x])
                    q3 = int64(pix[below + x2])
                    p = e + q1 - q2 - q3  # top minus bottom: 2 dy
                    q = e - q1 + q2 - q3  # left minus right: 2 dx
                    s = e - q1 - q2 + q3
                    s_haar += p * p + q * q + s * s
                    s_dx4 += q * q
                    s_dy4 += p * p
                    s_dxdy4 += p * q

    sums = cuda.shared.array((N_INT, TPB), int64)
    mags = cuda.shared.array(TPB, np.float64)
    sums[0, tid] = s_g
    sums[1, tid] = s_g2
    sums[2, tid] = s_lap
    sums[3, tid] = s_lap2
    sums[4, tid] = s_grad2
    sums[5, tid] = s_haar
    sums[6, tid] = s_dx4
    sums[7, tid] = s_dy4
    sums[8, tid] = s_dxdy4
    sums[9, tid] = s_sat
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
    """Blocks (32x32 pixels) that `batch_kernel` spends on an (h, w) rectangle."""
    return -(-h // TILE_Y) * -(-w // TILE_X)


# -- where the work goes ------------------------------------------------------------------

#: Per frame-part, the int64 sums stay exact: the largest term a pixel adds (the Sobel
#: gradient's gx^2 + gy^2, up to 20 m^2 for samples up to m) times the pixels of a part
#: stays under 2^62. Every other term is smaller: g^2 <= m^2, lap^2 <= 16 m^2, n_sat's 1,
#: and, added at one pixel for its 2x2 block a, b / c, d: 4x the Haar detail energy
#: <= 16 m^2 (with (a+b+c+d)^2 the three details' squares add up to 4 (a^2+b^2+c^2+d^2))
#: and the direction terms (a-b+c-d)^2, (a+b-c-d)^2, |(a-b+c-d) (a+b-c-d)| <= 4 m^2 each.
#: A uint16 frame of more than ~53 Mpx is scored in parts of whole tile rows, each with
#: its own output row, and the parts' sums are added on the host.
_MAX_TERM = {np.dtype(np.uint8): 20 * 255**2, np.dtype(np.uint16): 20 * 65535**2}
_PART_PIXELS = {dtype: 2**62 // term for dtype, term in _MAX_TERM.items()}

#: DLPack device types (dlpack.h): where a frame handed over by DLPack lives.
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
#: The CUDA array interface's and DLPack's names for the two default streams.
LEGACY_STREAM, PER_THREAD_STREAM = 1, 2


@dataclass(frozen=True)
class DeviceFrame:
    """A frame already on the GPU, as the backend took it: a Numba device view, the event
    its producer's work on it ends with (None: nothing to wait for), and the producer's
    object, which holds the memory and is kept alive until the frame's batch has run."""

    view: object
    ready: object
    owner: object

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.view.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.view.dtype)

    @property
    def size(self) -> int:
        h, w = self.shape
        return h * w

    def __getitem__(self, index) -> DeviceFrame:  # an ROI: a view of the same memory
        return DeviceFrame(self.view[index], self.ready, self.owner)


class _Taken:
    """A DLPack capsule already made for a given stream, handed on to CuPy as is (CuPy
    would otherwise ask the producer again, for its own current stream)."""

    def __init__(self, capsule: object, device: tuple[int, int]) -> None:
        self._capsule, self._device = capsule, device

    def __dlpack__(self, *, stream: object = None, **_: object) -> object:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._device


def quiet_launch(kernel, grid, block, stream, *args) -> None:
    """Launch ``kernel`` without numba-cuda's low-occupancy warning.

    numba-cuda warns (`NumbaPerformanceWarning`) for any grid under 128 blocks: every frame
    or ROI under ~360x360 here, which is expected (a batch of small frames is still one
    launch, and a small ROI is small by choice). Under ``-W error`` or pytest's
    ``filterwarnings = error`` that warning would become an exception in the batch thread,
    so this one message is ignored, on purpose, for the launch alone; every other warning
    passes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            # Numba wraps its messages in terminal highlighting: not anchored at the start.
            "ignore", message=r".*Grid size \d+ will likely result in GPU under-utilization",
            category=NumbaPerformanceWarning,
        )  # fmt: skip
        kernel[grid, block, stream](*args)


class Device:
    """Streams, memory and the work queued on them: what the backend asks of a GPU.

    `CupyDevice` is a real GPU; under Numba's simulator,
    `focusmon.kernels._numba_cuda_sim.DeferredDevice` defers every copy and launch until
    its stream is synchronised, as a GPU does. The backend's code is the same on both.
    """

    device_id = 0

    # Streams and events.
    def stream(self) -> object:
        raise NotImplementedError

    def stream_of(self, handle: int) -> object:
        """The stream a CUDA array interface or DLPack ``stream`` value names."""
        raise NotImplementedError

    def record(self, stream: object) -> object:
        """An event that completes once everything queued on ``stream`` so far has run."""
        raise NotImplementedError

    def wait(self, stream: object, event: object) -> None:
        """Make work queued on ``stream`` from now on wait for ``event``; the host does
        not wait."""
        raise NotImplementedError

    def synchronize(self, stream: object) -> None:
        stream.synchronize()

    # Memory and work, all queued on ``stream``.
    def host(self, n: int, dtype: np.dtype) -> np.ndarray:
        return cuda.pinned_array((n,), dtype)

    def device(self, n: int, dtype: np.dtype) -> object:
        return cuda.device_array((n,), dtype)

    def upload(self, dst: object, src: np.ndarray, stream: object) -> None:
        dst.copy_to_device(src, stream=stream)

    def download(self, dst: np.ndarray, src: object, stream: object) -> None:
        src.copy_to_host(dst, stream=stream)

    def launch(self, kernel, grid, block, stream, *args) -> None:
        quiet_launch(kernel, grid, block, stream, *args)

    def gather(self, frame: DeviceFrame, dst: object, base: int, stream: object) -> None:
        """Copy ``frame`` into ``dst[base:]``, row after row, on the GPU."""
        h, w = frame.shape
        grid = (-(-w // TPB_X), -(-h // TPB_Y))
        self.launch(gather_kernel, grid, (TPB_X, TPB_Y), stream, frame.view, dst, base)

    # Frames made elsewhere.
    def adopt(self, obj: object) -> DeviceFrame | np.ndarray | None:
        """``obj`` as the backend scores it: a `DeviceFrame` ordered after its producer, a
        host array (a DLPack export of host memory), or None if it is neither.

        The producer's work on the frame may still be queued when it is handed over. A CUDA
        array interface names the producer's stream (``stream``): an event is recorded on
        it. A DLPack producer is asked to order its work before a stream of ours (the
        intake), on which the event is recorded; one that cannot (PyAV's planes and
        `focusmon.source.DeviceLuma` say so) wrote the frame on the legacy default stream,
        where DLPack's default puts it. Either way the batch's stream waits for the event
        on the GPU (`wait`), and the host never does.

        Raises
        ------
        TypeError
            For a frame on another GPU, or one its producer cannot hand over.
        """
        if hasattr(obj, "__cuda_array_interface__"):
            self._check_device(obj)
            handle = obj.__cuda_array_interface__.get("stream")
            ready = None if handle is None else self.record(self.stream_of(handle))
            return DeviceFrame(self._from_cai(obj), ready, obj)
        if not hasattr(obj, "__dlpack__"):
            return None
        if self._check_device(obj) == _DL_CPU:
            return np.from_dlpack(obj)
        try:
            view = self._from_dlpack(obj, self.intake_handle)
            stream = self.intake
        except (BufferError, NotImplementedError):
            view = self._from_dlpack(obj, LEGACY_STREAM)
            stream = self.stream_of(LEGACY_STREAM)
        return DeviceFrame(view, self.record(stream), obj)

    def _check_device(self, obj: object) -> int | None:
        if not hasattr(obj, "__dlpack_device__"):
            return None
        kind, index = (int(v) for v in obj.__dlpack_device__())
        if kind == _DL_CPU:
            return kind
        if kind not in (_DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED):
            raise TypeError(f"the frame is on a device of DLPack type {kind}, not a CUDA GPU")
        if kind == _DL_CUDA and index != self.device_id:
            raise TypeError(
                f"the frame is on GPU {index}, but the backend runs on GPU {self.device_id} "
                "(Numba's current device: select it with numba.cuda.select_device, or set "
                "CUDA_VISIBLE_DEVICES)"
            )
        return kind

    intake: object = None
    intake_handle: int = LEGACY_STREAM

    def _from_cai(self, obj: object) -> object:
        return cuda.as_cuda_array(obj, sync=False)  # ordered by an event instead

    def _from_dlpack(self, obj: object, stream: int) -> object:
        raise NotImplementedError


class CupyDevice(Device):
    """A real GPU: device memory, pinned buffers and streams from CuPy, which owns them;
    the copies, kernels and events through Numba, on CuPy's streams.

    Numba sees CuPy's memory through the CUDA array interface, with ``sync=False``: Numba
    would otherwise synchronise each array's stream before every launch and undo the
    overlap of the slots. Numba's view holds its CuPy array, so the memory lives as long as
    the view.
    """

    def __init__(self) -> None:
        import cupy
        import cupyx

        self._cupy, self._cupyx = cupy, cupyx
        self.device_id = cuda.get_current_device().id
        self._streams: list[object] = []  # CuPy's streams, which Numba's wrappers point at
        self.intake = self.stream()
        self.intake_handle = self._streams[-1].ptr

    def stream(self) -> object:
        owner = self._cupy.cuda.Stream(non_blocking=True)
        self._streams.append(owner)
        return cuda.external_stream(owner.ptr)

    def stream_of(self, handle: int) -> object:
        if handle == LEGACY_STREAM:
            return cuda.legacy_default_stream()
        if handle == PER_THREAD_STREAM:
            return cuda.per_thread_default_stream()
        return cuda.external_stream(handle)

    def record(self, stream: object) -> object:
        event = cuda.event(timing=False)
        event.record(stream)
        return event

    def wait(self, stream: object, event: object) -> None:
        if event is not None:
            event.wait(stream)

    def host(self, n: int, dtype: np.dtype) -> np.ndarray:
        return self._cupyx.empty_pinned((n,), dtype)

    def device(self, n: int, dtype: np.dtype) -> object:
        return cuda.as_cuda_array(self._cupy.empty((n,), dtype), sync=False)

    def _from_dlpack(self, obj: object, stream: int) -> object:
        try:
            capsule = obj.__dlpack__(stream=stream)
        except TypeError:  # a producer of the first DLPack version: no stream at all
            if stream != LEGACY_STREAM:
                raise NotImplementedError("no stream argument") from None
            capsule = obj.__dlpack__()
        taken = self._cupy.from_dlpack(_Taken(capsule, obj.__dlpack_device__()))
        return cuda.as_cuda_array(taken, sync=False)


@dataclass
class _Slot:
    """One batch in flight: its stream, the buffers it owns until its result is read, and
    the device frames its gathers read, kept alive until then."""

    stream: object
    host_pix: dict[np.dtype, np.ndarray] = field(default_factory=dict)
    dev_pix: dict[np.dtype, object] = field(default_factory=dict)
    host_control: np.ndarray | None = None
    dev_control: object = None
    host_out: np.ndarray | None = None
    dev_out: object = None
    pending: PendingScores | None = None
    frames: list[DeviceFrame] = field(default_factory=list)


def _grown(buffer, n: int, make: Callable[[int], object]):
    """``buffer`` if it holds n items, else a new one with room to spare."""
    if buffer is not None and buffer.shape[0] >= n:
        return buffer
    return make(max(n, 2 * (buffer.shape[0] if buffer is not None else 0), 1024))


Part = tuple[int, int, int, int, int]  # tile (row-major), y0, x0, y1, x1


def parts_of(
    h: int, w: int, dtype: np.dtype, ys: np.ndarray | None = None, xs: np.ndarray | None = None
) -> list[Part]:
    """The parts of an (h, w) frame: each tile of the grid with edges ``ys``, ``xs`` (the
    whole frame without), in bands of whole block rows few enough pixels each that their
    int64 sums cannot overflow (see `_PART_PIXELS`)."""
    ys = (0, h) if ys is None else ys
    xs = (0, w) if xs is None else xs
    parts = []
    for r in range(len(ys) - 1):
        for c in range(len(xs) - 1):
            y0, y1, x0, x1 = int(ys[r]), int(ys[r + 1]), int(xs[c]), int(xs[c + 1])
            row_pixels = -(-(x1 - x0) // TILE_X) * TILE_X * TILE_Y
            step = max(1, _PART_PIXELS[np.dtype(dtype)] // row_pixels) * TILE_Y
            tile = r * (len(xs) - 1) + c
            parts += [(tile, y, x0, min(y + step, y1), x1) for y in range(y0, y1, step)]
    return parts


def _default_device() -> Device:
    if not _simulated():
        return CupyDevice()
    from ._numba_cuda_sim import DeferredDevice  # Numba's simulator, deferring as a GPU

    return DeferredDevice()


class NumbaCudaBackend(FusedBackend):
    """Fused CUDA kernel over batches; buffers are kept per slot and grow as needed.

    A failure of the GPU rather than of a frame is raised as `BackendError`: a launch it
    refuses (the backend stays usable), or a fault found when a batch is waited for (an
    illegal address): CUDA errors of that kind stick to the context, so every later call
    raises it again at once, without touching the device. The pipeline moves its streams
    to a CPU backend on either.
    """

    name = "numba-cuda"
    batches = True

    def __init__(self) -> None:
        self._device = _default_device()
        self._slots = [_Slot(self._device.stream()) for _ in range(SLOTS)]
        self._next = 0
        self._failed: BackendError | None = None

    def check(self, luma: object, roi=None):
        if isinstance(luma, np.ndarray):
            return super().check(luma, roi)
        if isinstance(luma, DeviceFrame):
            return cut_roi(luma, roi)
        self._fail_fast()
        try:
            frame = self._device.adopt(luma)
        except TypeError:
            raise
        except Exception as exc:  # a producer that cannot export (e.g. a raw PyAV plane)
            raise TypeError(
                f"a {type(luma).__name__} cannot be handed to the GPU: {exc} (PyAV's planes: "
                "wrap their frame in focusmon.source.DeviceLuma)"
            ) from exc
        if frame is None:
            raise TypeError(
                "`luma` must be a numpy.ndarray or a device array (CUDA array interface or "
                f"DLPack), got {type(luma).__name__}"
            )
        if isinstance(frame, np.ndarray):
            return super().check(frame, roi)
        return cut_roi(frame, roi)

    def raw_sums(self, view: np.ndarray, level: int | None = None) -> RawSums:
        level = saturation_level(view.dtype) if level is None else int(level)
        return self._launch([view], [level]).result()[0][0][0]

    def raw_tile_sums(
        self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int | None = None
    ) -> list[list[RawSums]]:
        level = saturation_level(view.dtype) if level is None else int(level)
        return self._launch([view], [level], [(ys, xs)]).result()[0]

    def close(self) -> None:
        """Wait for the batches in flight: their pinned buffers must outlive the copies."""
        for slot in self._slots:
            pending, slot.pending = slot.pending, None
            if pending is not None and self._failed is None:
                pending.result()

    def _fail_fast(self) -> None:
        if self._failed is not None:
            raise BackendError(f"the GPU failed earlier: {self._failed}") from self._failed

    def _broken(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        self._failed = BackendError(f"{type(exc).__name__}: {exc}")
        self._failed.__cause__ = exc
        return self._failed

    def _submit(self, views, scales, offsets, grids=None) -> PendingScores:
        """Score ``views`` in one launch: each with its own saturation level, and, where
        ``grids[i]`` holds a grid's edges ``(ys, xs)``, its `FocusMap` instead of its
        `FocusScores` (its tiles are parts of the same launch)."""
        grids = [None] * len(views) if grids is None else list(grids)
        units = list(zip(scales, offsets, strict=True))
        levels = [saturation_level(v.dtype, s, o) for v, (s, o) in zip(views, units, strict=True)]
        raw = self._launch(views, levels, grids)

        def scores() -> list:
            out: list = []
            for tiles, grid, (s, o) in zip(raw.result(), grids, units, strict=True):
                if grid is None:
                    out.append(rescale(finish(tiles[0][0]), s, o))
                else:
                    out.append(FocusMap.of_sums(tiles, *grid).rescaled(s, o))
            return out

        return PendingScores(scores)

    def _launch(self, views: list, levels: list[int], grids: list | None = None) -> PendingScores:
        """Pack, copy and launch ``views`` in the next slot, each with samples ``>=
        levels[i]`` saturated and over its grid's tiles (``grids[i] = (ys, xs)``, or None
        for the whole frame); the result is each view's `RawSums` per tile, rows of tiles."""
        self._fail_fast()
        slot = self._slots[self._next]
        self._next = (self._next + 1) % SLOTS
        if slot.pending is not None:  # its buffers still hold the previous batch's output
            slot.pending.result()
        try:
            return self._queue(slot, views, levels, grids or [None] * len(views))
        except Exception as exc:
            # Copies may be queued that read the slot's pinned buffers: let them finish
            # before the slot is used again (and so rewritten), then fail. A launch the
            # GPU refused leaves it usable; a fault found by that wait does not.
            try:
                self._device.synchronize(slot.stream)
            except Exception as sync_exc:
                raise self._broken(sync_exc) from exc
            finally:
                slot.pending, slot.frames = None, []
            raise BackendError(
                f"the batch could not be queued: {type(exc).__name__}: {exc}"
            ) from exc

    def _queue(self, slot: _Slot, views: list, levels: list[int], grids: list) -> PendingScores:
        dev, stream = self._device, slot.stream
        groups: dict[np.dtype, list[int]] = {}
        for i, view in enumerate(views):
            groups.setdefault(np.dtype(view.dtype), []).append(i)
        # Frames of one sample type back to back, host frames first: one upload covers
        # them and stops where the device frames' gathers begin.
        for members in groups.values():
            members.sort(key=lambda i: not isinstance(views[i], np.ndarray))
        parts = [
            parts_of(*view.shape, view.dtype, *(grid or (None, None)))
            for view, grid in zip(views, grids, strict=True)
        ]
        n_parts = sum(len(p) for p in parts)
        blocks = [sum(blocks_of(y1 - y0, x1 - x0) for _, y0, x0, y1, x1 in p) for p in parts]
        n_control = CONTROL_COLS * n_parts + sum(blocks)
        slot.host_control = _grown(slot.host_control, n_control, lambda m: dev.host(m, _I64))
        slot.dev_control = _grown(slot.dev_control, n_control, lambda m: dev.device(m, _I64))
        control = slot.host_control[: CONTROL_COLS * n_parts].reshape(n_parts, CONTROL_COLS)
        block_part = slot.host_control[CONTROL_COLS * n_parts : n_control]

        gathers = []  # (device frame, its type, where it goes): copied on the GPU
        uploads = []  # (type, samples): the host-packed start of each type's pixels
        launches = []  # (type, first block, blocks): one launch per sample type
        part_of = []  # per part: its frame and tile
        block = 0
        for dtype, members in groups.items():
            size = sum(views[i].size for i in members)
            host_size = sum(views[i].size for i in members if isinstance(views[i], np.ndarray))
            host = slot.host_pix[dtype] = _grown(
                slot.host_pix.get(dtype), max(host_size, 1), lambda m, t=dtype: dev.host(m, t)
            )
            slot.dev_pix[dtype] = _grown(
                slot.dev_pix.get(dtype), size, lambda m, t=dtype: dev.device(m, t)
            )
            base, first = 0, block
            launches.append((dtype, first, sum(blocks[i] for i in members)))
            for i in members:
                view = views[i]
                h, w = view.shape
                at = block
                for tile, y0, x0, y1, x1 in parts[i]:
                    p = len(part_of)
                    part_of.append((i, tile))
                    # Blocks count from the launch's first.
                    control[p] = (base, h, w, at - first, y0, x0, y1, x1, levels[i])
                    count = blocks_of(y1 - y0, x1 - x0)
                    block_part[at : at + count] = p
                    at += count
                if isinstance(view, np.ndarray):
                    # Padded rows become one contiguous run: the only host-side copy.
                    np.copyto(host[base : base + h * w].reshape(h, w), view)
                else:
                    gathers.append((view, dtype, base))
                base += h * w
                block += blocks[i]
            if host_size:
                uploads.append((dtype, host_size))

        out_len = n_parts * OUT_COLS
        slot.host_out = _grown(slot.host_out, out_len, lambda m: dev.host(m, _I64))
        slot.dev_out = _grown(slot.dev_out, out_len, lambda m: dev.device(m, _I64))
        host_out, dev_out = slot.host_out[:out_len], slot.dev_out[:out_len]
        # The gathers read the frames after this call returns: keep them until `collect`.
        slot.frames = [frame for frame, _, _ in gathers]

        # Everything below is queued on the slot's stream, in order, and returns at once.
        host_out[:] = 0  # the atomics add to zeros, which travel up with the control table
        dev.upload(dev_out, host_out, stream)
        dev.upload(slot.dev_control[:n_control], slot.host_control[:n_control], stream)
        for dtype, size in uploads:
            dev.upload(slot.dev_pix[dtype][:size], slot.host_pix[dtype][:size], stream)
        for frame, dtype, base in gathers:
            dev.wait(stream, frame.ready)  # its producer's work first, on the GPU
            dev.gather(frame, slot.dev_pix[dtype], base, stream)
        dev_parts = slot.dev_control[: CONTROL_COLS * n_parts].reshape(n_parts, CONTROL_COLS)
        out_i = dev_out.reshape(n_parts, OUT_COLS)
        out_f = out_i.view(np.float64)
        for dtype, first, count in launches:
            start = CONTROL_COLS * n_parts + first
            dev.launch(
                batch_kernel, count, (TPB_X, TPB_Y), stream,
                slot.dev_pix[dtype], dev_parts, slot.dev_control[start : start + count],
                out_i, out_f,
            )  # fmt: skip
        dev.download(host_out, dev_out, stream)  # every part's sums in one copy
        # Each view's tiles: (rows, cols) and each tile's shape (not `views` in `collect`:
        # see slot.frames).
        tiles = []
        for view, grid in zip(views, grids, strict=True):
            ys, xs = grid or ((0, view.shape[0]), (0, view.shape[1]))
            tiles.append([[(int(ys[r + 1] - ys[r]), int(xs[c + 1] - xs[c]))
                           for c in range(len(xs) - 1)] for r in range(len(ys) - 1)])  # fmt: skip

        def collect() -> list[list[list[RawSums]]]:
            try:
                dev.synchronize(stream)
            except Exception as exc:
                raise self._broken(exc) from None
            finally:
                slot.frames = []  # their gathers have run (or never will)
            rows = host_out.reshape(n_parts, OUT_COLS)
            mags = rows.view(np.float64)[:, MAG_COL]
            ints: dict[tuple[int, int], list[int]] = {}
            mag: dict[tuple[int, int], float] = {}
            for p, key in enumerate(part_of):
                before = ints.get(key, [0] * N_INT)
                ints[key] = [a + int(b) for a, b in zip(before, rows[p, :N_INT], strict=True)]
                mag[key] = mag.get(key, 0.0) + float(mags[p])
            out = []
            for i, shapes in enumerate(tiles):
                cols = len(shapes[0])
                out.append([
                    [RawSums.of_kernel(shape, ints[i, r * cols + c], mag[i, r * cols + c])
                     for c, shape in enumerate(row)]
                    for r, row in enumerate(shapes)
                ])  # fmt: skip
            return out

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
