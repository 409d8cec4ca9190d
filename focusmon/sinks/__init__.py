"""The outputs of a watch, one class each behind the `Sink` protocol.

* `StateLog` — a log line per state change.
* `EventWriter` — a JSON line per state change, to a file (reopened after logrotate) or
  stdout.
* `FrameSaver` — each window's sharpest frame as an image with a JSON sidecar, the newest
  ``keep`` per stream.
* `EventFrameSaver` — at each state change, the sharpest frame from before it and the
  frame at it (``on_evidence``), with a JSON sidecar.
* `MetricsEndpoint` — ``/metrics`` and ``/healthz`` (HTTP or HTTPS), read at scrape time.
* `WebhookSink` — a JSON POST per state change, from a queue and a thread of its own.
* `MqttSink` — each stream's state on an MQTT broker, with Home Assistant discovery.

Sinks only write what they are given or read: they never change the scheduler's state or
call a kernel. Each is safe to call from several stream threads.
"""

from __future__ import annotations

from ._sink import BaseSink, Sink, StreamSnapshot, WatchView
from .events import EventWriter
from .frames import EventFrameSaver, FrameSaver, safe_name
from .log import StateLog
from .metrics import MetricsEndpoint
from .mqtt import MqttSink
from .webhook import WebhookSink

__all__ = [
    "BaseSink",
    "EventFrameSaver",
    "EventWriter",
    "FrameSaver",
    "MetricsEndpoint",
    "MqttSink",
    "Sink",
    "StateLog",
    "StreamSnapshot",
    "WatchView",
    "WebhookSink",
    "safe_name",
]
