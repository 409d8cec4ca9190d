"""Wiring sources to backends. (Decoding and scoring on separate threads comes with ingest.)"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ._errors import ConfigError
from .kernels import Backend, check_roi
from .measures import FocusRecord, score_frame
from .source import Source


def score_source(
    source: Source,
    backend: Backend,
    *,
    roi: Sequence[int] | None = None,
    every: int = 1,
) -> Iterator[FocusRecord]:
    """Score every ``every``-th frame of ``source`` in decode order.

    Raises
    ------
    ConfigError
        If ``every`` < 1, or ``roi`` does not fit the frames (checked on each new size).
    SourceError
        If decoding fails part-way.
    """
    if not isinstance(every, int) or every < 1:
        raise ConfigError(f"`every` must be an integer >= 1, got {every!r}")
    checked_shape = None
    for frame in source:
        if frame.index % every:
            continue
        if roi is not None and frame.luma.shape != checked_shape:
            try:
                check_roi(roi, frame.luma.shape)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            checked_shape = frame.luma.shape
        yield score_frame(
            backend, frame.luma, frame.index, frame.pts, roi=roi,
            scale=frame.scale, offset=frame.offset,
        )  # fmt: skip
