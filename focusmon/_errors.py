"""focusmon's exceptions.

Every error focusmon raises on purpose derives from `FocusmonError`, and also from the
builtin it means, so callers can catch either::

    FocusmonError
    ├── ConfigError (ValueError)        a bad argument, option or setting
    └── SourceError (OSError)           an input that cannot be opened or decoded
        └── SourceTimeout (TimeoutError)  a source that stopped answering
"""

from __future__ import annotations

import math


class FocusmonError(Exception):
    """Base class of focusmon's errors."""


class ConfigError(FocusmonError, ValueError):
    """A parameter is out of range or malformed; the message names it."""


class SourceError(FocusmonError, OSError):
    """A source cannot be opened, has no video, or cannot be decoded."""


class SourceTimeout(SourceError, TimeoutError):  # noqa: N818 (named in DESIGN.md)
    """A source did not answer within its timeout."""


def check_int(name: str, value: object, low: int) -> None:
    """Raise ConfigError unless ``value`` is an integer (not a bool) >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"`{name}` must be an integer >= {low}, got {value!r}")


def check_positive(name: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is a finite number (not a bool) > 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"`{name}` must be a number > 0, got {value!r}")
