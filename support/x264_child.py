"""Encode gray frames to H.264 with x264, in a process of its own.

Run by ``decisions.write_video`` as ``python x264_child.py FRAMES.npy OUT.mp4 FPS CRF
[TUNE]``: FRAMES.npy holds the 8-bit full-range frames, (n, H, W) uint8. Measured here
(PyAV 18, x264 core 165, one thread): in a process that had done other work (decoded,
scored, allocated) the same frames encoded to different bitstreams from one run to the
next — a sweep or two per benchmark condition changed its verdict — while a fresh process
encodes them the same every time.
"""

from __future__ import annotations

import sys
from fractions import Fraction

import av
import numpy as np

from media import yuv420_of  # this folder is the script's first path entry


def encode(frames: np.ndarray, path: str, fps: int, crf: int, tune: str | None) -> None:
    """Limited-range yuv420p H.264 (tagged as such, as a camera sends it) at ``crf``, x264's
    veryfast preset, one thread, and its ``tune`` if given."""
    n, height, width = frames.shape
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        if tune:
            options["tune"] = tune
        stream.options = options
        stream.codec_context.thread_count = 1  # PyAV's thread count overrides "threads"
        stream.codec_context.color_range = 1  # MPEG (limited) range
        stream.height, stream.width = height, width
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(yuv420_of(frames[k]), format="yuv420p")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


if __name__ == "__main__":
    frames_path, out_path, fps, crf, *tune = sys.argv[1:]
    encode(np.load(frames_path), out_path, int(fps), int(crf), tune[0] if tune else None)
