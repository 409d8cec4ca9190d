"""Decisions from scores: recent records, the sharpest frames, the focus peak, alert states.

Everything here is driven by the records handed in, with their time; nothing reads a clock,
opens a source or calls a kernel, so each policy can be tested frame by frame.

* `normalised_sharpness` — the one documented function from measures to a decision score.
* `FrameSlots` — preallocated frames, copied into only when one must be kept.
* `StreamHistory` — a stream's last two minutes of records and last seconds of small
  frames (the best of any recent window, evidence for events, the live page's curve).
* `BestFramePicker` — the sharpest frame of every window of N frames or T seconds.
* `find_peak`, `PeakTracker` — the in-focus frame of a focus sweep, after or during it.
* `fit_field` — each tile's peak in a sweep of focus maps, and the field's tilt and
  curvature.
* `AlertTracker` — a stream's `AlertState`: ok, blurred, obstructed, dark, no_signal,
  frozen (`FreezeWatch`, on `picture_samples`) or moved (`ViewWatch`, on `thumbnail`);
  `no_signal` and `signal_valid` — the rules that judge a stream from its source's state.
"""

from __future__ import annotations

from ._alerts import (
    CONNECTING,
    STATES,
    AlertSettings,
    AlertState,
    AlertTracker,
    FreezeWatch,
    StateChange,
    no_signal,
    picture_samples,
    signal_valid,
)
from ._best import BestFrame, BestFramePicker
from ._field import FieldFit, fit_field
from ._history import KeptFrame, StreamHistory
from ._peak import (
    COMPRESSED_QP,
    Peak,
    PeakTracker,
    find_peak,
    peak_position,
    peak_uncertainty,
    sweep_bframes,
    sweep_quantiser,
)
from ._ring import FrameSlots
from ._score import SHARPNESS, normalised_sharpness
from ._views import ViewWatch, ssim_map, thumbnail

__all__ = [
    "COMPRESSED_QP",
    "CONNECTING",
    "SHARPNESS",
    "STATES",
    "AlertSettings",
    "AlertState",
    "AlertTracker",
    "BestFrame",
    "BestFramePicker",
    "FieldFit",
    "FreezeWatch",
    "FrameSlots",
    "KeptFrame",
    "Peak",
    "PeakTracker",
    "StateChange",
    "StreamHistory",
    "ViewWatch",
    "find_peak",
    "fit_field",
    "no_signal",
    "normalised_sharpness",
    "peak_position",
    "peak_uncertainty",
    "picture_samples",
    "signal_valid",
    "ssim_map",
    "sweep_bframes",
    "sweep_quantiser",
    "thumbnail",
]
