"""JSON lines: one object per state change, flushed as it happens."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

from .._errors import ConfigError
from ..scheduler import StateChange
from ._sink import BaseSink


class EventWriter(BaseSink):
    """Writes one JSON object per line to a file (appending) or to stdout (``-``).

    Each line is written and flushed whole under a lock, so lines from different streams
    never interleave and a reader (``tail -f``) sees each event at once. When the file is
    moved or removed (logrotate), the next event opens it anew at its path: no
    ``copytruncate`` is needed, and no event goes to a rotated file.
    """

    def __init__(self, target: str) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._identity: tuple[int, int] | None = None
        if target == "-":
            self._out: TextIO = sys.stdout
        else:
            self._path = Path(target)
            try:
                self._open()
            except OSError as exc:
                raise ConfigError(f"cannot write events to {target}: {exc.strerror}") from None

    def _open(self) -> None:
        assert self._path is not None
        self._out = self._path.open("a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        stat = os.fstat(self._out.fileno())
        self._identity = (stat.st_dev, stat.st_ino)

    def _reopen_if_moved(self) -> None:
        """Open the path again if it no longer names the file held open."""
        try:
            stat = os.stat(self._path)  # type: ignore[arg-type]
            moved = (stat.st_dev, stat.st_ino) != self._identity
        except FileNotFoundError:
            moved = True
        if moved:
            self._out.close()
            self._open()

    def on_change(self, change: StateChange) -> None:
        self.write(change.as_dict())

    def write(self, event: dict[str, object]) -> None:
        """Append ``event`` as one line (finite numbers only)."""
        for key, value in event.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"event field {key!r} is {value}: events carry finite numbers")
        line = json.dumps(event, allow_nan=False) + "\n"
        with self._lock:
            if self._path is not None:
                self._reopen_if_moved()
            self._out.write(line)
            self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._path is not None:
                self._out.close()
            else:
                self._out.flush()
