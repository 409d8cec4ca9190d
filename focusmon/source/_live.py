"""Network cameras and devices: bounded opens and reads, reconnects, redacted names.

Facts this module is built on (../shared/TESTING.md): a stalled server hangs PyAV forever
unless both the protocol's own timeout and ``av.open(timeout=)`` are set; FFmpeg ignores
option names it does not know, silently; a killed server ends the decode loop as if the
stream had ended; RTSP and UDP must be reopened by us.
"""

from __future__ import annotations

import errno
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av

from .._errors import ConfigError, SourceError, SourceTimeout
from ._base import (
    Source,
    SourceOptions,
    SourceState,
    _ffmpeg_message,
    check_video,
    ended_early,
    no_device_message,
    open_container,
)
from ._frame import LumaFrame
from ._names import Scrubber, safe_name

log = logging.getLogger("focusmon.source")

LIVE_SCHEMES = {"rtsp": "rtsp", "rtsps": "rtsp", "udp": "udp", "http": "http", "https": "http"}
_V4L2_DEVICE = re.compile(r"^/dev/video\d+$")
# An http(s) URL of a whole file ends, and is read without dropping frames.
_FILE_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".flv")
_MJPEG_SUFFIXES = (".mjpg", ".mjpeg")
UDP_BUFFER_BYTES = 8 * 2**20

#: The FFmpeg option names focusmon passes or accepts from users, per kind of source.
#: FFmpeg ignores unknown names without a word, so a typo would silently lose a timeout;
#: names outside this table are refused, and a test checks every one against FFmpeg.
FFMPEG_OPTIONS: Mapping[str, frozenset[str]] = {
    kind: frozenset(names) | {"fflags", "probesize", "analyzeduration", "max_delay"}
    for kind, names in {
        "rtsp": {"rtsp_transport", "timeout", "buffer_size", "reorder_queue_size",
                 "user_agent", "allowed_media_types", "min_port", "max_port"},
        "http": {"rw_timeout", "reconnect", "reconnect_streamed", "reconnect_at_eof",
                 "reconnect_on_network_error", "reconnect_delay_max", "user_agent",
                 "headers", "multiple_requests", "tls_verify", "ca_file"},
        "udp": {"timeout", "buffer_size", "fifo_size", "overrun_nonfatal", "localaddr"},
        "v4l2": {"video_size", "framerate", "input_format", "standard", "timestamps"},
        "file": set(),
    }.items()
}  # fmt: skip


def kind_of(spec: str) -> str | None:
    """``rtsp``, ``udp``, ``http`` or ``v4l2`` for a live source spec, else None."""
    if _V4L2_DEVICE.match(spec):
        return "v4l2"
    return LIVE_SCHEMES.get(urlsplit(spec).scheme.lower())


def check_ffmpeg_options(kind: str, options: Mapping[str, str]) -> None:
    """Refuse option names FFmpeg would ignore for this kind of source.

    Raises
    ------
    ConfigError
        Naming the unknown option and the ones allowed.
    """
    allowed = FFMPEG_OPTIONS[kind]
    for name in options:
        if name not in allowed:
            raise ConfigError(
                f"unknown FFmpeg option {name!r} for a {kind} source; "
                f"expected one of {', '.join(sorted(allowed))}"
            )


def open_arguments(
    url: str, kind: str, options: SourceOptions
) -> tuple[str, str | None, dict[str, str]]:
    """``(url, format, options)`` for `av.open`, with the protocol's own timeouts set."""
    check_ffmpeg_options(kind, options.ffmpeg_options)
    timeout_us = str(round(options.timeout_s * 1e6))
    fmt = options.format
    ours: dict[str, str] = {}
    if kind == "rtsp":
        # `timeout` is RTSP's socket timeout; `stimeout` and `rw_timeout` are ignored.
        transport = "tcp" if options.rtsp_transport == "auto" else options.rtsp_transport
        ours = {"rtsp_transport": transport, "timeout": timeout_us}
    elif kind == "http":
        ours = {
            "rw_timeout": timeout_us,
            "reconnect": "1",
            "reconnect_streamed": "1",
            "reconnect_on_network_error": "1",
            "reconnect_delay_max": str(max(1, int(options.timeout_s))),
        }
        if fmt is None and urlsplit(url).path.lower().endswith(_MJPEG_SUFFIXES):
            fmt = "mpjpeg"
    elif kind == "udp":
        # UDP takes its timeout in the URL; the overrun flags keep a slow reader alive.
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("timeout", timeout_us)
        query.setdefault("overrun_nonfatal", "1")
        query.setdefault("fifo_size", "50000")
        # The socket's own buffer: a keyframe is a burst of hundreds of datagrams, and the
        # 200 KB default loses ~8% of a 720p stream's frames here (measured).
        query.setdefault("buffer_size", str(UDP_BUFFER_BYTES))
        url = urlunsplit(parts._replace(query=urlencode(query)))
    elif kind == "v4l2":
        fmt = fmt or "v4l2"
    return url, fmt, {**ours, **options.ffmpeg_options}


class Backoff:
    """Capped exponential waits with jitter: ``initial * 2**k``, at most ``cap``, times a
    random factor in [0.5, 1] so that many cameras behind one switch do not retry in step."""

    def __init__(self, initial_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self._initial, self._cap = initial_s, max(cap_s, initial_s)
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        base = min(self._cap, self._initial * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return base * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0


class LiveSource(Source):
    """An RTSP/UDP/HTTP stream or a V4L2 device, reopened whenever it drops.

    Every open and read is bounded by the options' timeouts. An end of stream, a read
    timeout or an error is a disconnect: the source waits (`Backoff`) and reopens, counting
    reconnects, and goes on yielding frames with a continuous timeline. The name, every log
    line and every error carry the URL with its credentials redacted.

    An http(s) URL of a whole file (``.mp4``, ``.mkv`` …) is not live: it ends at its end
    and drops nothing.
    """

    def __init__(
        self,
        url: str,
        options: SourceOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(options, clock=clock)
        kind = kind_of(url)
        self.name = safe_name(url, self.options.show_query_keys)
        if kind is None:
            raise ConfigError(f"not a live source: {self.name}")
        self.kind = kind
        # Whatever FFmpeg says of the URL (its errors quote it whole) is cleaned of it.
        self._scrubber = Scrubber()
        self._scrubber.add(url, self.options.show_query_keys)
        self.live = not (kind == "http" and urlsplit(url).path.lower().endswith(_FILE_SUFFIXES))
        self._target = open_arguments(url, kind, self.options)
        self._backoff = Backoff(
            self.options.reconnect_initial_s, self.options.reconnect_max_s, rng
        )
        self._container: av.container.InputContainer | None = None
        self._iterating = False
        self._device = True  # try the hwaccel device (until it is found missing)
        if not self.options.retry_first_connect:
            self._container = self._connect()

    def _clean(self, text: str) -> str:
        return self._scrubber(text)

    def _connect(self) -> av.container.InputContainer:
        url, fmt, options = self._target
        timeouts = (self.options.open_timeout, self.options.timeout_s)
        try:
            container, no_device = open_container(
                url, self.options, device=self._device, format=fmt, options=options,
                timeout=timeouts,
            )  # fmt: skip
        except (av.error.FFmpegError, OSError) as exc:
            # Not chained: PyAV's error carries the URL, credentials included.
            if isinstance(exc, av.error.ExitError | TimeoutError):
                raise SourceTimeout(
                    f"{self.name}: no answer within {self.options.open_timeout:g} s"
                ) from None
            if self._refuses_tcp(exc):
                return self._connect()  # over UDP, now and from now on
            why = self._clean(_ffmpeg_message(exc))
            raise SourceError(f"cannot open {self.name}: {why}") from None
        if no_device is not None:  # said once; reconnections go straight to the CPU
            self._device = False
            message = self._clean(no_device_message(self.options, no_device))
            log.warning("%s", self._said(f"{self.name}: {message}"))
        check_video(container, self.name, self.options.max_pixels)
        return container

    def _refuses_tcp(self, exc: BaseException) -> bool:
        """Whether an RTSP camera refused RTP over TCP (``461 Unsupported transport``, which
        FFmpeg reports as EPROTONOSUPPORT) while ``auto`` asked for it; if so, the source
        takes UDP from now on and says so once."""
        url, fmt, options = self._target
        wanted = self.kind == "rtsp" and self.options.rtsp_transport == "auto"
        if not wanted or options.get("rtsp_transport") != "tcp":
            return False
        if getattr(exc, "errno", None) != errno.EPROTONOSUPPORT:
            return False
        self._target = (url, fmt, {**options, "rtsp_transport": "udp"})
        log.warning(
            "%s", self._said(f"{self.name}: the camera does not offer RTP over TCP; taking "
                             "UDP (rtsp_transport = \"udp\" skips asking for TCP)"),
        )  # fmt: skip
        return True

    def _connect_with_retry(self) -> av.container.InputContainer | None:
        """A fresh connection, or None if asked to stop. Raises SourceError when out of
        attempts."""
        failures = 0
        while not self.stopping:
            try:
                return self._connect()
            except SourceError as exc:
                failures += 1
                limit = self.options.reconnect_attempts
                if limit is not None and failures > limit:
                    raise SourceError(f"{exc} (gave up after {failures} attempts)") from None
                delay = self._backoff.next_delay()
                log.warning("%s; retrying in %.1f s", self._said(str(exc)), delay)
                if self._stop.wait(delay):
                    return None
        return None

    def __iter__(self) -> Iterator[LumaFrame]:
        self._iterating = True
        try:
            while not self.stopping:
                container, self._container = self._container, None
                if container is None:
                    container = self._connect_with_retry()
                    if container is None:
                        return
                self._enter(SourceState.UP)
                log.info("%s", self._said(f"{self.name}: connected"))
                delivered = self.stats.decoded
                try:
                    yield from self._decode(container)
                    reason = "the stream ended"
                    if not self.live and not self.stopping:  # a whole file over HTTP
                        self.stats.ended_early = ended_early(container, self.stats)
                except SourceError as exc:
                    if not self.live:  # a whole file over HTTP: how far it got, and why not
                        raise SourceError(
                            f"{self.name}: decoding stopped at frame {self.stats.decoded} "
                            f"of {container.streams.video[0].frames or '?'}: "
                            f"{self._clean(str(exc))}"
                        ) from None
                    reason = self._clean(str(exc))
                finally:
                    container.close()
                if self.stopping or not self.live:
                    return
                if self.stats.decoded > delivered:
                    self._backoff.reset()  # it worked for a while: start the waits afresh
                self.stats.reconnects += 1
                self._enter(SourceState.RECONNECTING)
                delay = self._backoff.next_delay()
                log.warning(
                    "%s (%s); reconnecting in %.1f s",
                    self._said(f"{self.name}: disconnected"), reason, delay,
                )  # fmt: skip
                if self._stop.wait(delay):
                    return
        finally:
            self._enter(SourceState.ENDED)

    def close(self) -> None:
        super().close()
        if not self._iterating and self._container is not None:
            self._container.close()
            self._container = None
