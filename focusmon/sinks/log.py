"""State changes as log lines, for a person or the journal."""

from __future__ import annotations

import logging

from ..scheduler import AlertState, StateChange
from ._sink import BaseSink


class StateLog(BaseSink):
    """One log line per state change: ``door: ok -> blurred (score 0.21, baseline 0.93)``,
    at INFO for a return to ok and WARNING otherwise.

    The line's own time (the log format's) is when it happened on a live stream; a file's
    changes also say where in the stream (``at 5.00 s``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("focusmon")

    def on_change(self, change: StateChange) -> None:
        level = logging.INFO if change.state is AlertState.OK else logging.WARNING
        where = "" if change.live else f" at {change.time:.2f} s"
        self._log.log(
            level, "%s: %s -> %s%s (score %.4g, baseline %.4g)", change.stream,
            change.previous, change.state, where, change.score, change.baseline,
        )  # fmt: skip
