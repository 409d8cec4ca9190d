"""Opening inputs and taking the luma plane out of each decoded frame.

A source yields `LumaFrame`s: a (H, W) uint8/uint16 view of the luma, never a colour
conversion where the decoder already has a luma plane, with the ``scale`` and ``offset``
that map its samples to 8-bit full-range grey levels. `open_source` picks the kind:

* ``demo`` — the built-in synthetic camera;
* a folder, an image, a (multi-page, 8/16-bit) TIFF — `ImageSource`;
* ``rtsp://``, ``rtsps://``, ``udp://``, ``http(s)://``, ``/dev/videoN`` — `LiveSource`,
  bounded by timeouts and reopened when it drops, named by `safe_name` (never its
  credentials);
* anything else PyAV opens — `VideoFileSource`.
"""

from __future__ import annotations

from ._base import (
    RTSP_TRANSPORTS,
    Source,
    SourceOptions,
    SourceState,
    SourceStats,
    VideoFileSource,
)
from ._demo import DemoCamera, DemoSource
from ._frame import DeviceLuma, LumaFrame, Timeline, luma_of, range_mapping
from ._images import ImageSource
from ._live import FFMPEG_OPTIONS, LiveSource, check_ffmpeg_options, kind_of
from ._names import Scrubber, redact, safe_name
from ._open import open_source
from ._stack import StackLayout, stack_layout

__all__ = [
    "FFMPEG_OPTIONS",
    "RTSP_TRANSPORTS",
    "DemoCamera",
    "DemoSource",
    "DeviceLuma",
    "ImageSource",
    "LiveSource",
    "LumaFrame",
    "Scrubber",
    "Source",
    "SourceOptions",
    "SourceState",
    "SourceStats",
    "StackLayout",
    "Timeline",
    "VideoFileSource",
    "check_ffmpeg_options",
    "kind_of",
    "luma_of",
    "open_source",
    "range_mapping",
    "redact",
    "safe_name",
    "stack_layout",
]
