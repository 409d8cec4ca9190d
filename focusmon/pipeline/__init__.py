"""The wiring: threads, queues and lifecycle, from a configuration to the sinks.

* `iter_frames`, `score_source` — one source's frames, decoded on their own thread, and
  scored (``focusmon score`` and ``peak``); `FrameQueue` is the hand-over between them.
* `BatchScorer` — the one place where stream threads share a backend (a GPU's batches).
* `Watcher` — many streams, each judged by the scheduler, with what happens handed to
  the sinks (``focusmon watch``).
"""

from __future__ import annotations

from ._batch import BatchScorer
from ._frames import FrameQueue, iter_frames, score_source
from ._watch import StreamStatus, Watcher

__all__ = [
    "BatchScorer",
    "FrameQueue",
    "StreamStatus",
    "Watcher",
    "iter_frames",
    "score_source",
]
