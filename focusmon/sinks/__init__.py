"""Outputs: state-change events as JSON lines, best frames as image files with sidecars.

Sinks only write what they are given: they never change the scheduler's state or call a
kernel. Each is safe to call from several stream threads.
"""

from __future__ import annotations

from .events import EventWriter
from .frames import FrameSaver, safe_name

__all__ = ["EventWriter", "FrameSaver", "safe_name"]
