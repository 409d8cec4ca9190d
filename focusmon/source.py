"""Opening inputs and taking the luma plane out of each decoded frame.

A source yields `LumaFrame`s: a (H, W) uint8/uint16 view of the luma, never a colour
conversion where the decoder already has a luma plane, with the ``scale`` and ``offset``
that map its samples to 8-bit full-range grey levels.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ._errors import ConfigError, SourceError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".webp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})

# Pixel formats whose plane 0 is the luma, stored one sample per item.
_LUMA8 = re.compile(r"^(yuvj?|yuva)(420|422|444|440|411|410)p$|^nv(12|21|16|24|42)$|^gray$")
_LUMA16_LSB = re.compile(
    r"^(yuvj?|yuva)(420|422|444|440)p(9|10|12|14|16)le$|^gray(9|10|12|14|16)le$"
)
_LUMA16_MSB = re.compile(r"^p[024](10|12|16)le$")  # P010 & co: samples in the high bits
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2


@dataclass(frozen=True, slots=True)
class LumaFrame:
    """One decoded frame's luma and where it sits in the stream.

    Attributes
    ----------
    luma : ndarray, (H, W), uint8 or uint16
        A view of the decoder's plane (rows may be padded), or a converted copy.
    index : int
        Decode-order index, from 0.
    pts : float or None
        Presentation time in seconds, None where the stream has none.
    scale, offset : float
        ``(sample - offset) * scale`` is the sample in 8-bit full-range grey levels.
    """

    luma: np.ndarray
    index: int
    pts: float | None
    scale: float = 1.0
    offset: float = 0.0


def range_mapping(bits: int, full_range: bool) -> tuple[float, float]:
    """``(scale, offset)`` taking ``bits``-bit samples to 8-bit full-range grey levels.

    Limited ("video", MPEG) range puts black at 16 and white at 235, times 2**(bits - 8).
    """
    if full_range:
        return 255.0 / (2**bits - 1), 0.0
    step = 2 ** (bits - 8)
    return 255.0 / (219 * step), 16.0 * step


def luma_of(frame: av.VideoFrame) -> tuple[np.ndarray, float, float]:
    """The luma of a decoded frame as ``(array, scale, offset)``.

    A strided view of plane 0 for planar YUV, NV12-style and gray formats of 8 to 16 bits;
    any other format (RGB, palette, packed YUV, big-endian) is converted to gray once.
    """
    name = frame.format.name
    full = frame.color_range == _AVCOL_RANGE_JPEG or name.startswith("yuvj")
    if name.startswith("gray"):
        full = frame.color_range != _AVCOL_RANGE_MPEG
    if _LUMA8.match(name):
        return _plane_view(frame, np.uint8), *range_mapping(8, full)
    if _LUMA16_LSB.match(name):
        bits = frame.format.components[0].bits
        return _plane_view(frame, np.dtype("<u2")), *range_mapping(bits, full)
    if _LUMA16_MSB.match(name):
        return _plane_view(frame, np.dtype("<u2")), *range_mapping(16, full)
    deep = max(c.bits for c in frame.format.components) > 8
    gray = frame.reformat(format="gray16le" if deep else "gray")
    return _plane_view(gray, np.dtype("<u2") if deep else np.uint8), *range_mapping(
        16 if deep else 8, True
    )


def _plane_view(frame: av.VideoFrame, dtype: np.dtype | type) -> np.ndarray:
    plane = frame.planes[0]
    dtype = np.dtype(dtype)
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, : frame.width]


class Source:
    """Frames from one input. Iterate it once; use it as a context manager."""

    name: str
    total: int | None = None  # frames expected, when known (for progress)

    def __iter__(self) -> Iterator[LumaFrame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSource(Source):
    """Any container and codec PyAV opens; decoding uses frame threads on every core."""

    def __init__(self, path: str) -> None:
        self.name = path
        try:
            self._container = av.open(path)
        except av.error.FileNotFoundError as exc:
            raise SourceError(f"no such file: {path}") from exc
        except av.error.FFmpegError as exc:
            raise SourceError(f"cannot open {path}: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.total = self._stream.frames or None

    def __iter__(self) -> Iterator[LumaFrame]:
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                luma, scale, offset = luma_of(frame)
                yield LumaFrame(luma, index, frame.time, scale, offset)
                index += 1
        except av.error.FFmpegError as exc:
            raise SourceError(f"decoding {self.name} failed at frame {index}: {exc}") from exc

    def close(self) -> None:
        self._container.close()


class ImageSource(Source):
    """One image file, or every page of a (multi-page) TIFF, 8 or 16 bit, read by OpenCV."""

    def __init__(self, path: str) -> None:
        self.name = path
        if not os.path.isfile(path):
            raise SourceError(f"no such file: {path}")
        self._path = path
        if Path(path).suffix.lower() in TIFF_SUFFIXES:
            self.total = cv2.imcount(path) or None
        else:
            self.total = 1

    def __iter__(self) -> Iterator[LumaFrame]:
        if Path(self._path).suffix.lower() in TIFF_SUFFIXES:
            ok, pages = cv2.imreadmulti(self._path, flags=cv2.IMREAD_UNCHANGED)
        else:
            page = cv2.imread(self._path, cv2.IMREAD_UNCHANGED)
            ok, pages = page is not None, [page]
        if not ok:
            raise SourceError(f"cannot read {self._path} as an image")
        for index, page in enumerate(pages):
            luma = _gray_of(page, self._path)
            scale, offset = range_mapping(8 * luma.itemsize, True)
            yield LumaFrame(luma, index, None, scale, offset)


def _gray_of(image: np.ndarray, path: str) -> np.ndarray:
    if image.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"{path}: samples must be 8 or 16 bit integers, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return image


class DemoSource(Source):
    """A synthetic camera: a textured scene that drifts in and out of focus, 25 fps.

    Rendered, not loaded, so ``focusmon score demo`` works on a fresh machine. Sharp at
    t = 0, most blurred (Gaussian sigma ``max_sigma``) every ``period_s`` / 2.
    """

    def __init__(
        self,
        frames: int = 250,
        size: tuple[int, int] = (640, 360),
        fps: float = 25.0,
        period_s: float = 4.0,
        max_sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        if frames < 1:
            raise ConfigError(f"`frames` must be >= 1, got {frames}")
        self.name = "demo"
        self.total = frames
        self._fps, self._period_s, self._max_sigma = fps, period_s, max_sigma
        self._rng = np.random.default_rng(seed)
        self._scene = _render_scene(size, self._rng)

    def sigma_at(self, t: float) -> float:
        """The blur of the frame shown at time ``t`` (seconds)."""
        return self._max_sigma * (1 - math.cos(2 * math.pi * t / self._period_s)) / 2

    def __iter__(self) -> Iterator[LumaFrame]:
        height, width = self._scene.shape
        for index in range(self.total):
            t = index / self._fps
            dx = round(8 * math.sin(2 * math.pi * t / 5.0))  # whole-pixel pan: no resampling blur
            shift = np.float32([[1, 0, dx], [0, 1, 0]])
            frame = cv2.warpAffine(
                self._scene, shift, (width, height), borderMode=cv2.BORDER_REFLECT_101
            )
            sigma = self.sigma_at(t)
            if sigma > 0.05:
                frame = cv2.GaussianBlur(frame, (0, 0), sigma)
            noise = self._rng.normal(0.0, 2.0, frame.shape)
            frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
            yield LumaFrame(frame, index, t)


def _render_scene(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    scene = np.full((height, width), 110, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        color = int(rng.integers(20, 235))
        if rng.random() < 0.5:
            w, h = int(rng.integers(10, width // 4)), int(rng.integers(10, height // 4))
            cv2.rectangle(scene, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(scene, (x, y), int(rng.integers(5, height // 6)), color, -1)
    for row in range(0, height, 40):
        text = "focusmon 0123456789"
        cv2.putText(scene, text, (10, row + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 240, 2)
        cv2.putText(scene, text, (12, row + 32), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 15, 1)
    return scene


def open_source(spec: str) -> Source:
    """Open ``spec``: ``demo``, an image or TIFF stack, or anything PyAV opens.

    Raises
    ------
    SourceError
        If it does not exist, cannot be opened or has no video.
    """
    if spec == "demo":
        return DemoSource()
    suffix = Path(spec).suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix in TIFF_SUFFIXES:
        return ImageSource(spec)
    if "://" not in spec and not os.path.exists(spec):
        raise SourceError(f"no such file: {spec}")
    return VideoFileSource(spec)
