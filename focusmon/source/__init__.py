"""Opening inputs and taking the luma plane out of each decoded frame.

A source yields `LumaFrame`s: a (H, W) uint8/uint16 view of the luma, never a colour
conversion where the decoder already has a luma plane, with the ``scale`` and ``offset``
that map its samples to 8-bit full-range grey levels. `open_source` picks the kind:

* ``demo`` — the built-in synthetic camera;
* a folder, an image, a (multi-page, 8/16-bit) TIFF — `ImageSource`;
* ``rtsp://``, ``rtsps://``, ``udp://``, ``http(s)://``, ``/dev/videoN`` — `LiveSource`,
  bounded by timeouts and reopened when it drops;
* anything else PyAV opens — `VideoFileSource`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import SourceError
from ._base import Source, SourceOptions, SourceState, SourceStats, VideoFileSource
from ._demo import DemoCamera, DemoSource
from ._frame import DeviceLuma, LumaFrame, Timeline, luma_of, range_mapping
from ._images import STILL_SUFFIXES, ImageSource
from ._live import FFMPEG_OPTIONS, LiveSource, check_ffmpeg_options, kind_of, redact

__all__ = [
    "FFMPEG_OPTIONS",
    "DemoCamera",
    "DemoSource",
    "DeviceLuma",
    "ImageSource",
    "LiveSource",
    "LumaFrame",
    "Source",
    "SourceOptions",
    "SourceState",
    "SourceStats",
    "Timeline",
    "VideoFileSource",
    "check_ffmpeg_options",
    "kind_of",
    "luma_of",
    "open_source",
    "range_mapping",
    "redact",
]


def open_source(
    spec: str, options: SourceOptions | None = None, *, live_demo: bool = False
) -> Source:
    """Open ``spec`` (see the module docstring for what it may be).

    Live sources connect at once and raise if they cannot, unless
    ``options.retry_first_connect`` is set. ``demo`` is a finite clip, or with
    ``live_demo`` the endless live `DemoCamera` (for ``focusmon watch``).

    Raises
    ------
    SourceError
        If it does not exist, cannot be opened or has no video. Messages never contain a
        URL's credentials.
    ConfigError
        If an option does not fit the kind of source.
    """
    options = options or SourceOptions()
    if spec == "demo":
        return DemoCamera(options=options) if live_demo else DemoSource(options=options)
    if kind_of(spec) is not None:
        return LiveSource(spec, options)
    if Path(spec).is_dir() or Path(spec).suffix.lower() in STILL_SUFFIXES:
        return ImageSource(spec, options)
    if "://" not in spec and not os.path.exists(spec):
        raise SourceError(f"no such file: {redact(spec)}")
    check_ffmpeg_options("file", options.ffmpeg_options)
    return VideoFileSource(spec, options)
