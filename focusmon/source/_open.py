"""Picking the kind of source for what the user named."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .._errors import SourceError
from ._base import Source, SourceOptions, VideoFileSource
from ._demo import DemoCamera, DemoSource
from ._images import STILL_SUFFIXES, ImageSource
from ._live import LiveSource, check_ffmpeg_options, kind_of
from ._names import safe_name


def open_source(
    spec: str,
    options: SourceOptions | None = None,
    *,
    live_demo: bool = False,
    stream: str = "",
) -> Source:
    """Open ``spec`` (see the module docstring for what it may be).

    Live sources connect at once and raise if they cannot, unless
    ``options.retry_first_connect`` is set. ``demo`` is a finite clip, or with
    ``live_demo`` the endless live `DemoCamera` (for ``focusmon watch``). ``stream`` is
    the name the source is watched as, which its log lines start with.

    Raises
    ------
    SourceError
        If it does not exist, cannot be opened or has no video. Messages never contain a
        URL's credentials.
    ConfigError
        If an option does not fit the kind of source.
    """
    source = _open(spec, options or SourceOptions(), live_demo)
    source.stream = stream
    return source


def _open(spec: str, options: SourceOptions, live_demo: bool) -> Source:
    if spec == "demo":
        return DemoCamera(options=options) if live_demo else DemoSource(options=options)
    if kind_of(spec) is not None:
        return LiveSource(spec, options)
    if Path(spec).is_dir() or Path(spec).suffix.lower() in STILL_SUFFIXES:
        return ImageSource(spec, options)
    if "://" not in spec and not os.path.exists(spec):
        raise SourceError(f"no such file: {safe_name(spec)}")
    if "://" not in spec and not Path(spec).is_file():
        # A FIFO, a socket or a device would be read with no timeout: a read could wait for
        # ever. (V4L2 devices are live sources, above.)
        kind = _kind_of_file(spec)
        raise SourceError(f"{spec}: not a regular file ({kind}); focusmon reads files, "
                          "folders of images, URLs and /dev/videoN")  # fmt: skip
    check_ffmpeg_options("file", options.ffmpeg_options)
    return VideoFileSource(spec, options)


def _kind_of_file(path: str) -> str:
    mode = os.stat(path).st_mode
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a file"
