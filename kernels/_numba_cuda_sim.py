"""A CUDA simulator that behaves like a GPU: work waits in its stream until it is needed.

Numba's simulator runs every copy and launch the moment it is issued, so code that forgets
to wait for a producer, frees a frame its queued kernel still reads, or rewrites a pinned
buffer its queued copy still reads, gives the right numbers there and wrong ones on a real
GPU. `DeferredDevice` (the CUDA backend's device under ``NUMBA_ENABLE_CUDASIM=1``) queues
every copy and launch on its stream, and runs a stream's queue only when the host
synchronises it, or when another stream's queued work waits for an event on it — as a GPU
does. Kernels still run in Numba's simulator, and read memory as it is when they run.

It also notices what a GPU would not say, in `DeferredDevice.hazards`:
- a host buffer rewritten between queuing a copy from it and the copy running;
- a device frame whose owner was freed before its queued gather ran (`SimFrame`s are
  handed out by a `FramePool` that, like CuPy's or torch's caching allocator, reuses
  freed memory at once: it is overwritten);
- a device frame read before its producer's queued write ran.

And it can fail as a GPU does (`fail_next_launch`, `fault_in_kernels`): a launch refused
at once, or a kernel fault reported at the next synchronisation and at every call after
(CUDA's sticky errors).
"""

from __future__ import annotations

import collections
import itertools
import weakref
from collections.abc import Callable

import numpy as np
from numba import cuda

from ._numba_cuda import (
    LEGACY_STREAM,
    PER_THREAD_STREAM,
    TPB_X,
    TPB_Y,
    Device,
    DeviceFrame,
    gather_kernel,
)

#: What a pooled frame's memory holds once freed and reused by another allocation.
JUNK = 0xA5


class CudaSimError(RuntimeError):
    """A simulated CUDA error (a refused launch, an illegal address)."""


class SimStream:
    """A queue of work; ``handle`` is what a CUDA array interface or DLPack calls it."""

    def __init__(self, device: DeferredDevice, handle: int, name: str) -> None:
        self.device, self.handle, self.name = device, handle, name
        self.ops: collections.deque[Callable[[], None]] = collections.deque()
        self.issued = 0  # ops queued so far
        self.done = 0  # ops run so far

    def synchronize(self) -> None:
        self.device.synchronize(self)

    def __repr__(self) -> str:
        return f"<SimStream {self.name} {self.done}/{self.issued}>"


class DeferredDevice(Device):
    """Every copy and launch waits in its stream's queue until the stream is synchronised
    (see the module's docstring)."""

    fault_in_kernels: int | None = None  # a class default, for a test to set beforehand

    def __init__(self) -> None:
        self.hazards: list[str] = []
        self.fail_next_launch: BaseException | None = None
        #: The kernel (1 for the next one run) that faults; None: none does.
        self.fault_in_kernels: int | None = self.fault_in_kernels
        self._sticky: BaseException | None = None
        self._handles = itertools.count(0x7F00_0000, 16)
        self._streams: dict[int, SimStream] = {}
        self._streams[LEGACY_STREAM] = SimStream(self, LEGACY_STREAM, "legacy default")
        self._streams[PER_THREAD_STREAM] = SimStream(self, PER_THREAD_STREAM, "per-thread")
        self.intake = self.stream("intake")
        self.intake_handle = self.intake.handle

    # -- streams and events -------------------------------------------------------------

    def stream(self, name: str = "") -> SimStream:
        handle = next(self._handles)
        stream = self._streams[handle] = SimStream(self, handle, name or hex(handle))
        return stream

    def stream_of(self, handle: int) -> SimStream:
        try:
            return self._streams[handle]
        except KeyError:
            raise CudaSimError(f"invalid resource handle: no stream {handle:#x}") from None

    def record(self, stream: SimStream) -> tuple[SimStream, int]:
        self._check_sticky()
        return (stream, stream.issued)

    def wait(self, stream: SimStream, event: tuple[SimStream, int] | None) -> None:
        if event is not None:
            other, upto = event
            self._enqueue(stream, lambda: self._run(other, upto))

    def synchronize(self, stream: SimStream) -> None:
        self._check_sticky()
        self._run(stream, stream.issued)

    def pending(self) -> int:
        """Work queued and not run yet, on every stream."""
        return sum(s.issued - s.done for s in self._streams.values())

    # -- memory and work ----------------------------------------------------------------

    def host(self, n: int, dtype: np.dtype) -> np.ndarray:
        return np.zeros((n,), dtype)

    def upload(self, dst, src: np.ndarray, stream: SimStream) -> None:
        snapshot = np.array(src, copy=True)

        def copy() -> None:
            if not np.array_equal(src, snapshot):
                self.hazards.append(
                    f"a host buffer was rewritten before its queued copy ran (on {stream.name})"
                )
            dst.copy_to_device(src)  # what is there now, as a GPU's DMA reads it

        self._enqueue(stream, copy)

    def download(self, dst: np.ndarray, src, stream: SimStream) -> None:
        self._enqueue(stream, lambda: src.copy_to_host(dst))

    def launch(self, kernel, grid, block, stream: SimStream, *args) -> None:
        self._check_sticky()
        if self.fail_next_launch is not None:
            exc, self.fail_next_launch = self.fail_next_launch, None
            raise exc

        def run() -> None:
            if self.fault_in_kernels is not None:
                self.fault_in_kernels -= 1
                if self.fault_in_kernels == 0:
                    self.fault_in_kernels = None
                    self._sticky = CudaSimError("an illegal memory access was encountered")
                    return
            kernel[grid, block](*args)

        self._enqueue(stream, run)

    def gather(self, frame: DeviceFrame, dst, base: int, stream: SimStream) -> None:
        # The GPU holds no reference to what it reads: only a weak one is kept here, to
        # notice a frame freed before the gather ran (its memory is then reused: junk).
        owner = weakref.ref(frame.owner) if isinstance(frame.owner, SimFrame) else None
        view, h, w = frame.view, *frame.shape

        def run() -> None:
            if owner is not None:
                alive = owner()
                if alive is None:  # its memory belongs to another allocation now
                    self.hazards.append("a device frame was freed before its queued gather ran")
                    view.copy_to_device(np.full(view.shape, JUNK, view.dtype))
                elif not alive.written:
                    self.hazards.append("a device frame was read before its producer wrote it")
            grid = (-(-w // TPB_X), -(-h // TPB_Y))
            gather_kernel[grid, (TPB_X, TPB_Y)](view, dst, base)

        self._enqueue(stream, run)

    # -- frames made elsewhere ----------------------------------------------------------

    def adopt(self, obj: object):
        if type(obj).__name__ == "FakeCUDAArray":  # Numba's simulated device arrays
            return DeviceFrame(obj, None, obj)
        return super().adopt(obj)

    def _from_cai(self, obj: object):
        if not isinstance(obj, SimFrame):
            raise TypeError("the CUDA simulator takes its own device arrays only")
        return obj.data

    def _from_dlpack(self, obj: object, stream: int):
        # A simulated frame's "capsule" is its simulated device array.
        return obj.__dlpack__(stream=stream)

    # -- internals ----------------------------------------------------------------------

    def _enqueue(self, stream: SimStream, op: Callable[[], None]) -> None:
        self._check_sticky()
        stream.ops.append(op)
        stream.issued += 1

    def _run(self, stream: SimStream, upto: int) -> None:
        while stream.done < upto:
            op = stream.ops.popleft()
            stream.done += 1
            if self._sticky is None:
                op()
        self._check_sticky()

    def _check_sticky(self) -> None:
        if self._sticky is not None:
            raise CudaSimError(f"CUDA error (sticky): {self._sticky}")


class SimFrame:
    """A frame on the simulated GPU, written by a producer on a stream of its own.

    ``protocol`` is how it is handed over: ``"cai"`` (a CUDA array interface naming its
    stream, like CuPy's arrays), ``"dlpack"`` (it orders its work onto the consumer's
    stream, like torch's tensors) or ``"dlpack-legacy"`` (it cannot: it refuses any stream
    but the legacy default one, on which it wrote the frame — like PyAV's planes behind
    `focusmon.source.DeviceLuma`). ``ordered=False`` hands it over without naming its
    stream at all: the mistake the backend cannot guard against, for tests to show it.
    """

    def __init__(
        self,
        pool: FramePool,
        pixels: np.ndarray,
        producer: SimStream,
        *,
        protocol: str = "cai",
        ordered: bool = True,
        device_id: int = 0,
    ) -> None:
        self.device, self.protocol, self.ordered = pool.device, protocol, ordered
        self.producer, self.device_id = producer, device_id
        self.shape, self.dtype = pixels.shape, pixels.dtype
        self.data = data = pool.take(pixels.shape, pixels.dtype, self)
        self.written = False
        source = np.array(pixels, copy=True)
        me = weakref.ref(self)  # queued work does not keep the frame alive

        def write() -> None:  # the producer's kernel, queued on its stream
            data.copy_to_device(source)
            frame = me()
            if frame is not None:
                frame.written = True

        self.device._enqueue(producer, write)

    @property
    def __cuda_array_interface__(self) -> dict:
        if self.protocol != "cai":
            raise AttributeError("__cuda_array_interface__")
        return {
            "shape": self.shape, "typestr": self.dtype.str, "data": (id(self.data), False),
            "version": 3, "strides": None,
            "stream": self.producer.handle if self.ordered else None,
        }  # fmt: skip

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self.device_id)

    def __dlpack__(self, *, stream: int | None = None):
        if self.protocol == "cai":
            raise BufferError("exported by the CUDA array interface")
        if self.protocol == "dlpack-legacy" and stream not in (None, LEGACY_STREAM):
            raise BufferError("written on the legacy default stream; take it there")
        if self.ordered and stream is not None:
            consumer = self.device.stream_of(stream)
            if consumer is not self.producer:
                self.device.wait(consumer, self.device.record(self.producer))
        return self.data


class FramePool:
    """Device memory for `SimFrame`s, reused as soon as a frame is freed, as CuPy's and
    torch's caching allocators do: work still queued that reads a freed frame finds `JUNK`
    (another allocation's data) there."""

    def __init__(self, device: DeferredDevice) -> None:
        self.device = device
        self.freed = 0

    def take(self, shape, dtype, frame: SimFrame):
        weakref.finalize(frame, self._free)
        return cuda.to_device(np.zeros(shape, dtype))

    def _free(self) -> None:
        self.freed += 1
