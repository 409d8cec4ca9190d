"""The plug every output of a watch goes through, and what an output may read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..scheduler import AlertState, BestFrame, KeptFrame, StateChange


@dataclass(frozen=True)
class StreamSnapshot:
    """One stream as an output sees it at one moment: consistent, finite, read in one go."""

    name: str
    state: AlertState
    up: bool
    frames_decoded: int
    frames_analysed: int
    frames_dropped: int
    frames_corrupt: int
    packets_undecodable: int
    reconnects: int
    last_frame_age_s: float | None
    scores: Mapping[str, float] | None  # the measures of the latest scored frame
    score: float | None  # the normalised sharpness the alerts use
    baseline: float | None  # the stream's learned baseline (None while learning)
    signal_valid: bool
    processing_buckets: Sequence[int]  # cumulative counts per PROCESSING_BUCKETS bound
    processing_count: int
    processing_sum_s: float
    frames_unfit: int = 0  # frames that could not be scored (the ROI outside them), skipped
    # Each tile's sharpness over its own baseline (rows of tiles), when tile metrics are
    # asked for and the stream has them.
    tiles: Sequence[Sequence[float]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", AlertState(self.state))


class WatchView(Protocol):
    """What a sink may read of a running watch, from any thread, at any time."""

    @property
    def info(self) -> Mapping[str, str]:
        """``version`` and ``backend``."""
        ...

    def snapshot(self) -> Sequence[StreamSnapshot]:
        """Every stream now."""
        ...

    def healthy(self) -> bool:
        """At least one stream still running, or all ended without an error."""
        ...

    def health_report(self) -> Sequence[str]:
        """One line per stream: running (and its state), ended, or stopped and why."""
        ...

    def sink_failures(self) -> Mapping[str, int]:
        """How often each sink (by class name) has failed so far."""
        ...

    def sink_drops(self) -> Mapping[str, int]:
        """How many messages each sink with a queue dropped."""
        ...

    def stream_names(self) -> Sequence[str]:
        """The configured streams' names, in order."""
        ...

    def live(self) -> Sequence[Mapping[str, object]]:
        """Every stream as the live page shows it (see `~focusmon.pipeline.Watcher.live`)."""
        ...

    def history_of(self, name: str, seconds: float | None = None) -> Mapping[str, list] | None:
        """A stream's recent records, JSON-ready; None for a name no stream has."""
        ...

    def kept_frame(self, name: str, seconds: float | None = None) -> KeptFrame | None:
        """A stream's newest small frame, or the sharpest of the last ``seconds``."""
        ...

    def backend_fallbacks(self) -> int:
        """How often the streams' backend failed and was replaced by a CPU one."""
        ...


@runtime_checkable
class Sink(Protocol):
    """An output of a watch: the log, the events file, saved frames, the metrics endpoint.

    The `~focusmon.pipeline.Watcher` calls `start` once before its streams run, then
    `on_change` for each state change and (if `wants_best`) `on_best` for each window's
    sharpest frame, from the streams' threads (so a sink guards what it shares), and
    `close` once at the end. A sink that raises is logged and kept: one output's fault
    stops no stream. Subclass `BaseSink` to ignore what a sink does not use.

    A sink with an ``on_evidence(change, before, at)`` method is also handed, right after
    each change, the sharpest small frame the stream kept from before it and the one at
    it (`~focusmon.scheduler.KeptFrame`, or None): `EventFrameSaver`.
    """

    #: Whether the watch should pick each window's sharpest frame for this sink (a copy of
    #: a frame now and then, which no other sink pays for).
    wants_best: bool

    def start(self, watch: WatchView) -> None:
        """The watch is about to run; ``watch`` may be read from now on."""
        ...

    def on_change(self, change: StateChange) -> None:
        """A stream changed state."""
        ...

    def on_best(self, best: BestFrame) -> None:
        """A window of a stream closed with ``best`` as its sharpest frame."""
        ...

    def close(self) -> None:
        """The watch is over: release what the sink holds."""
        ...


class BaseSink:
    """A `Sink` that does nothing: subclass it and override what you use."""

    wants_best = False

    def start(self, watch: WatchView) -> None:  # noqa: B027 (optional)
        pass

    def on_change(self, change: StateChange) -> None:  # noqa: B027 (optional)
        pass

    def on_best(self, best: BestFrame) -> None:  # noqa: B027 (optional)
        pass

    def close(self) -> None:  # noqa: B027 (optional)
        pass
