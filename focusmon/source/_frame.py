"""A decoded frame's luma, its units, and a timeline that never runs backwards."""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass

import av
import numpy as np

from .._errors import SourceError

# Pixel formats whose plane 0 is the luma, stored one sample per item.
_LUMA8 = re.compile(r"^(yuvj?|yuva)(420|422|444|440|411|410)p$|^nv(12|21|16|24|42)$|^gray$")
_LUMA16_LSB = re.compile(
    r"^(yuvj?|yuva)(420|422|444|440)p(9|10|12|14|16)le$|^gray(9|10|12|14|16)le$"
)
_LUMA16_MSB = re.compile(r"^p[024](10|12|16)le$")  # P010 & co: samples in the high bits
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2
_U16 = np.dtype("<u2")


@dataclass(frozen=True, slots=True)
class LumaFrame:
    """One decoded frame's luma and where it sits in the stream.

    Attributes
    ----------
    luma : ndarray, (H, W), uint8 or uint16, or DeviceLuma
        A view of the decoder's plane (rows may be padded), or a converted copy; with
        ``hw_frames``, the plane on the GPU.
    index : int
        Decode-order index, from 0, counting every decoded frame (skipped ones too).
    pts : float or None
        Presentation time in seconds, never decreasing; derived from the frame rate where
        the stream has none. None only for still images.
    scale, offset : float
        ``(sample - offset) * scale`` is the sample in 8-bit full-range grey levels.
    arrival : float or None
        ``time.monotonic()`` when the decoder delivered the frame (live sources).
    qp : float or None
        The encoder's mean quantiser on this frame (H.264's QP scale, `quantiser_of`),
        where the source was asked for it (``SourceOptions.quantiser``) and the codec
        tells it; None otherwise.
    pict_type : str or None
        How the encoder coded this frame, as the decoder tells (`pict_type_of`): ``I``
        (whole), ``P`` (from earlier frames), ``B`` (from earlier and later ones), or
        FFmpeg's rarer ``S``, ``SI``, ``SP``, ``BI``; with the quantiser, else None.
    key : bool
        A keyframe was decoded since the previous frame handed on (this one, or one that
        ``every``/``max_fps`` skipped): a picture coded whole, not from the last one.
        True for images and intra-only codecs.
    """

    luma: np.ndarray | DeviceLuma
    index: int
    pts: float | None
    scale: float = 1.0
    offset: float = 0.0
    arrival: float | None = None
    key: bool = True
    qp: float | None = None
    pict_type: str | None = None


def range_mapping(bits: int, full_range: bool) -> tuple[float, float]:
    """``(scale, offset)`` taking ``bits``-bit samples to 8-bit full-range grey levels.

    Limited ("video", MPEG) range puts black at 16 and white at 235, times 2**(bits - 8).
    """
    if full_range:
        return 255.0 / (2**bits - 1), 0.0
    step = 2 ** (bits - 8)
    return 255.0 / (219 * step), 16.0 * step


@functools.lru_cache(maxsize=64)
def _luma_layout(name: str) -> tuple[str, int]:
    """How to read the luma of pixel format ``name``: (kind, sample bits). Per format, not
    per frame: the decoder thread's Python work per frame is kept small."""
    components = av.VideoFormat(name).components
    if _LUMA8.match(name):
        return "view", 8
    if _LUMA16_LSB.match(name):
        return "view16", components[0].bits
    if _LUMA16_MSB.match(name):
        return "view16", 16
    return "convert", 16 if max(c.bits for c in components) > 8 else 8


def luma_of(frame: av.VideoFrame) -> tuple[np.ndarray, float, float]:
    """The luma of a decoded frame as ``(array, scale, offset)``.

    A strided view of plane 0 for planar YUV, NV12-style and gray formats of 8 to 16 bits;
    any other format (RGB, palette, packed YUV, big-endian) is converted to gray once.

    Raises
    ------
    SourceError
        If the frame's format cannot be converted to gray.
    """
    name = frame.format.name
    if name == "cuda":  # decoded by NVDEC and left on the GPU (hwaccel, hw_frames)
        return _device_luma(frame)
    kind, bits = _luma_layout(name)
    if name.startswith("gray"):
        full = frame.color_range != _AVCOL_RANGE_MPEG
    else:
        full = frame.color_range == _AVCOL_RANGE_JPEG or name.startswith("yuvj")
    if kind == "view":
        return _plane_view(frame, np.uint8), *range_mapping(8, full)
    if kind == "view16":
        return _plane_view(frame, _U16), *range_mapping(bits, full)
    try:
        gray = frame.reformat(format="gray16le" if bits > 8 else "gray")
    except (av.error.FFmpegError, ValueError) as exc:
        raise SourceError(f"unsupported pixel format {name!r}: {exc}") from exc
    return _plane_view(gray, _U16 if bits > 8 else np.uint8), *range_mapping(bits, True)


#: FFmpeg's AVVideoEncParams: nb_blocks (uint, padded), blocks_offset and block_size
#: (size_t), type (enum), qp (int32); then the blocks, each AVVideoBlockParams: src_x,
#: src_y, w, h, delta_qp (int32). libavutil/video_enc_params.h.
_ENC_PARAMS_HEAD = struct.Struct("<I4xQQii")
_ENC_BLOCK = np.dtype([("x", "<i4"), ("y", "<i4"), ("w", "<i4"), ("h", "<i4"), ("dqp", "<i4")])
_ENC_PARAMS_H264 = 1  # AV_VIDEO_ENC_PARAMS_H264: the H.264 (and HEVC-like) 0-51 scale


def quantiser_of(frame: av.VideoFrame) -> float | None:
    """The mean quantiser (H.264's QP, 0-51) the encoder used on ``frame``: the frame's QP
    plus its blocks' deltas, weighted by their area; None where the decoder exported no
    H.264 encoding parameters (open the decoder with ``export_side_data=venc_params``).
    How coarsely the picture was quantised: the finest detail it lost."""
    for data in frame.side_data:
        if data.type.name != "VIDEO_ENC_PARAMS":
            continue
        raw = bytes(data)
        if len(raw) < _ENC_PARAMS_HEAD.size:
            return None
        n, offset, size, kind, qp = _ENC_PARAMS_HEAD.unpack_from(raw)
        if kind != _ENC_PARAMS_H264:
            return None
        if n == 0 or size != _ENC_BLOCK.itemsize or offset + n * size > len(raw):
            return float(qp)
        blocks = np.frombuffer(raw, _ENC_BLOCK, n, offset)
        area = blocks["w"].astype(np.float64) * blocks["h"]
        total = float(area.sum())
        if not total > 0:
            return float(qp)
        return float(qp + float((blocks["dqp"] * area).sum()) / total)
    return None


#: FFmpeg's AVPictureType, from 1 (0 is "none"): libavutil/avutil.h.
_PICT_TYPES = ("I", "P", "B", "S", "SI", "SP", "BI")


def pict_type_of(frame: av.VideoFrame) -> str | None:
    """How the encoder coded ``frame`` (``I``, ``P``, ``B``, ...; see `LumaFrame`), as the
    decoder tells it; None where it tells none."""
    try:
        code = int(frame.pict_type)
    except (TypeError, ValueError):  # PyAV before 13 gave an enum item: its name
        name = getattr(frame.pict_type, "name", None)
        return name if name in _PICT_TYPES else None
    return _PICT_TYPES[code - 1] if 1 <= code <= len(_PICT_TYPES) else None


class DeviceLuma:
    """Plane 0 of a frame decoded on the GPU and left there: a DLPack producer, with the
    ``shape`` and ``dtype`` a kernel checks. Only a GPU backend scores it, without a copy
    through the host; it keeps its frame (and so the device memory) alive."""

    def __init__(self, frame: av.VideoFrame, dtype: np.dtype) -> None:
        self._frame, self._plane = frame, frame.planes[0]
        self.shape = (frame.height, frame.width)
        self.dtype = dtype

    def __dlpack__(self, *, stream: int | None = None) -> object:
        """The plane's DLPack capsule, for a consumer on the legacy default stream.

        FFmpeg's NVDEC decoder queues the frame's last copy on its device context's stream,
        which PyAV leaves unset: the legacy default stream (of the primary context, which
        PyAV makes it share with CuPy and Numba). A consumer working there (``stream`` 1,
        or None, DLPack's default) is ordered after that copy by the stream itself. Any
        other stream is refused with BufferError, since this frame cannot make it wait
        (PyAV refuses every stream): the consumer then takes it with stream 1 and orders
        its own stream after the legacy one, as the CUDA backend does.
        """
        if stream not in (None, 1):
            raise BufferError(
                f"this frame was written on the legacy default stream; take it with "
                f"stream=1 and wait for that stream, not on stream {stream!r}"
            )
        return self._plane.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._plane.__dlpack_device__()


def _device_luma(frame: av.VideoFrame) -> tuple[DeviceLuma, float, float]:
    name = frame.sw_format.name if frame.sw_format is not None else "?"
    if name not in ("nv12", "p010le", "p016le"):  # what PyAV exports by DLPack
        raise SourceError(f"frames decoded on the GPU as {name!r} cannot be scored there")
    full = frame.color_range == _AVCOL_RANGE_JPEG
    if name == "nv12":
        return DeviceLuma(frame, np.dtype(np.uint8)), *range_mapping(8, full)
    return DeviceLuma(frame, _U16), *range_mapping(16, full)  # samples in the high bits


def _plane_view(frame: av.VideoFrame, dtype: np.dtype | type) -> np.ndarray:
    plane = frame.planes[0]
    dtype = np.dtype(dtype)
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, : frame.width]


class Timeline:
    """Seconds for each frame of one source, never decreasing.

    Stream time where the frame has it. A frame without (raw H.264, the first RTSP frame)
    comes one frame interval after the previous one, or, with no known rate, as much later
    as it arrived. A jump back (a reconnected stream restarting at 0, a broken muxer)
    shifts the rest of the stream so that time goes on from where it was.
    """

    def __init__(self, step_s: float | None = None) -> None:
        self._step: float | None = None
        self.set_step(step_s)
        self._last: float | None = None
        self._last_arrival = 0.0
        self._shift = 0.0

    def set_step(self, step_s: float | None) -> None:
        """The frame interval, where known (a reconnected stream may bring a new one)."""
        self._step = step_s if step_s and step_s > 0 else None

    def time_of(self, pts_s: float | None, arrival: float) -> float:
        last = self._last
        if last is None:
            t = 0.0 if pts_s is None else pts_s
        elif pts_s is None:
            t = last + (self._step if self._step else max(arrival - self._last_arrival, 0.0))
        else:
            t = pts_s + self._shift
            if t < last:
                t = last + (self._step or 0.0)
                self._shift = t - pts_s
        self._last, self._last_arrival = t, arrival
        return t
