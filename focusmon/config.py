"""``focusmon watch --config streams.toml``: the file, checked key by key before anything starts.

TOML is data, not code: reading it executes nothing. Every key is known, typed and ranged;
an error names the key's path (``streams[2].alerts.enter_ratio``), what was expected and
what came.

    metrics_addr = "127.0.0.1:9108"     # the service: the same names as the options
    events = "/var/log/focusmon/events.jsonl"
    backend = "auto"

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

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from .pipeline import StreamSpec
from .scheduler import AlertSettings
from .source import SourceOptions, check_ffmpeg_options, kind_of, redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# key -> (types accepted, description for errors)
_NUMBER = ((int, float), "a number")
_SERVICE_KEYS = {
    "metrics_addr": ((str,), "HOST:PORT"),
    "tls_cert": ((str,), "a path"),
    "tls_key": ((str,), "a path"),
    "events": ((str,), "a path or '-'"),
    "save_best": ((str,), "a folder"),
    "best_every": ((int,), "an integer"),
    "best_seconds": _NUMBER,
    "best_floor": _NUMBER,
    "backend": ((str,), "a backend name"),
    "threads": ((int,), "an integer"),
    "batch": ((int,), "an integer"),
    "batch_wait_ms": _NUMBER,
}
_SOURCE_KEYS = {
    f.name: f for f in dataclasses.fields(SourceOptions) if f.name != "retry_first_connect"
}
_ALERT_KEYS = {f.name: f for f in dataclasses.fields(AlertSettings)}
_STREAM_KEYS = {"name", "source", "roi", "alerts", *_SOURCE_KEYS}


@dataclass(frozen=True)
class WatchConfig:
    """A checked configuration: the service's settings and the streams."""

    streams: list[StreamSpec]
    service: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path) -> WatchConfig:
    """Read and check ``path``.

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
    return parse_config(data, str(path))


def parse_config(data: Mapping[str, Any], origin: str = "config") -> WatchConfig:
    """Check an already parsed configuration (see `load_config`)."""
    known = {*_SERVICE_KEYS, "defaults", "streams"}
    _no_unknown(data, known, origin)
    service = {}
    for key, (types, what) in _SERVICE_KEYS.items():
        if key in data:
            service[key] = _typed(data[key], types, what, f"{origin}: {key}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{origin}: defaults must be a table")
    _no_unknown(defaults, _STREAM_KEYS - {"name", "source"}, f"{origin}: defaults")
    streams = data.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConfigError(f"{origin}: streams must be a non-empty array of tables ([[streams]])")
    specs = []
    for k, raw in enumerate(streams):
        where = f"{origin}: streams[{k}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        merged = {**defaults, **raw}
        merged["alerts"] = {**defaults.get("alerts", {}), **raw.get("alerts", {})}
        specs.append(_stream(merged, where))
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{origin}: stream name {name!r} is used twice")
    return WatchConfig(specs, service)


def _stream(raw: Mapping[str, Any], where: str) -> StreamSpec:
    _no_unknown(raw, _STREAM_KEYS, where)
    if "source" not in raw:
        raise ConfigError(f"{where}: source is missing")
    source = _typed(raw["source"], (str,), "a string", f"{where}.source")
    name = _typed(raw.get("name", redact(source)), (str,), "a string", f"{where}.name")
    if not name.strip():
        raise ConfigError(f"{where}.name must not be empty")
    roi = raw.get("roi")
    if roi is not None:
        ok = isinstance(roi, list) and len(roi) == 4 and all(type(v) is int for v in roi)
        if not ok:
            raise ConfigError(f"{where}.roi must be [x, y, w, h] (four integers), got {roi!r}")
        roi = tuple(roi)
    options = {k: raw[k] for k in _SOURCE_KEYS if k in raw}
    if "ffmpeg_options" in options:
        value = options["ffmpeg_options"]
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}.ffmpeg_options must be a table of strings")
        options["ffmpeg_options"] = {str(k): str(v) for k, v in value.items()}
        try:  # FFmpeg ignores unknown names: refuse them now, not at the first connect
            check_ffmpeg_options(kind_of(source) or "file", options["ffmpeg_options"])
        except ConfigError as exc:
            raise ConfigError(f"{where}.ffmpeg_options: {exc}") from None
    alerts = raw.get("alerts", {})
    if not isinstance(alerts, Mapping):
        raise ConfigError(f"{where}.alerts must be a table")
    _no_unknown(alerts, set(_ALERT_KEYS), f"{where}.alerts")
    try:
        source_options = SourceOptions(**options)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        alert_settings = AlertSettings(**alerts)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}.alerts: {exc}") from None
    return StreamSpec(name, source, roi, source_options, alert_settings)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(known))}"
            )


def _typed(value: Any, types: tuple[type, ...], what: str, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, types):
        raise ConfigError(f"{where} must be {what}, got {value!r}")
    return value
