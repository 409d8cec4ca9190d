"""What every source shares: its options, counters and state, and the decode loop."""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import av
from av.codec.hwaccel import HWAccel, hwdevices_available

from .._errors import ConfigError, SourceError, check_int, check_positive
from ._frame import LumaFrame, Timeline, luma_of, pict_type_of, quantiser_of

log = logging.getLogger("focusmon.source")

#: RTSP's media transports: ``auto`` is TCP, then UDP where the camera refuses TCP.
RTSP_TRANSPORTS = ("auto", "tcp", "udp")
#: Consecutive packets that fail to decode, with no frame in between, before a stream is
#: declared undecodable rather than damaged.
MAX_UNDECODABLE_RUN = 64


class SourceState(str, enum.Enum):
    """Where a source is. Live sources cycle through all of them; files go up, then ended."""

    CONNECTING = "connecting"
    UP = "up"
    STALLED = "stalled"  # connected, but no frame for `SourceOptions.stall_s`
    RECONNECTING = "reconnecting"
    ENDED = "ended"


@dataclass(frozen=True)
class SourceOptions:
    """How to open and decode a source. Every field has a default that suits a file.

    Attributes
    ----------
    every : int
        Analyse every Nth decoded frame.
    max_fps : float or None
        Analyse at most this many frames per second of stream time.
    keyframes_only : bool
        Let the decoder skip every frame but keyframes (cheap checks of many cameras).
    decoder_threads : int
        Decoder threads; 0 lets FFmpeg use one per core.
    timeout_s : float
        Live sources: a read that waits longer is a disconnect.
    open_timeout_s : float or None
        Live sources: how long opening may take (default `timeout_s`).
    stall_s : float or None
        Live sources: no frame for this long is `stalled` (default half of `timeout_s`).
    rtsp_transport : {"auto", "tcp", "udp"}
        RTSP's media transport. ``auto`` asks for TCP (interleaved in the RTSP connection:
        no lost packets, one port) and takes UDP where the camera refuses TCP (VLC's
        server answers it 461), saying so once.
    format : str or None
        Force FFmpeg's demuxer (e.g. ``mpjpeg`` for an MJPEG camera).
    ffmpeg_options : mapping of str to str
        Extra options for FFmpeg; the names are checked (FFmpeg ignores unknown ones).
    reconnect_initial_s, reconnect_max_s : float
        Live sources: the first and the largest wait between reconnection attempts.
    reconnect_attempts : int or None
        Live sources: give up after this many failed attempts in a row (None: never).
    retry_first_connect : bool
        Live sources: keep trying when the very first connection fails (a service) rather
        than raise at once (a command).
    hwaccel : str or None
        Decode on this kind of device (``cuda``, ``vaapi``, ``qsv`` …: FFmpeg's hardware
        decoders). Where it cannot be had, the source says why in one log line and decodes
        on the CPU.
    hw_frames : bool
        With ``hwaccel``: leave decoded frames on the device (the luma is a `DeviceLuma`,
        which only a GPU backend scores) instead of copying them to host memory.
    show_query_keys : tuple of str
        Query keys of a URL whose values may be shown in the source's name (``channel``,
        ``subtype``); the rest of the query, like the user info, is shown as ``***``.
    max_pixels : int
        The largest frame or image (width x height) read: a larger one is refused before
        it is decoded, since a small file may declare a huge picture (a 2.7 MB PNG of
        30000 x 30000 would take 5 GB). The default, 100 megapixels, is 12K video.
    quantiser : bool
        Ask the decoder for each frame's quantiser (FFmpeg's exported encoding
        parameters; H.264 tells them) into `LumaFrame.qp`, and its picture type into
        `LumaFrame.pict_type`: how much of the finest detail the encoder threw away, and
        how it predicted the frame, which `focusmon.scheduler.find_peak` takes into account.
    """

    every: int = 1
    max_fps: float | None = None
    keyframes_only: bool = False
    decoder_threads: int = 0
    timeout_s: float = 10.0
    open_timeout_s: float | None = None
    stall_s: float | None = None
    rtsp_transport: str = "auto"
    format: str | None = None
    ffmpeg_options: Mapping[str, str] = field(default_factory=dict)
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_attempts: int | None = None
    retry_first_connect: bool = False
    hwaccel: str | None = None
    hw_frames: bool = False
    show_query_keys: tuple[str, ...] = ()
    max_pixels: int = 100_000_000
    quantiser: bool = False

    def __post_init__(self) -> None:
        check_int("max_pixels", self.max_pixels, 1)
        keys = self.show_query_keys
        if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"`show_query_keys` must be a list of query keys, got {keys!r}")
        object.__setattr__(self, "show_query_keys", tuple(keys))
        check_int("every", self.every, 1)
        check_int("decoder_threads", self.decoder_threads, 0)
        if self.reconnect_attempts is not None:
            check_int("reconnect_attempts", self.reconnect_attempts, 0)
        for name in ("max_fps", "open_timeout_s", "stall_s"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        for name in ("timeout_s", "reconnect_initial_s", "reconnect_max_s"):
            check_positive(name, getattr(self, name))
        if not isinstance(self.hw_frames, bool):
            raise ConfigError(f"`hw_frames` must be true or false, got {self.hw_frames!r}")
        if self.hwaccel is not None:
            kinds = hwdevices_available()
            if self.hwaccel not in kinds:
                raise ConfigError(
                    f"`hwaccel` must be one of FFmpeg's device types ({', '.join(kinds)}), "
                    f"got {self.hwaccel!r}"
                )
        elif self.hw_frames:
            raise ConfigError("`hw_frames` needs `hwaccel` (frames decoded on a device)")
        if self.format is not None and self.format not in av.formats_available:
            raise ConfigError(
                f"`format` must be the name of one of FFmpeg's demuxers (such as mpegts, "
                f"mpjpeg, rtsp; `ffmpeg -demuxers` lists them), got {self.format!r}"
            )
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ConfigError(
                f"`rtsp_transport` must be one of {', '.join(RTSP_TRANSPORTS)}, "
                f"got {self.rtsp_transport!r}"
            )

    @property
    def open_timeout(self) -> float:
        return self.open_timeout_s if self.open_timeout_s is not None else self.timeout_s

    @property
    def stall_after(self) -> float:
        return self.stall_s if self.stall_s is not None else self.timeout_s / 2


@dataclass(slots=True)
class SourceStats:
    """A source's counters. Written by the thread that decodes; others only read them."""

    decoded: int = 0  # frames out of the decoder
    analysed: int = 0  # frames scored (counted by the pipeline)
    dropped: int = 0  # live frames replaced by a newer one before they were scored
    corrupt: int = 0  # frames the decoder marked corrupt, skipped
    undecodable: int = 0  # packets the decoder rejected, skipped
    reconnects: int = 0
    last_frame_at: float | None = None  # time.monotonic() of the last decoded frame
    last_time: float | None = None  # the stream time (s) of the last decoded frame
    #: Why a file ended before its container said it would (a cut download), or None.
    ended_early: str | None = None


class Source:
    """Frames from one input. Iterate it once, on one thread; use it as a context manager.

    ``close()`` may be called from another thread: it asks the iteration to stop (at the
    next frame, or within the read timeout of a live source) and releases the input.
    """

    name: str = "source"
    live: bool = False  # frames arrive in real time: keep the newest, drop the rest
    total: int | None = None  # frames expected, when known (for progress)
    #: What the frames are along a stack's axes (a TIFF hyperstack: z, channels), from its
    #: metadata (`~focusmon.source.StackLayout`); None for a plain sequence of frames.
    layout: object | None = None
    #: The stream the source is watched as (`open_source`'s ``stream``), or "": its log
    #: lines then start with it, ``door: rtsp://***@cam/1: disconnected ...``.
    stream: str = ""

    def _clean(self, text: str) -> str:
        """``text`` (an FFmpeg error) without the source's secrets: a live source's URL may
        hold credentials, which FFmpeg quotes whole."""
        return text

    def _said(self, text: str) -> str:
        """``text`` (which names the source) as a log line, after the stream's name."""
        return f"{self.stream}: {text}" if self.stream and self.stream != self.name else text

    def __init__(self, options: SourceOptions | None = None, *, clock=time.monotonic) -> None:
        self.options = options or SourceOptions()
        self.stats = SourceStats()
        self._clock: Callable[[], float] = clock
        self._stop = threading.Event()
        self._state = SourceState.CONNECTING
        self._state_since = clock()
        self._timeline = Timeline()
        self._period = 1.0 / self.options.max_fps if self.options.max_fps else 0.0
        self._next_due = -math.inf

    def _keep(self, index: int, t: float | None) -> bool:
        """Whether the frame at ``index`` and time ``t`` is analysed (every N, max fps)."""
        if index % self.options.every:
            return False
        if self._period and t is not None:
            if t < self._next_due - 1e-6:
                return False
            due = self._next_due + self._period
            self._next_due = due if due > t else t + self._period  # resync after a gap
        return True

    # -- state --------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        """The state now; `UP` turns `STALLED` once no frame has come for ``stall_s``."""
        state = self._state
        if state is SourceState.UP and self.live:
            last = max(self.stats.last_frame_at or -math.inf, self._state_since)
            if self._clock() - last > self.options.stall_after:
                return SourceState.STALLED
        return state

    def _enter(self, state: SourceState) -> None:
        self._state, self._state_since = state, self._clock()

    # -- lifecycle ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[LumaFrame]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the iteration and release the input. Safe to call twice, from any thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decoding -----------------------------------------------------------------------

    def _decode(self, container: av.container.InputContainer) -> Iterator[LumaFrame]:
        """The kept frames of ``container``'s first video stream, until its end.

        Corrupt frames and packets the decoder rejects are counted and skipped. A demuxer
        error (a cut connection, a read timeout) raises SourceError.
        """
        stream = container.streams.video[0]
        context = stream.codec_context
        # Frame threads: slice threading leaves cores idle. But FFmpeg's H.264 decoder exports
        # the quantisers (below) racily across frame threads: a frame's mean QP read 0 or
        # another frame's in some runs (tests/scheduler/test_compressed_peak.py). Asked for
        # them, it decodes with slice threads, whose output is the same in every run.
        stream.thread_type = "SLICE" if self.options.quantiser else "AUTO"
        context.thread_count = self.options.decoder_threads
        if self.options.keyframes_only:
            context.skip_frame = "NONKEY"
        # FFmpeg's own limit, for a stream whose frames grow later than its header says.
        context.options = {**context.options, "max_pixels": str(self.options.max_pixels)}
        want_qp = self.options.quantiser
        if want_qp:  # the per-block parameters come as each frame's side data
            context.options = {**context.options, "export_side_data": "venc_params"}
        rate = stream.average_rate or stream.guessed_rate
        timeline = self._timeline  # one per source: continuous across reconnects
        timeline.set_step(1.0 / float(rate) if rate else None)
        stats, keep, clock, stop = self.stats, self._keep, self._clock, self._stop
        timeout_s = self.options.timeout_s
        # Live: a read that waited the whole timeout is the timeout, whatever came of it.
        # FFmpeg's RTSP demuxer answers its timeout with a short bogus packet and then waits
        # a whole timeout again; the UDP one hands over its last, partial packet. Decoding
        # that would push out the frame the decoder's threads still hold from before the
        # stall, scored as if the stream were back (measured: tests/integration/test_faults.py).
        waited_too_long = timeout_s if self.live else math.inf
        failed_run = 0
        key_since = False  # a keyframe decoded since the last frame handed on
        packets = container.demux(stream)
        while True:
            asked = clock()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceError(self._clean(_read_error(exc, timeout_s))) from exc
            if stop.is_set():
                return
            if clock() - asked >= waited_too_long:
                raise SourceError(f"no data for {timeout_s:g} s")
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                # Damaged data: FFmpeg's decoder resumes at the next packet.
                stats.undecodable += 1
                failed_run += 1
                if failed_run >= MAX_UNDECODABLE_RUN and not stats.decoded:
                    why = self._clean(str(exc))
                    raise SourceError(f"cannot decode {self.name}: {why}") from exc
                continue
            failed_run = 0
            for frame in frames:
                index = stats.decoded
                stats.decoded = index + 1
                now = clock()
                stats.last_frame_at = now
                if frame.is_corrupt:
                    stats.corrupt += 1
                    continue
                key_since = key_since or frame.key_frame
                t = timeline.time_of(frame.time, now)
                stats.last_time = t
                if keep(index, t):
                    luma, scale, offset = luma_of(frame)
                    qp = quantiser_of(frame) if want_qp else None
                    pict = pict_type_of(frame) if want_qp else None
                    yield LumaFrame(luma, index, t, scale, offset, now, bool(key_since), qp, pict)
                    key_since = False


def open_container(
    url: str, options: SourceOptions, /, *, device: bool = True, **kwargs: object
) -> tuple[av.container.InputContainer, str | None]:
    """``av.open(url, **kwargs)``, decoding on the options' ``hwaccel`` device if ``device``.

    A device that cannot be had (no GPU, no driver, no permission) is not an error: the
    container is opened again for CPU decoding, and the second value says why the device
    was not used (None if it was, or none was asked for); the caller logs it, once. An
    input that cannot be opened raises as `av.open` does. FFmpeg's own fallback covers a
    device that cannot decode a particular stream.
    """
    kwargs.setdefault("metadata_errors", "replace")  # cameras write Latin-1 into metadata
    if options.hwaccel is None or not device:
        return av.open(url, **kwargs), None
    hwaccel = HWAccel(options.hwaccel, allow_software_fallback=True, is_hw_owned=options.hw_frames)
    try:
        return av.open(url, hwaccel=hwaccel, **kwargs), None
    except av.error.FFmpegError as exc:
        why = exc.strerror or str(exc)
    return av.open(url, **kwargs), why  # raises the input's own error, if that was it


def check_video(
    container: av.container.InputContainer, name: str, max_pixels: int | None = None
) -> None:
    """Raise SourceError (closing ``container``) unless its first video stream can be
    decoded here, in frames of at most ``max_pixels``."""
    if not container.streams.video:
        container.close()
        raise SourceError(f"{name} has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec this FFmpeg has no decoder for
        tag = getattr(stream, "codec_tag", "") or "unknown"
        container.close()
        raise SourceError(f"{name}: no decoder for its video codec ({tag!r})")
    width, height = stream.codec_context.width, stream.codec_context.height
    if max_pixels is not None and width * height > max_pixels:
        container.close()
        raise SourceError(too_large(name, width, height, max_pixels))


def too_large(name: str, width: int, height: int, max_pixels: int) -> str:
    """The one line for a frame or an image larger than ``max_pixels``."""
    return (
        f"{name}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than "
        f"`max_pixels` ({max_pixels / 1e6:g} megapixels): refused before decoding"
    )


def no_device_message(options: SourceOptions, why: str) -> str:
    """The one log line for a hardware decoder that could not be had."""
    return (
        f"hardware decoding on {options.hwaccel!r} is not available here ({why}); "
        "decoding on the CPU"
    )


def _read_error(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, av.error.ExitError | TimeoutError):
        return f"no data for {timeout_s:g} s"
    return f"read failed: {exc}"


class VideoFileSource(Source):
    """A file in any container and codec PyAV opens. Never drops a frame."""

    def __init__(self, path: str, options: SourceOptions | None = None) -> None:
        super().__init__(options)
        self.name = path
        fmt = self.options.format
        try:
            self._container, no_device = open_container(
                path, self.options, format=fmt, options=dict(self.options.ffmpeg_options)
            )
        except av.error.FileNotFoundError as exc:
            raise SourceError(f"no such file: {path}") from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {path}: {_ffmpeg_message(exc)}") from exc
        if no_device is not None:
            log.warning("%s", self._said(f"{path}: {no_device_message(self.options, no_device)}"))
        check_video(self._container, path, self.options.max_pixels)
        self.total = self._container.streams.video[0].frames or None
        self._iterating = False

    def __iter__(self) -> Iterator[LumaFrame]:
        self._iterating = True
        self._enter(SourceState.UP)
        try:
            yield from self._decode(self._container)
            stats = self.stats
            if not self.stopping:
                stats.ended_early = ended_early(self._container, stats)
            if stats.decoded == stats.corrupt and not self.stopping:
                raise SourceError(
                    f"every one of its {stats.decoded} frames was corrupt"
                    if stats.decoded
                    else "no frame could be decoded"
                )
        except SourceError as exc:
            raise SourceError(
                f"{self.name}: decoding stopped at frame {self.stats.decoded}: {exc}"
            ) from exc
        finally:
            self._container.close()
            self._enter(SourceState.ENDED)

    def close(self) -> None:
        super().close()
        if not self._iterating:  # an iteration closes its own container, on its thread
            self._container.close()


def ended_early(container: av.container.InputContainer, stats: SourceStats) -> str | None:
    """Why a file whose decoding ended has ended early, or None: fewer frames than its
    container declares, or a last frame well before its declared duration (a download cut
    half-way ends like a file, without an error)."""
    stream = container.streams.video[0]
    declared = stream.frames
    if declared and stats.decoded < declared - max(2, declared // 50):
        return f"it ended after {stats.decoded} of the {declared} frames its container declares"
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        return None
    last = stats.last_time
    if last is not None and last < duration - max(1.0, 0.05 * duration):
        return f"it ended at {last:.1f} s of the {duration:.1f} s its container declares"
    return None


def _ffmpeg_message(exc: BaseException) -> str:
    """FFmpeg's reason without the file name PyAV appends."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc)
