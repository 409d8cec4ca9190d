"""Run by test_cuda.py in a process of its own, with NUMBA_ENABLE_CUDASIM=1.

The CUDA backend on the deferred simulator (`focusmon.kernels._numba_cuda_sim`), where
copies and launches wait in their streams as on a GPU: the orderings that only a GPU would
get wrong. Each case says ``ok <name>`` or ``FAIL <name>: why``; the script exits 1 on any
failure. Cases named ``detects …`` run a deliberately unsafe variant of the backend (the
code before the fix) and check that the simulator catches it: they make sure the safe
cases could fail.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from dataclasses import fields

import numpy as np

from focusmon import kernels
from focusmon.kernels import BackendError, FocusScores, _numba_cuda
from focusmon.kernels._frame import check_grid
from focusmon.kernels._numba_cuda import SLOTS, NumbaCudaBackend
from focusmon.kernels._numba_cuda_sim import (
    CudaSimError,
    DeferredDevice,
    FramePool,
    SimFrame,
)

NUMPY = kernels.get("numpy")
FAILURES: list[str] = []
rng = np.random.default_rng(11)
#: Every field of `FocusScores`: the measures, the saturated share, the direction energies.
FIELDS = tuple(f.name for f in fields(FocusScores))


def frame(shape, dtype=np.uint8) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype, True)


def same(got, luma: np.ndarray, roi=None, **units) -> bool:
    return close(got, NUMPY.scores(luma, roi=roi, **units))


def close(got, want) -> bool:
    return all(
        abs(getattr(got, m) - getattr(want, m)) <= 1e-9 * abs(getattr(want, m)) + 1e-12
        for m in FIELDS
    )


def case(name: str, ok: bool, why: str = "") -> None:
    print(f"ok {name}" if ok else f"FAIL {name}: {why}")
    if not ok:
        FAILURES.append(name)


def new_backend(cls=NumbaCudaBackend):
    backend = cls()
    device = backend._device
    assert isinstance(device, DeferredDevice), type(device)
    return backend, device


def in_flight_with_changing_shapes() -> None:
    backend, device = new_backend()
    batches = [
        [frame((9, 40)), frame((33, 31), np.uint16)],
        [frame((17, 65)), frame((3, 3)), frame((40, 9), np.uint16)],
        [frame((5, 4), np.uint16)],
        [frame((64, 70)), frame((12, 12)), frame((7, 90), np.uint16), frame((4, 5))],
    ]
    pending = [backend.submit(b) for b in batches]  # four in flight, two slots
    queued = device.pending()
    results = [p.result() for p in pending]
    good = all(
        same(g, f)
        for b, r in zip(batches, results, strict=True)
        for g, f in zip(r, b, strict=True)
    )
    case(
        "two slots, four batches in flight, shapes changing",
        good and queued > 0 and not device.hazards and device.pending() == 0,
        f"scores right: {good}, queued {queued}, hazards {device.hazards}",
    )
    backend.close()


def producer_streams() -> None:
    for protocol in ("cai", "dlpack", "dlpack-legacy"):
        backend, device = new_backend()
        pool = FramePool(device)
        producer = device.stream("producer")
        if protocol == "dlpack-legacy":
            producer = device.stream_of(_numba_cuda.LEGACY_STREAM)
        pixels = frame((24, 30))
        on_gpu = SimFrame(pool, pixels, producer, protocol=protocol)
        host = frame((10, 11))
        pending = backend.submit([host, on_gpu])
        waited = producer.done  # the host never waits for the producer: the GPU does
        got = pending.result()
        case(
            f"a frame written on another stream ({protocol}) is read after its producer",
            same(got[0], host) and same(got[1], pixels) and not device.hazards and waited == 0,
            f"hazards {device.hazards}, producer's work run at submit: {waited}",
        )


def detects_unordered_producer() -> None:
    backend, device = new_backend()
    device.wait = lambda stream, event: None  # the code before the fix: no wait
    pool = FramePool(device)
    pixels = frame((24, 30))
    on_gpu = SimFrame(pool, pixels, device.stream("producer"))
    got = backend.submit([on_gpu]).result()[0]
    case(
        "detects a frame read without waiting for its producer",
        not same(got, pixels) and any("before its producer" in h for h in device.hazards),
        f"hazards {device.hazards}",
    )


def frames_kept_until_result(cls=NumbaCudaBackend) -> tuple[bool, list[str], int]:
    backend, device = new_backend(cls)
    pool = FramePool(device)
    pixels = [frame((20, 26)), frame((9, 33), np.uint16)]
    producer = device.stream("producer")
    on_gpu = [SimFrame(pool, p, producer) for p in pixels]
    pending = backend.submit(on_gpu)
    del on_gpu  # the caller lets go of its frames before the result
    gc.collect()
    freed_before = pool.freed
    got = pending.result()
    good = all(same(g, p) for g, p in zip(got, pixels, strict=True))
    return good, device.hazards, freed_before


class Forgetful(NumbaCudaBackend):
    """The code before the fix: device frames not kept until their gather ran."""

    def _queue(self, slot, views, levels, grids):
        pending = super()._queue(slot, views, levels, grids)
        slot.frames = []
        return pending


def released_before_result() -> None:
    good, hazards, freed = frames_kept_until_result()
    case(
        "device frames released before result() are kept until it",
        good and not hazards and freed == 0,
        f"scores right: {good}, hazards {hazards}, freed before result {freed}",
    )
    good, hazards, freed = frames_kept_until_result(Forgetful)
    case(
        "detects device frames freed before their gather ran",
        not good and freed == 2 and any("freed" in h for h in hazards),
        f"scores right: {good}, hazards {hazards}",
    )


class Unsynchronised(NumbaCudaBackend):
    """The code before the fix: a failed launch leaves its copies queued and the slot
    marked with the previous batch."""

    def _launch(self, views, levels, grids=None):
        slot = self._slots[self._next]
        self._next = (self._next + 1) % SLOTS
        if slot.pending is not None:
            slot.pending.result()
        return self._queue(slot, views, levels, grids or [None] * len(views))


def launch_error_then_reuse(cls=NumbaCudaBackend) -> tuple[bool, list[str], str]:
    backend, device = new_backend(cls)
    first = [frame((30, 30)), frame((8, 8))]
    backend.submit(first).result()  # slot 0 once, then slot 1, then slot 0 again
    backend.submit([frame((6, 6))]).result()
    device.fail_next_launch = CudaSimError("too many resources requested for launch")
    raised = ""
    try:
        backend.submit([frame((30, 30))])  # slot 0: copies queued, then the launch fails
    except (BackendError, CudaSimError) as exc:
        raised = type(exc).__name__
    later = [[frame((12, 40))], [frame((30, 30)), frame((9, 9))]]  # slot 1, then slot 0
    results = [backend.submit(b).result() for b in later]
    good = all(
        same(g, f) for b, r in zip(later, results, strict=True) for g, f in zip(r, b, strict=True)
    )
    return good, device.hazards, raised


def launch_error() -> None:
    good, hazards, raised = launch_error_then_reuse()
    case(
        "a launch error, then the slot used again",
        good and not hazards and raised == "BackendError",
        f"scores right: {good}, hazards {hazards}, raised {raised!r}",
    )
    _, hazards, _ = launch_error_then_reuse(Unsynchronised)
    case(
        "detects pinned buffers rewritten under a failed launch's queued copies",
        any("rewritten" in h for h in hazards),
        f"hazards {hazards}",
    )


def device_fault_fails_fast() -> None:
    backend, device = new_backend()
    device.fault_in_kernels = 1
    pending = backend.submit([frame((16, 16))])
    errors = []
    try:
        pending.result()
    except BackendError as exc:
        errors.append(str(exc))
    queued = sum(s.issued for s in device._streams.values())
    for luma in (frame((8, 8)), frame((3, 3))):
        try:
            backend.submit([luma])
        except BackendError as exc:
            errors.append(str(exc))
    untouched = sum(s.issued for s in device._streams.values()) == queued
    backend.close()  # does not raise again
    case(
        "a device fault is reported at once and every later call fails fast",
        len(errors) == 3 and untouched and "illegal memory access" in errors[0],
        f"errors {errors}, device untouched after: {untouched}",
    )


def other_gpu_and_raw_objects() -> None:
    backend, device = new_backend()
    pool = FramePool(device)
    elsewhere = SimFrame(pool, frame((8, 8)), device.stream(), device_id=1)
    messages = []
    for thing in (elsewhere, object(), np.zeros((4, 4), np.float32).tolist()):
        try:
            backend.submit([thing])
        except TypeError as exc:
            messages.append(str(exc))
    case(
        "a frame on another GPU, or no frame at all, is refused with TypeError",
        len(messages) == 3 and "GPU 1" in messages[0],
        f"{messages}",
    )
    host_by_dlpack = frame((7, 9))  # a host export by DLPack is a host frame
    got = backend.submit([_HostExport(host_by_dlpack)]).result()[0]
    case("a DLPack export of host memory is scored as a host frame", same(got, host_by_dlpack))


class _HostExport:
    def __init__(self, array):
        self._array = array

    def __dlpack__(self, *, stream=None):
        return self._array.__dlpack__()

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def parts_of_huge_frames() -> None:
    # Parts as a >53 Mpx uint16 frame would have them, on a frame the simulator can run:
    # the part limit is lowered to a few tile rows.
    real = dict(_numba_cuda._PART_PIXELS)
    _numba_cuda._PART_PIXELS[np.dtype(np.uint16)] = 3 * 32 * 64
    _numba_cuda._PART_PIXELS[np.dtype(np.uint8)] = 2 * 32 * 64
    try:
        backend, device = new_backend()
        big16, big8 = frame((230, 50), np.uint16), frame((100, 64))
        board = (np.indices((200, 60)).sum(axis=0) % 2 * 65535).astype(np.uint16)
        lumas = [big16, frame((5, 5)), big8, board]
        parts = [len(_numba_cuda.parts_of(*f.shape, f.dtype)) for f in lumas]
        got = backend.submit(lumas).result()
        good = all(same(g, f) for g, f in zip(got, lumas, strict=True))
        case(
            "frames scored in parts (exact int64 sums) add up to the reference",
            good and parts == [3, 1, 2, 3] and not device.hazards,
            f"scores right: {good}, parts {parts}",
        )
        # A focus map of a huge frame: each tile (230 rows) in two bands of its own.
        ys, xs = check_grid((1, 2), big16.shape)
        tile_parts = _numba_cuda.parts_of(*big16.shape, big16.dtype, ys, xs)
        got_map = backend.focus_map(big16, (1, 2))
        want_map = NUMPY.focus_map(big16, (1, 2))
        good = all(close(got_map.tiles[0][c], want_map.tiles[0][c]) for c in range(2))
        case(
            "a huge frame's focus map, each tile in bands, adds up to the reference's",
            good and [p[0] for p in tile_parts] == [0, 0, 1, 1] and not device.hazards,
            f"tiles right: {good}, parts {tile_parts}",
        )
        # Each band of a frame carries its frame's saturation level: 10-bit samples (some
        # above 1023, in every band) next to full-range and limited-range frames.
        ten, bright = rng.integers(0, 1100, (230, 50), np.uint16, True), frame((100, 64))
        lumas = [ten, board, bright, ten]
        units = [{"scale": 255 / 1023}, {}, {"scale": 255 / 219, "offset": 16.0}, {}]
        got = backend.submit(
            lumas, scales=[u.get("scale", 1.0) for u in units],
            offsets=[u.get("offset", 0.0) for u in units],
        ).result()  # fmt: skip
        good = all(same(g, f, **u) for g, f, u in zip(got, lumas, units, strict=True))
        clipped = [g.saturated for g in got]
        got_map = backend.focus_map(ten, (1, 2), scale=255 / 1023)
        want_map = NUMPY.focus_map(ten, (1, 2), scale=255 / 1023)
        tiles = all(close(got_map.tiles[0][c], want_map.tiles[0][c]) for c in range(2))
        case(
            "frames in parts, each its own saturation level, add up to the reference",
            good and tiles and clipped[0] > 0 == clipped[3] and not device.hazards,
            f"scores right: {good}, tiles right: {tiles}, saturated {clipped}",
        )
    finally:
        _numba_cuda._PART_PIXELS.update(real)


def quiet_small_grids() -> None:
    from numba.core.errors import NumbaPerformanceWarning

    class Kernel:
        def __getitem__(self, config):
            def launch(*args):
                warnings.warn(
                    NumbaPerformanceWarning(
                        "Grid size 1 will likely result in GPU under-utilization due to low "
                        "occupancy."
                    ),
                    stacklevel=1,
                )
                warnings.warn("something else", UserWarning, stacklevel=1)

            return launch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            _numba_cuda.quiet_launch(Kernel(), 1, 1, None)
        except NumbaPerformanceWarning as exc:
            case("the low-occupancy warning is silenced at launch", False, str(exc))
            return
        except UserWarning:
            case("the low-occupancy warning is silenced at launch, and only it", True)
            return
    case("the low-occupancy warning is silenced at launch, and only it", False, "no warning")


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    in_flight_with_changing_shapes()
    producer_streams()
    detects_unordered_producer()
    released_before_result()
    launch_error()
    device_fault_fails_fast()
    other_gpu_and_raw_objects()
    parts_of_huge_frames()
    quiet_small_grids()
    print(f"FAILED {len(FAILURES)}" if FAILURES else "ALL PASSED")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
