"""Making real encoded media for tests, with PyAV (lossless codecs where values matter)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    pix_fmt: str,
    codec: str = "ffv1",
    rate: int = 25,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (arrays in the layout `av.VideoFrame.from_ndarray` takes for
    ``pix_fmt``) to ``path``."""
    frames = list(frames)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = pix_fmt
        stream.height, stream.width = _size(frames[0], pix_fmt)
        if options:
            stream.options = options
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format=pix_fmt)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _size(array: np.ndarray, pix_fmt: str) -> tuple[int, int]:
    if pix_fmt.startswith(("yuv420p", "nv12")):
        return array.shape[0] * 2 // 3, array.shape[1]
    if pix_fmt.startswith(("yuv444p",)):
        return array.shape[1], array.shape[2]
    return array.shape[0], array.shape[1]


def yuv420_of(gray: np.ndarray, *, bits: int = 8, limited: bool = True) -> np.ndarray:
    """The (1.5 H, W) yuv420p buffer whose luma is ``gray`` (8-bit full range) in the given
    depth and range, and whose chroma is neutral."""
    h, w = gray.shape
    step = 2 ** (bits - 8)
    if limited:
        y = np.rint(16 * step + gray.astype(np.float64) * 219 * step / 255)
    else:
        y = np.rint(gray.astype(np.float64) * (2**bits - 1) / 255)
    dtype = np.uint8 if bits == 8 else np.uint16
    out = np.full((h * 3 // 2, w), 128 * step, dtype)
    out[:h] = y.astype(dtype)
    return out


def write_tone(path: Path, seconds: float = 0.3, rate: int = 8000) -> Path:
    """An audio-only file: a 440 Hz tone, no video stream."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)[None, :]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def ffmpeg_clip(path: Path, graph: str, seconds: float, *args: str) -> Path:
    """Encode ``seconds`` of the lavfi ``graph`` with the ffmpeg CLI (extra ``args`` before
    the output, e.g. codec options); the container follows ``path``'s suffix."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", graph, "-t", str(seconds), *args, str(path)]  # fmt: skip
    subprocess.run(command, check=True, timeout=120)
    return path


def h264_clip(
    path: Path, seconds: float = 2.0, *args: str, size: str = "320x240", gop: int = 25
) -> Path:
    """A moving test pattern in H.264 at 25 fps, a keyframe every ``gop`` frames."""
    return ffmpeg_clip(
        path, f"testsrc2=size={size}:rate=25", seconds,
        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p", *args,
    )  # fmt: skip


def panned_clip(
    path: Path,
    seconds: float,
    size: tuple[int, int] = (1920, 1080),
    *,
    fps: int = 25,
    gop: int = 50,
) -> Path:
    """Photographs side by side, panned and slowly zoomed, in H.264 (x264 veryfast): the
    pipeline benchmarks' clip."""
    import cv2
    import skimage.data

    tiles = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    tiles = [cv2.resize(t, (900, 900), interpolation=cv2.INTER_CUBIC) for t in tiles]
    scene = np.hstack(tiles)  # 2700 x 900 RGB
    scene = cv2.resize(scene, (3600, 1200), interpolation=cv2.INTER_CUBIC)
    width, height = size
    frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        for i in range(frames):
            t = i / fps
            zoom = 1.0 + 0.1 * np.sin(2 * np.pi * t / 8)
            x0 = (scene.shape[1] - width * zoom) * (0.5 + 0.5 * np.sin(2 * np.pi * t / 10))
            y0 = (scene.shape[0] - height * zoom) / 2
            warp = np.float32([[zoom, 0, x0], [0, zoom, y0]])
            view = cv2.warpAffine(
                scene, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
            out.mux(stream.encode(av.VideoFrame.from_ndarray(view, format="rgb24")))
        out.mux(stream.encode())
    return path
