"""A one-line progress display for long work, shown only on a terminal."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """``\\r``-redrawn ``label: done/total frames, rate`` on ``stream``, at most 10 times a second.

    Does nothing when ``stream`` is not a terminal, so piped output stays clean.
    """

    def __init__(self, stream: TextIO, label: str, total: int | None = None) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._label = label
        self._total = total
        self._start = self._last = time.monotonic()
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._enabled and now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._start, 1e-9)
        of = f"/{self._total}" if self._total else ""
        self._stream.write(f"\r{self._label}: {self.done}{of} frames, {rate:.0f} fps   ")
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
