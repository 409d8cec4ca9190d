"""JSON lines: one object per state change, flushed as it happens."""

from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path
from typing import TextIO

from .._errors import ConfigError


class EventWriter:
    """Writes one JSON object per line to a file (appending) or to stdout (``-``).

    Each line is written and flushed whole under a lock, so lines from different streams
    never interleave and a reader (``tail -f``) sees each event at once.
    """

    def __init__(self, target: str) -> None:
        self._lock = threading.Lock()
        if target == "-":
            self._out: TextIO = sys.stdout
            self._owned = False
        else:
            try:
                self._out = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 (closed in close)
            except OSError as exc:
                raise ConfigError(f"cannot write events to {target}: {exc.strerror}") from None
            self._owned = True

    def write(self, event: dict[str, object]) -> None:
        for key, value in event.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"event field {key!r} is {value}: events carry finite numbers")
        line = json.dumps(event, allow_nan=False) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._owned:
                self._out.close()
            else:
                self._out.flush()
