"""Run by test_batch.py in a process of its own, with NUMBA_ENABLE_CUDASIM=1.

Watches two small clips with the CUDA backend, which batches (one frame per stream), and
checks each stream's frames against the NumPy reference (every field of `FocusScores`:
the measures, the saturated share, the direction energies); prints one line per stream and
``BATCHED frames/batches``, and exits 1 if any field differs. Frames are tiny: the
simulator runs each GPU thread as a Python thread.

``python cuda_sim_watch.py FOLDER [STREAMS [FAULT_AT]]``: with one stream there is no
batching (the stream owns its backend); with ``FAULT_AT`` the simulated GPU faults at that
kernel (an illegal address, sticky), and every frame must still be scored, by the CPU
backend the watcher falls back to: ``FELL BACK to <backend> <count>``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))

from focusmon import kernels  # noqa: E402
from focusmon.config import ServiceSettings, StreamSpec, WatchConfig  # noqa: E402
from focusmon.kernels import FocusScores  # noqa: E402
from focusmon.pipeline import Watcher  # noqa: E402
from focusmon.source import SourceOptions, open_source  # noqa: E402

from media import h264_clip  # noqa: E402


def main(folder: Path, streams: int = 2, fault_at: int = 0) -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run me under the CUDA simulator"
    if fault_at:
        from focusmon.kernels._numba_cuda_sim import DeferredDevice

        DeferredDevice.fault_in_kernels = fault_at
    seconds = 0.6 if fault_at else 0.2  # frames before and after the fault
    clips = [
        h264_clip(folder / f"s{k}.mp4", seconds, size=f"{40 + 8 * k}x24") for k in range(streams)
    ]
    options = SourceOptions(max_fps=10)  # two frames a clip: the simulator is slow
    records: dict[str, list] = {}

    specs = [StreamSpec(f"s{k}", str(c), options=options) for k, c in enumerate(clips)]
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numba-cuda"), specs))
    assert watcher._batch == (2 if streams == 2 else 0), watcher._batch
    keep = watcher.streams[0].keep.__func__

    def spy(status, record, at):  # every record, as the stream keeps it
        records.setdefault(status.spec.name, []).append(record)
        keep(status, record, at)

    for status in watcher.streams:
        status.keep = spy.__get__(status)
    watcher.start()
    assert watcher.wait(500), "the watcher did not finish"
    reference = kernels.get("numpy")
    mismatched = False
    for status, clip in zip(watcher.streams, clips, strict=True):
        assert status.error is None, status.error
        with open_source(str(clip), options) as source:
            want = {
                f.index: reference.scores(f.luma, scale=f.scale, offset=f.offset) for f in source
            }
        got = records[status.spec.name]
        assert [r.index for r in got] == sorted(want), ([r.index for r in got], sorted(want))
        verdicts = []
        for m in (f.name for f in fields(FocusScores)):
            ok = all(
                abs(getattr(r.scores, m) - getattr(want[r.index], m))
                <= 1e-9 * abs(getattr(want[r.index], m)) + 1e-12
                for r in got
            )
            verdicts.append(f"{m} {'ok' if ok else 'MISMATCH'}")
            mismatched |= not ok
        print(f"stream {status.spec.name}: {len(got)} frames: " + ", ".join(verdicts))
    if watcher.batcher is not None:
        print(f"BATCHED {watcher.batcher.frames}/{watcher.batcher.batches}")
    if watcher.backend_fallbacks():
        print(f"FELL BACK to {watcher.backend} {watcher.backend_fallbacks()}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:])))
