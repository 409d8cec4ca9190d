"""What the command shows a person: log lines with their time, and the losses of a run."""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Callable

from .._text import printable
from ..source import Source


class _Formatter(logging.Formatter):
    """``2026-11-29T22:47:31.123+00:00 focusmon: WARNING: ...``: ISO 8601 with the offset,
    so lines from machines in different zones (or before and after a clock change) read
    alike; each line, its traceback included, cleaned of the sources' credentials."""

    def __init__(self, fmt: str, scrub: Callable[[str], str]) -> None:
        super().__init__(fmt)
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        # The message with its control characters escaped (a stream's name from a config
        # file may hold a newline or ANSI escapes); a traceback after it as it is.
        shown = logging.makeLogRecord(record.__dict__)
        shown.msg, shown.args = printable(record.getMessage()), None
        return self._scrub(super().format(shown))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")


def setup_logging(
    *, debug: bool, service: bool, scrub: Callable[[str], str] = lambda text: text
) -> None:
    """Log to stderr: every line with its time, unless the journal adds it (systemd sets
    ``JOURNAL_STREAM`` when stderr goes to the journal), cleaned by ``scrub``. A service
    (``watch``) logs its state changes (INFO); other commands only what went wrong,
    unless ``debug``."""
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    stamp = "" if journald else "%(asctime)s "
    handler.setFormatter(_Formatter(stamp + "focusmon: %(levelname)s: %(message)s", scrub))
    root = logging.getLogger()
    if not root.handlers:  # a caller (a test, an embedding program) may have its own
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("focusmon").setLevel(
        logging.DEBUG if debug else logging.INFO if service else logging.NOTSET
    )


def report_losses(source: Source) -> None:
    """One warning line when frames were skipped, so nothing is lost without a word."""
    stats = source.stats
    parts = [
        f"{n} {what}"
        for n, what in (
            (stats.corrupt, "corrupt frames skipped"),
            (stats.undecodable, "undecodable packets skipped"),
            (stats.dropped, "live frames dropped to keep up"),
            (stats.reconnects, "reconnects"),
        )
        if n
    ]
    if stats.ended_early:
        parts.append(f"{stats.ended_early}: cut short?")
    if parts:
        name = printable(source.name)
        print(f"focusmon: warning: {name}: {', '.join(parts)}", file=sys.stderr)
