"""focusmon's exceptions.

Every error focusmon raises on purpose derives from `FocusmonError`, and also from the
builtin it means, so callers can catch either::

    FocusmonError
    ├── ConfigError (ValueError)        a bad argument, option or setting
    └── SourceError (OSError)           an input that cannot be opened or decoded
        └── SourceTimeout (TimeoutError)  a source that stopped answering
"""

from __future__ import annotations


class FocusmonError(Exception):
    """Base class of focusmon's errors."""


class ConfigError(FocusmonError, ValueError):
    """A parameter is out of range or malformed; the message names it."""


class SourceError(FocusmonError, OSError):
    """A source cannot be opened, has no video, or cannot be decoded."""


class SourceTimeout(SourceError, TimeoutError):  # noqa: N818 (named in DESIGN.md)
    """A source did not answer within its timeout."""
