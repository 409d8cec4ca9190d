"""Synthetic cameras with a known truth, for tests, benchmarks and the demo.

Shipped, like `numpy.testing`: one physical model of a camera and what is built on it.

* The model — `defocus` (a disk point-spread function), `expose` (photon and read noise,
  gain, quantisation), `night_noise_reduction` (a camera's night-time denoising).
* `focus_sweep` — a z-stack or lens sweep through focus (`Sweep`, with its true focus).
* `SurveillanceCamera`, `surveillance_clip` — a fixed camera's day with a knocked lens, a
  covered lens and a night (`Clip`, with labelled `Segment`s).
* `SimulatedMicroscope` — a focus drive and a camera over the bundled micrograph
  (`specimen`), for autofocus.
* `demo_camera`, `demo_scene` — what ``focusmon score demo`` and ``watch demo`` show.

Everything is seeded and deterministic.
"""

from __future__ import annotations

from ._microscope import SPECIMEN, SimulatedMicroscope, specimen
from ._model import defocus, disk_kernel, expose, night_noise_reduction
from ._scene import DEMO_TIMELINE, demo_camera, demo_scene
from ._surveillance import (
    CLIP_TIMELINE,
    EVENTS,
    TRUTHS,
    Clip,
    Segment,
    SurveillanceCamera,
    motion_blur,
    surveillance_clip,
)
from ._sweeps import Sweep, focus_sweep

__all__ = [
    "CLIP_TIMELINE",
    "DEMO_TIMELINE",
    "EVENTS",
    "SPECIMEN",
    "TRUTHS",
    "Clip",
    "Segment",
    "SimulatedMicroscope",
    "SurveillanceCamera",
    "Sweep",
    "defocus",
    "demo_camera",
    "demo_scene",
    "disk_kernel",
    "expose",
    "focus_sweep",
    "night_noise_reduction",
    "specimen",
    "motion_blur",
    "surveillance_clip",
]
