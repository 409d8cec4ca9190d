"""Every setting of focusmon, once: the option table, the typed settings, and reading them.

`OPTIONS` names each setting with its type, range, help and scope. The command line's
flags (`add_flags`) and the TOML file's check (`load`) are made from it, and both give the
same typed `WatchConfig`::

    WatchConfig
    ├── service: ServiceSettings        the endpoint, the sinks, the backend, batching
    └── streams: (StreamSpec, ...)      name, source, roi
        ├── options: SourceOptions      opening and decoding (focusmon.source)
        └── alerts: AlertSettings       judging (focusmon.scheduler)

A flag is its key with dashes (``timeout_s`` is ``--timeout-s``); a few older spellings
(``--timeout``, ``--keyframes``, ``--min-dwell``, ``--ffmpeg-option``) are kept as hidden
aliases. Defaults live in the typed settings' fields, so the table and the Python API
cannot disagree. Adding a setting is a field where it is used and one row here.

The file, TOML (data, not code: reading it executes nothing), checked key by key before
anything starts; an error names the key's path (``streams[2].alerts.enter_ratio``), what
was expected and what came::

    metrics_addr = "127.0.0.1:9713"     # the service: the same names as the flags
    events = "/var/log/focusmon/events.jsonl"

    [defaults]                          # for every stream, unless it says otherwise
    timeout_s = 10
    alerts = { min_dwell_s = 2 }

    [[streams]]
    name = "door"
    source = "rtsp://user:pass@10.0.0.5/stream1"
    roi = [0, 0, 640, 360]
    max_fps = 5
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kernels
from ._errors import ConfigError
from .scheduler import SHARPNESS, AlertSettings
from .source import (
    RTSP_TRANSPORTS,
    SourceOptions,
    check_ffmpeg_options,
    kind_of,
    redact,
    safe_name,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ALERTS",
    "ALL",
    "DEFAULT_BEST_SECONDS",
    "DEFAULT_METRICS_ADDR",
    "FLEET",
    "INTERNAL",
    "OPTIONS",
    "SERVICE",
    "SOURCE",
    "STREAM",
    "Choice",
    "FleetSettings",
    "Flag",
    "Grid",
    "Integer",
    "Kind",
    "Names",
    "Number",
    "Option",
    "Pairs",
    "Roi",
    "ServiceSettings",
    "StreamSpec",
    "Text",
    "Urls",
    "WatchConfig",
    "add_flags",
    "expand_env",
    "flag_type",
    "from_args",
    "load",
    "parse",
    "parse_address",
    "to_toml",
]

#: Where ``focusmon watch`` serves /metrics unless told otherwise (loopback only).
DEFAULT_METRICS_ADDR = "127.0.0.1:9713"
#: The window of saved best frames when neither ``best_every`` nor ``best_seconds`` is set.
DEFAULT_BEST_SECONDS = 10.0

# Scopes: where a setting applies, and so where it goes in the file.
SERVICE, STREAM, SOURCE, ALERTS, FLEET = "service", "stream", "source", "alerts", "fleet"


# -- kinds of value ---------------------------------------------------------------------------


class Kind:
    """How a setting's value is written and checked. `check` takes a value as TOML (or
    Python) gives it, `from_text` a command-line word; both raise ValueError with what was
    expected (``must be ...``), or return the value."""

    metavar: str | None = None
    what = "a value"

    def check(self, value: Any) -> Any:
        return value

    def from_text(self, text: str) -> Any:
        return self.check(text)

    def reason(self) -> str:
        return f"must be {self.what}"


@dataclass(frozen=True)
class Integer(Kind):
    low: int = 0
    metavar: str | None = "N"

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"an integer >= {self.low}"

    def check(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < self.low:
            raise ValueError(self.reason())
        return value

    def from_text(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(self.reason()) from None
        return self.check(value)


@dataclass(frozen=True)
class Number(Kind):
    low: float = 0.0
    high: float = math.inf
    above: bool = False  # > low rather than >= low
    metavar: str | None = "S"

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.high < math.inf:
            return f"a number from {self.low:g} to {self.high:g}"
        return f"a number {'>' if self.above else '>='} {self.low:g}"

    def check(self, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < self.low or value > self.high:
            raise ValueError(self.reason())
        if self.above and value == self.low:
            raise ValueError(self.reason())
        return value

    def from_text(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(self.reason()) from None
        return self.check(value)


@dataclass(frozen=True)
class Text(Kind):
    what: str = "a string"  # type: ignore[misc]
    metavar: str | None = None
    parse: Callable[[str], object] | None = None  # a further check of the text

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(self.reason())
        if self.parse is not None:
            try:
                self.parse(value)
            except ValueError:
                raise ValueError(self.reason()) from None
        return value


@dataclass(frozen=True)
class Choice(Kind):
    values: Callable[[], Sequence[str]] = tuple
    metavar: str | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.values())

    def check(self, value: Any) -> str:
        if value not in self.values():
            raise ValueError(self.reason())
        return value


@dataclass(frozen=True)
class Flag(Kind):
    what: str = "true or false"  # type: ignore[misc]

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(self.reason())
        return value


@dataclass(frozen=True)
class Roi(Kind):
    what: str = "[x, y, w, h] (four integers: x, y >= 0, w, h >= 3)"  # type: ignore[misc]
    metavar: str | None = "X,Y,W,H"

    def check(self, value: Any) -> tuple[int, int, int, int]:
        ok = isinstance(value, (list, tuple)) and len(value) == 4
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not ok or min(value[:2]) < 0 or min(value[2:]) < kernels.MIN_SIDE:
            raise ValueError(self.reason())
        return tuple(value)  # type: ignore[return-value]

    def from_text(self, text: str) -> tuple[int, int, int, int]:
        try:
            return self.check([int(part) for part in text.split(",")])
        except ValueError:
            raise ValueError("must be X,Y,W,H (four integers: x, y >= 0, w, h >= 3)") from None


@dataclass(frozen=True)
class Grid(Kind):
    what: str = "[rows, cols] (two integers from 1 to 64)"  # type: ignore[misc]
    metavar: str | None = "ROWSxCOLS"

    def check(self, value: Any) -> tuple[int, int]:
        ok = isinstance(value, (list, tuple)) and len(value) == 2
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not ok or not all(1 <= v <= 64 for v in value):
            raise ValueError(self.reason())
        return tuple(value)  # type: ignore[return-value]

    def from_text(self, text: str) -> tuple[int, int]:
        rows, sep, cols = text.lower().partition("x")
        try:
            return self.check([int(rows), int(cols)] if sep else None)
        except ValueError:
            raise ValueError("must be ROWSxCOLS, e.g. 4x4 (each from 1 to 64)") from None


@dataclass(frozen=True)
class Names(Kind):
    """A list of names; on the command line, separated by commas."""

    what: str = "a list of names"  # type: ignore[misc]
    metavar: str | None = "NAME,..."

    def check(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise ValueError(self.reason())
        return tuple(value)

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.check([part.strip() for part in text.split(",") if part.strip()])


@dataclass(frozen=True)
class Urls(Names):
    """A list of URLs; on the command line one a flag (the flag is repeated)."""

    what: str = "a list of URLs"  # type: ignore[misc]
    metavar: str | None = "URL"

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.check([text.strip()])


@dataclass(frozen=True)
class Pairs(Kind):
    """A table of names and values (FFmpeg's options); on the command line ``NAME=VALUE``,
    one per flag."""

    what: str = "a table of NAME = value"  # type: ignore[misc]
    metavar: str | None = "NAME=VALUE"

    def check(self, value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise ValueError(self.reason())
        if not all(isinstance(v, (str, int, float)) for v in value.values()):
            raise ValueError(self.reason())
        return {str(k): str(v) for k, v in value.items()}

    def from_text(self, text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ValueError("must be NAME=VALUE")
        return name, value


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting: its key, scope, kind of value and help.

    Attributes
    ----------
    key : str
        Its name in the file, the field of its scope's settings, and (with dashes) its flag.
    scope : {"service", "stream", "source", "alerts", "fleet"}
        Where it applies: the service (`ServiceSettings`), a stream (`StreamSpec`), a
        stream's source (`SourceOptions`), its alerts (`AlertSettings`), or a fleet
        (`FleetSettings`).
    kind : Kind
        Its type and range.
    help : str
        One line for ``--help`` and the docs.
    commands : tuple of str
        The commands that take it as a flag (none: the file only, or a positional).
    aliases : tuple of str
        Older flags, still accepted but not shown.
    """

    key: str
    scope: str
    kind: Kind
    help: str
    commands: tuple[str, ...] = ("watch",)
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def default(self) -> Any:
        """The default, as its settings' field has it."""
        spec = _FIELDS[self.scope][self.key]
        if spec.default_factory is not dataclasses.MISSING:
            return spec.default_factory()
        return None if spec.default is dataclasses.MISSING else spec.default

    def checked(self, value: Any, where: str) -> Any:
        """``value`` checked; ConfigError naming ``where`` if it is wrong."""
        try:
            return self.kind.check(value)
        except ValueError as exc:
            shown = redact(value) if isinstance(value, str) else value
            raise ConfigError(f"{where} {exc}, got {shown!r}") from None


#: The commands that score a source: they all take its decoding flags.
ALL = ("score", "peak", "watch")


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (127.0.0.1) or ``[IPv6]:PORT``.

    Raises
    ------
    ConfigError
        Naming what was wrong.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--metrics-addr must be HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _mqtt_url(text: str) -> None:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(text)


def _topic_levels(text: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", text):
        raise ValueError(text)


def _backends() -> tuple[str, ...]:
    return ("auto", *kernels.names())


def _transports() -> tuple[str, ...]:
    return RTSP_TRANSPORTS


def _measures() -> tuple[str, ...]:
    return SHARPNESS


_POSITIVE = Number(above=True)
_SECONDS = Number(above=True, metavar="S")

#: Every setting, once. Defaults are the fields' of `ServiceSettings`, `StreamSpec`,
#: `SourceOptions` and `AlertSettings`; a test holds the table and those fields together.
OPTIONS: Mapping[str, Option] = {
    o.key: o
    for o in (
        # -- the service: endpoint and sinks --
        Option("metrics_addr", SERVICE, Text("HOST:PORT", "HOST:PORT", parse_address),
               "serve /metrics and /healthz here (127.0.0.1: this host only)"),
        Option("metrics", SERVICE, Flag(),
               "serve /metrics and /healthz (--no-metrics: no endpoint)"),
        Option("tls_cert", SERVICE, Text("a path", "PEM"),
               "serve HTTPS with this certificate (and tls_key)"),
        Option("tls_key", SERVICE, Text("a path", "PEM"), "... and this unencrypted private key"),
        Option("page", SERVICE, Flag(), "serve the live page at / on the same server "
               "(--no-page: none)"),
        Option("web_users", SERVICE, Text("a path", "FILE"), "ask for a login (HTTP basic "
               "auth) to see the page: users and their salted scrypt hashes, written by "
               "`focusmon web-user add NAME --file FILE`"),
        Option("tls_client_ca", SERVICE, Text("a path", "PEM"), "HTTPS: every client must "
               "present a certificate this CA signed (the page and /metrics alike)"),
        Option("allow_anonymous", SERVICE, Flag(), "serve the page on an address other "
               "than loopback without a login or client certificates"),
        Option("metrics_auth", SERVICE, Flag(), "ask for the --web-users login on /metrics "
               "too (default: /metrics stays open to Prometheus)"),
        Option("events", SERVICE, Text("a path or '-'", "PATH"),
               "append each state change as a JSON line to this file (- for stdout); a file "
               "moved by logrotate is reopened"),
        Option("save_best", SERVICE, Text("a folder", "DIR"),
               "save each window's sharpest frame here (PNG, TIFF for 16 bit, with a JSON "
               "sidecar)"),
        Option("best_every", SERVICE, Integer(1), "a best-frame window of N frames"),
        Option("best_seconds", SERVICE, Number(above=True, metavar="T"),
               f"a best-frame window of T seconds ({DEFAULT_BEST_SECONDS:g} unless "
               "best_every is given)"),
        Option("best_floor", SERVICE, _POSITIVE,
               "save nothing for a window whose best normalised score is below S"),
        Option("best_keep", SERVICE, Integer(1),
               "keep only the newest N saved frames of each stream (default: all)"),
        Option("save_events", SERVICE, Text("a folder", "DIR"), "at each state change save "
               "the sharpest kept frame from before it and the frame at it (PNG, small "
               "frames of thumb_width, with a JSON sidecar)"),
        Option("history_s", SERVICE, _SECONDS, "seconds of each stream's records kept in "
               "memory: the page's curve, the best frame of a recent window"),
        Option("frames_s", SERVICE, _SECONDS, "seconds of each stream's small frames kept "
               "in memory (four a second, the sharpest of each quarter)"),
        Option("thumb_width", SERVICE, Integer(16), "width (px) of the small frames kept: "
               "the page and --save-events"),
        Option("webhook", SERVICE, Urls(), "POST each state change as JSON to this URL "
               "(the flag is repeatable; retried, never slowing a stream)"),
        Option("webhook_secret", SERVICE, Text("a string", "SECRET"), "sign each webhook "
               "request: X-Focusmon-Signature: sha256=HMAC-SHA256(secret, body)"),
        Option("mqtt", SERVICE, Text("mqtt(s)://[USER:PASSWORD@]HOST[:PORT][/PREFIX]", "URL",
               _mqtt_url), "publish each stream's state to this MQTT broker, under PREFIX "
               "(default focusmon), with Home Assistant discovery; in the file also a table "
               "{ url = ..., ca_file = ..., discovery = ..., discovery_prefix = ... }"),
        Option("mqtt_ca_file", SERVICE, Text("a path", "PEM"), "mqtts: trust the broker's "
               "certificate by this CA (default: the system's)"),
        Option("mqtt_discovery", SERVICE, Flag(), "publish Home Assistant discovery configs: "
               "a device per stream (--no-mqtt-discovery: none)"),
        Option("mqtt_discovery_prefix", SERVICE, Text("topic levels", "PREFIX", _topic_levels),
               "Home Assistant's discovery prefix"),
        Option("mqtt_remove_stale", SERVICE, Flag(), "remove the Home Assistant entities of "
               "streams no longer in the configuration (--no-mqtt-remove-stale: keep them)"),
        # -- the service: scoring --
        Option("backend", SERVICE, Choice(_backends), "the compute backend (`focusmon "
               "backends` says which can run here)", commands=ALL),
        Option("threads", SERVICE, Integer(1), "CPU kernel threads (numba-cpu; default 1, "
               "leaving a core to the decoder)", commands=ALL),
        Option("batch", SERVICE, Integer(0), "score up to N streams' frames in one GPU "
               "launch (default: one per stream on a GPU backend; 0: never)"),
        Option("batch_wait_ms", SERVICE, Number(0.0, 1000.0, metavar="MS"),
               "how long a batch waits for more frames after its first"),
        Option("tile_metrics", SERVICE, Flag(), "export each focus-map tile's sharpness over "
               "its own baseline, focusmon_tile_sharpness_relative{stream,row,col}: rows x "
               "cols series a stream (default: none)"),
        # -- a stream --
        Option("name", STREAM, Text("a string", "NAME"), "the stream's name (its `stream` "
               "label; default: the source, credentials redacted); on the command line "
               "once per source, in order"),
        Option("source", STREAM, Text("a file, folder, URL, /dev/videoN or demo"),
               "what to watch", commands=()),
        Option("roi", STREAM, Roi(), "score only this rectangle", commands=ALL),
        # -- a stream's source --
        Option("every", SOURCE, Integer(1), "analyse every Nth decoded frame", commands=ALL),
        Option("max_fps", SOURCE, Number(above=True, metavar="F"),
               "analyse at most F frames per second of stream time", commands=ALL),
        Option("keyframes_only", SOURCE, Flag(), "decode keyframes only (the decoder skips "
               "the rest: cheap checks of many cameras)", commands=ALL, aliases=("--keyframes",)),
        Option("decoder_threads", SOURCE, Integer(0), "decoder threads (0: one per core)",
               commands=ALL),
        Option("format", SOURCE, Text("the name of one of FFmpeg's demuxers", "NAME"),
               "force FFmpeg's demuxer, e.g. mpjpeg for an MJPEG camera", commands=ALL),
        Option("ffmpeg_options", SOURCE, Pairs(), "FFmpeg options for the input (names are "
               "checked, since FFmpeg ignores unknown ones; the flag is repeatable)",
               commands=ALL, aliases=("--ffmpeg-option",)),
        Option("hwaccel", SOURCE, Text("one of FFmpeg's device types", "DEVICE"),
               "decode on this device (cuda, vaapi, qsv ...; falls back to the CPU with one "
               "log line where there is none)", commands=ALL),
        Option("hw_frames", SOURCE, Flag(), "with hwaccel and the numba-cuda backend: score "
               "frames where they were decoded, with no copy through the host", commands=ALL),
        Option("max_pixels", SOURCE, Integer(1), "the largest frame or image read (width x "
               "height): a larger one is refused before it is decoded", commands=ALL),
        Option("quantiser", SOURCE, Flag(), "read each frame's quantiser and picture type "
               "from the decoder (H.264's QP; I, P or B) and print them as qp and pict_type "
               "(peak always reads them)",
               commands=("score",)),
        Option("show_query_keys", SOURCE, Names(), "query keys of the source's URL whose "
               "values its name may show (the rest of the query, like the user info, path "
               "parameters and fragment, is shown as ***)", commands=ALL),
        Option("timeout_s", SOURCE, _SECONDS, "live sources: a read waiting longer is a "
               "disconnect", commands=ALL, aliases=("--timeout",)),
        Option("open_timeout_s", SOURCE, _SECONDS,
               "live sources: how long opening may take (default timeout_s)", commands=ALL),
        Option("stall_s", SOURCE, _SECONDS, "live sources: no frame for this long is stalled "
               "(default timeout_s / 2)", commands=ALL),
        Option("rtsp_transport", SOURCE, Choice(_transports), "RTSP's media transport: auto "
               "asks for TCP and takes UDP where the camera refuses TCP",
               commands=ALL),
        Option("reconnect_initial_s", SOURCE, _SECONDS,
               "live sources: the first wait before reconnecting", commands=ALL),
        Option("reconnect_max_s", SOURCE, _SECONDS,
               "live sources: the longest wait between reconnection attempts", commands=ALL),
        Option("reconnect_attempts", SOURCE, Integer(0), "live sources: give up after N "
               "failed attempts in a row (default: never)", commands=ALL),
        # -- a stream's alerts --
        Option("measure", ALERTS, Choice(_measures), "the measure whose normalised value is "
               "compared with the baseline"),
        Option("enter_ratio", ALERTS, Number(above=True, metavar="R"),
               "blurred below R x the learned baseline"),
        Option("leave_ratio", ALERTS, Number(above=True, metavar="R"),
               "ok again above R x the learned baseline (hysteresis)"),
        Option("min_dwell_s", ALERTS, Number(metavar="S"), "a new state must hold S seconds "
               "(no flapping)", aliases=("--min-dwell",)),
        Option("dark_mean", ALERTS, Number(metavar="GREY"),
               "mean grey level (8-bit) below which there is too little light to judge"),
        Option("obstructed_std", ALERTS, Number(metavar="GREY"),
               "contrast (std, 8-bit) below which a lit frame is a covered lens"),
        Option("obstructed_ratio", ALERTS, Number(metavar="R"), "or contrast below R x the "
               "scene's, while the score is below enter_ratio x baseline"),
        Option("learn_s", ALERTS, Number(metavar="S"),
               "seconds of frames at a new light level its baseline is learned from"),
        Option("baseline_tau_s", ALERTS, Number(metavar="S"),
               "time constant of the baseline's following slow changes of the scene"),
        Option("blur_threshold", ALERTS, _POSITIVE, "a fixed threshold on the normalised "
               "score instead of the learned baseline"),
        Option("moved_s", ALERTS, Number(metavar="S"), "a view unlike the learned one "
               "(a camera turned or knocked) for S seconds is moved (0: never)"),
        Option("moved_share", ALERTS, Number(0.0, 1.0, metavar="R"), "the share of the "
               "picture that must differ from the learned view (or all of it shifted)"),
        Option("relearn_s", ALERTS, Number(metavar="S"), "after S seconds a new view is the "
               "one learned, and the stream ok again (0: never)"),
        Option("frozen_s", ALERTS, Number(metavar="S"), "frames whose picture has not "
               "changed for S seconds are frozen (0: never)"),
        Option("frozen_diff", ALERTS, Number(metavar="GREY"), "a picture has changed when "
               "its samples differ from the last frame's by more than this on average"),
        Option("partial_s", ALERTS, Number(metavar="S"), "some tiles blurred or covered "
               "(against their own baselines) while the rest of the picture holds, for S "
               "seconds, is partial (0: never, and no focus map is scored)"),
        Option("focus_map", ALERTS, Grid(), "the grid of the focus map scored with each "
               "frame, which partial goes by"),
        # -- a fleet (focusmon fleet) --
        Option("streams_per_shard", FLEET, Integer(1), "streams a shard (one Ray actor, one "
               "Watcher) runs; it asks for as many focusmon_slots", commands=("fleet",)),
        Option("spare_hosts", FLEET, Integer(0), "hosts the fleet may lose with every shard "
               "still finding room (said at the start, and in status, when it cannot)",
               commands=("fleet",)),
        Option("save_every_s", FLEET, _SECONDS, "how often each shard saves its streams' "
               "learned baselines to the controller (and on stop)", commands=("fleet",)),
        Option("gpus_per_shard", FLEET, Number(0.0, 1.0, metavar="G"), "0: shards score on "
               "the CPU (numba-cpu where the backend is auto); more: each asks for this "
               "share of a GPU and batches its streams there (numba-cuda)",
               commands=("fleet",)),
        Option("rebalance_every_s", FLEET, _SECONDS, "how often the controller looks for "
               "hosts with less than their share, to move a shard there",
               commands=("fleet",)),
    )
}  # fmt: skip


# -- the typed settings -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSettings:
    """The service's settings (scope ``service`` of `OPTIONS`, whose help says what each
    means). Checked when made: a wrong value raises ConfigError naming it."""

    metrics_addr: str = DEFAULT_METRICS_ADDR
    metrics: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    page: bool = True
    web_users: str | None = None
    tls_client_ca: str | None = None
    allow_anonymous: bool = False
    metrics_auth: bool = False
    events: str | None = None
    save_best: str | None = None
    best_every: int | None = None
    best_seconds: float | None = None
    best_floor: float | None = None
    best_keep: int | None = None
    save_events: str | None = None
    history_s: float = 120.0
    frames_s: float = 10.0
    thumb_width: int = 320
    webhook: tuple[str, ...] = ()
    webhook_secret: str | None = None
    mqtt: str | None = None
    mqtt_ca_file: str | None = None
    mqtt_discovery: bool = True
    mqtt_discovery_prefix: str = "homeassistant"
    mqtt_remove_stale: bool = True
    backend: str = "auto"
    threads: int | None = None
    batch: int | None = None
    batch_wait_ms: float = 5.0
    tile_metrics: bool = False

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                OPTIONS[spec.name].checked(value, f"`{spec.name}`")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("`tls_cert` and `tls_key` go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("`tls_client_ca` needs HTTPS: give `tls_cert` and `tls_key`")
        if self.metrics_auth and self.web_users is None:
            raise ConfigError("`metrics_auth` asks for the `web_users` login: give `web_users`")
        address = self.metrics_address
        if (
            address is not None and self.page and not _loopback(address[0])
            and self.web_users is None and self.tls_client_ca is None
            and not self.allow_anonymous
        ):  # fmt: skip
            raise ConfigError(
                f"the live page shows camera images, and {address[0]} is not this host "
                "only: give --web-users FILE (a login) or --tls-client-ca PEM (client "
                "certificates), or --allow-anonymous, or --no-page (in a file: web_users, "
                "tls_client_ca, allow_anonymous, page = false)"
            )
        if self.best_every is not None and self.best_seconds is not None:
            raise ConfigError("give `best_every` or `best_seconds`, not both")

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the endpoint, or None for none."""
        return parse_address(self.metrics_addr) if self.metrics else None

    @property
    def best_window(self) -> tuple[int | None, float | None]:
        """``(frames, seconds)`` of a best-frame window: one of them is None."""
        if self.best_every is not None:
            return self.best_every, None
        return None, self.best_seconds or DEFAULT_BEST_SECONDS

    @property
    def backend_options(self) -> dict[str, object]:
        """The options given for the backend (`focusmon.kernels.get` takes them)."""
        return {} if self.threads is None else {"threads": self.threads}


@dataclass(frozen=True)
class StreamSpec:
    """One stream to watch: its name, what to open and how to judge it."""

    name: str
    source: str
    roi: tuple[int, int, int, int] | None = None
    options: SourceOptions = field(default_factory=SourceOptions)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def __post_init__(self) -> None:
        OPTIONS["source"].checked(self.source, "`source`")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"`name` must be a non-empty string, got {self.name!r}")
        if self.roi is not None:
            object.__setattr__(self, "roi", OPTIONS["roi"].checked(self.roi, "`roi`"))
        # FFmpeg ignores unknown names: refuse them now, not at the first connect.
        check_ffmpeg_options(kind_of(self.source) or "file", self.options.ffmpeg_options)


@dataclass(frozen=True)
class FleetSettings:
    """How ``focusmon fleet`` spreads the streams over a Ray cluster (scope ``fleet`` of
    `OPTIONS`, the ``[fleet]`` table of the file)."""

    streams_per_shard: int = 4
    spare_hosts: int = 1
    save_every_s: float = 10.0
    gpus_per_shard: float = 0.0
    rebalance_every_s: float = 5.0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            OPTIONS[spec.name].checked(getattr(self, spec.name), f"`fleet.{spec.name}`")


@dataclass(frozen=True)
class WatchConfig:
    """A checked configuration: the service's settings, the streams (unique names) and,
    for ``focusmon fleet``, how to spread them."""

    service: ServiceSettings = field(default_factory=ServiceSettings)
    streams: tuple[StreamSpec, ...] = ()
    fleet: FleetSettings = field(default_factory=FleetSettings)
    #: Values put in from the environment (``${NAME}``): never shown, never compared.
    secrets: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))
        names = [s.name for s in self.streams]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"stream names must be unique: {name!r} is used twice")


_FIELDS: Mapping[str, Mapping[str, dataclasses.Field]] = {
    scope: {f.name: f for f in dataclasses.fields(cls)}
    for scope, cls in (
        (SERVICE, ServiceSettings), (STREAM, StreamSpec), (SOURCE, SourceOptions),
        (ALERTS, AlertSettings), (FLEET, FleetSettings),
    )
}  # fmt: skip
#: Fields of the settings that are not user settings (the code sets them).
INTERNAL = {STREAM: {"options", "alerts"}, SOURCE: {"retry_first_connect"}}


def _keys(scope: str) -> list[str]:
    return [k for k, o in OPTIONS.items() if o.scope == scope]


def _made(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """``cls(**values)``, its own checks' errors as ConfigError naming ``where``."""
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


# -- the command line -------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s flags from `OPTIONS` to ``parser``, grouped by scope.

    A flag not given leaves no attribute (`from_args` then takes the default), so what
    was given can be told from what was not.
    """
    titles = {
        SERVICE: "service", STREAM: "streams", SOURCE: "decoding and live sources",
        ALERTS: "alerts (the defaults need no calibration)",
        FLEET: "fleet (the [fleet] table)",
    }  # fmt: skip
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS.values():
        if command not in option.commands:
            continue
        group = groups.get(option.scope) or groups.setdefault(
            option.scope, parser.add_argument_group(titles[option.scope])
        )
        _add_flag(group, option)


def _add_flag(group: argparse._ArgumentGroup, option: Option) -> None:
    kind = option.kind
    default = option.default
    shown = "" if default in (None, {}) or isinstance(default, bool) else f" (default {default})"
    common = dict(dest=option.key, default=argparse.SUPPRESS)
    if isinstance(kind, Flag):
        group.add_argument(
            option.flag, action=argparse.BooleanOptionalAction, help=option.help, **common
        )
        for alias in option.aliases:
            group.add_argument(alias, action="store_true", help=argparse.SUPPRESS, **common)
        return

    parse = flag_type(kind)
    repeated = isinstance(kind, Pairs) or option.key in ("name", "webhook")
    extra = dict(action="append") if repeated else {}
    if isinstance(kind, Choice):
        extra["choices"] = kind.values()
    metavar = None if isinstance(kind, Choice) else kind.metavar
    group.add_argument(
        option.flag, type=parse, metavar=metavar, help=option.help + shown, **extra, **common
    )
    for alias in option.aliases:
        group.add_argument(
            alias, type=parse, metavar=metavar, help=argparse.SUPPRESS, **extra, **common
        )


def flag_type(kind: Kind) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a flag's word as ``kind`` (a usage error if not)."""

    def parse(text: str) -> Any:
        try:
            return kind.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None

    return parse


def from_args(args: argparse.Namespace) -> WatchConfig:
    """The configuration of a parsed command line (flags from `add_flags`).

    ``args.sources`` (or ``args.source``) are the streams, each with the stream flags; or
    ``args.config`` names a file (`load`), whose service settings the flags override.

    Raises
    ------
    ConfigError
        For a wrong combination (sources and a file; a stream flag with a file; names not
        one per source) or a value the settings refuse.
    """
    given = {k: v for k, v in vars(args).items() if k in OPTIONS}
    if "webhook" in given:  # repeated, each a list of names
        given["webhook"] = tuple(url for urls in given["webhook"] for url in urls)
    service = {k: v for k, v in given.items() if OPTIONS[k].scope == SERVICE}
    fleet = {k: given.pop(k) for k in list(given) if OPTIONS[k].scope == FLEET}
    sources = list(getattr(args, "sources", None) or [])
    if getattr(args, "source", None) is not None:
        sources.append(args.source)
    path = getattr(args, "config", None)
    if path:
        if sources:
            raise ConfigError("give sources on the command line or in --config, not both")
        stray = [k for k in given if OPTIONS[k].scope != SERVICE]
        if stray:
            flag = OPTIONS[stray[0]].flag
            raise ConfigError(f"{flag} is a stream setting: with --config, put it in the file")
        config = load(path)
        merged = dataclasses.asdict(config.service)
        for one, other in (("best_every", "best_seconds"), ("best_seconds", "best_every")):
            if one in service:  # the command line's window replaces the file's
                merged[other] = None
        merged.update(service)
        fleet = {**dataclasses.asdict(config.fleet), **fleet}
        return dataclasses.replace(
            config, service=_made(ServiceSettings, merged), fleet=_made(FleetSettings, fleet)
        )
    if not sources:
        raise ConfigError("give at least one SOURCE, or --config FILE")
    keys = given.get("show_query_keys", ())
    names = given.get("name") or [safe_name(s, keys) for s in sources]
    if len(names) != len(sources):
        raise ConfigError(
            f"--name must be given once per source: {len(sources)} sources, {len(names)} names"
        )
    if "ffmpeg_options" in given:
        given["ffmpeg_options"] = dict(given["ffmpeg_options"])
    options = _made(SourceOptions, _scoped(given, SOURCE))
    alerts = _made(AlertSettings, _scoped(given, ALERTS))
    streams = [
        StreamSpec(name, source, given.get("roi"), options, alerts)
        for name, source in zip(names, sources, strict=True)
    ]
    return WatchConfig(
        _made(ServiceSettings, service), tuple(streams), _made(FleetSettings, fleet)
    )


def _scoped(values: Mapping[str, Any], scope: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if OPTIONS[k].scope == scope}


# -- the file ---------------------------------------------------------------------------------


def load(path: str | Path) -> WatchConfig:
    """Read and check the TOML file at ``path``.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or any key is unknown, mistyped or out of
        range; the message names the key.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data, secrets = expand_env(data, str(path))
    config = parse(data, str(path))
    return dataclasses.replace(config, secrets=frozenset(secrets))


_ENV = re.compile(r"\$(\$?)\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env(
    data: Any, origin: str = "config", environ: Mapping[str, str] | None = None
) -> tuple[Any, set[str]]:
    """``data`` (a parsed TOML file) with ``${NAME}`` in every string replaced by the
    environment variable NAME, and the values put in (the secrets: they are hidden
    wherever the configuration shows). ``$${NAME}`` is a literal ``${NAME}``; braces around
    what is not a variable's name (``${7*7}``) are left as written.

    Raises
    ------
    ConfigError
        For a variable that is not set, naming it and where.
    """
    env = os.environ if environ is None else environ
    secrets: set[str] = set()

    def value(item: Any, where: str) -> Any:
        if isinstance(item, str):
            return _ENV.sub(lambda m: one(m, where), item)
        if isinstance(item, Mapping):
            return {k: value(v, f"{where}.{k}" if where else str(k)) for k, v in item.items()}
        if isinstance(item, list):
            return [value(v, f"{where}[{k}]") for k, v in enumerate(item)]
        return item

    def one(match: re.Match, where: str) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if not _ENV_NAME.fullmatch(name):  # not a name (a template payload): as written
            return match.group(0)
        if name not in env:
            raise ConfigError(f"{origin}: {where}: the environment variable {name} is not set")
        if env[name]:
            secrets.add(env[name])
        return env[name]

    return value(data, ""), secrets


def parse(data: Mapping[str, Any], origin: str = "config") -> WatchConfig:
    """Check an already parsed configuration (see `load`); ``origin`` names it in errors."""
    top = {*_keys(SERVICE), "defaults", "streams", "fleet"}
    _no_unknown(data, top, f"{origin}:")
    data = _mqtt_table(data, origin)
    service = {
        k: OPTIONS[k].checked(data[k], f"{origin}: {k}") for k in _keys(SERVICE) if k in data
    }
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{origin}: defaults must be a table")
    stream_keys = {*_keys(STREAM), *_keys(SOURCE), "alerts"}
    _no_unknown(defaults, stream_keys - {"name", "source"}, f"{origin}: defaults:")
    streams = data.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConfigError(f"{origin}: streams must be a non-empty array of tables ([[streams]])")
    specs = []
    for k, raw in enumerate(streams):
        where = f"{origin}: streams[{k}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        for table, at in ((defaults, f"{origin}: defaults"), (raw, where)):
            if not isinstance(table.get("alerts", {}), Mapping):
                raise ConfigError(f"{at}.alerts must be a table")
        merged = {**defaults, **raw}
        merged["alerts"] = {**defaults.get("alerts", {}), **raw.get("alerts", {})}
        specs.append(_stream(merged, where, stream_keys))
    table = data.get("fleet", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{origin}: fleet must be a table")
    _no_unknown(table, set(_keys(FLEET)), f"{origin}: fleet:")
    fleet = {k: OPTIONS[k].checked(v, f"{origin}: fleet.{k}") for k, v in table.items()}
    try:
        return WatchConfig(
            _made(ServiceSettings, service), tuple(specs), _made(FleetSettings, fleet)
        )
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _mqtt_table(data: Mapping[str, Any], origin: str) -> Mapping[str, Any]:
    """``mqtt = { url = ..., ca_file = ... }`` as the service's ``mqtt = ...``,
    ``mqtt_ca_file = ...`` (the flags' names)."""
    table = data.get("mqtt")
    if not isinstance(table, Mapping):
        return data
    where = f"{origin}: mqtt"
    known = {"url", *(k.removeprefix("mqtt_") for k in _keys(SERVICE) if k.startswith("mqtt_"))}
    _no_unknown(table, known, f"{where}:")
    if "url" not in table:
        raise ConfigError(f"{where}: url is missing")
    flat = {k: v for k, v in data.items() if k != "mqtt"}
    for key, value in table.items():
        name = "mqtt" if key == "url" else f"mqtt_{key}"
        if name in flat:
            raise ConfigError(f"{where}: {key} is also given as {name}: give it once")
        flat[name] = OPTIONS[name].checked(value, f"{where}.{key}")
    return flat


def _stream(raw: Mapping[str, Any], where: str, known: set[str]) -> StreamSpec:
    _no_unknown(raw, known, f"{where}:")
    if "source" not in raw:
        raise ConfigError(f"{where}: source is missing")
    values = {k: OPTIONS[k].checked(v, f"{where}.{k}") for k, v in raw.items() if k != "alerts"}
    alerts = raw["alerts"]
    _no_unknown(alerts, set(_keys(ALERTS)), f"{where}.alerts:")
    values.update({k: OPTIONS[k].checked(v, f"{where}.alerts.{k}") for k, v in alerts.items()})
    source = values["source"]
    try:
        return StreamSpec(
            values.get("name", safe_name(source, values.get("show_query_keys", ()))),
            source, values.get("roi"),
            _made(SourceOptions, _scoped(values, SOURCE)),
            _made(AlertSettings, _scoped(values, ALERTS), "alerts"),
        )  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# What a setting of each scope is called, and where it goes in the file.
_PLACES = {
    SERVICE: ("a service setting", "at the top of the file"),
    STREAM: ("a stream setting", "in [defaults] or a [[streams]] table"),
    SOURCE: ("a stream setting", "in [defaults] or a [[streams]] table"),
    ALERTS: ("an alert setting", "in [defaults.alerts] or a [streams.alerts] table"),
    FLEET: ("a fleet setting", "in the [fleet] table"),
}


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    """Refuse keys not in ``known``: say where a setting of another scope goes, or which
    known key was meant."""
    for key in table:
        if key in known:
            continue
        option = OPTIONS.get(key)
        if option is not None:
            what, place = _PLACES[option.scope]
            raise ConfigError(f"{where} {key!r} is {what}: put it {place}")
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"expected one of {', '.join(sorted(known))}"
        )
        raise ConfigError(f"{where} unknown key {key!r}; {hint}")


# -- writing it out ---------------------------------------------------------------------------

#: FFmpeg options whose whole value may be a credential (an ``Authorization:`` header).
_SECRET_FFMPEG = frozenset({"headers"})
#: Settings that are secrets as a whole: never shown.
SECRET_KEYS = frozenset({"webhook_secret"})


def to_toml(config: WatchConfig) -> str:
    """``config`` as a TOML file with every stream's settings spelled out (defaults merged)
    and every credential redacted: what ``focusmon check-config`` prints. Settings at
    their default are left out."""
    lines = []
    for key in _keys(SERVICE):
        value = getattr(config.service, key)
        if value != OPTIONS[key].default:
            shown = '"***"' if key in SECRET_KEYS else _toml(value)
            lines.append(f"{key} = {shown}")
    for spec in config.streams:
        source = safe_name(spec.source, spec.options.show_query_keys)
        lines += ["", "[[streams]]", f"name = {_toml(spec.name)}"]
        lines.append(f"source = {_toml(source, safe=True)}")
        if spec.roi is not None:
            lines.append(f"roi = {_toml(list(spec.roi))}")
        for key in _keys(SOURCE):
            value = getattr(spec.options, key)
            if value != OPTIONS[key].default:
                if key == "ffmpeg_options":
                    value = {k: "***" if k in _SECRET_FFMPEG else v for k, v in value.items()}
                lines.append(f"{key} = {_toml(value)}")
        alerts = [
            f"{key} = {_toml(getattr(spec.alerts, key))}"
            for key in _keys(ALERTS)
            if getattr(spec.alerts, key) != OPTIONS[key].default
        ]
        if alerts:
            lines += ["[streams.alerts]", *alerts]
    fleet = [
        f"{key} = {_toml(getattr(config.fleet, key))}"
        for key in _keys(FLEET)
        if getattr(config.fleet, key) != OPTIONS[key].default
    ]
    if fleet:
        lines += ["", "[fleet]", *fleet]
    text = "\n".join(lines).strip("\n") + "\n"
    for secret in sorted(config.secrets, key=len, reverse=True):
        for form in {secret, json.dumps(secret, ensure_ascii=False)[1:-1]}:
            text = text.replace(form, "***")
    return text


def _toml(value: Any, *, safe: bool = False) -> str:
    """A TOML literal of a setting's value; strings with credentials redacted (unless
    ``safe``: already a source's safe name)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one character TOML wants escaped and JSON not.
        text = value if safe else redact(value)
        return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML for {value!r}")
