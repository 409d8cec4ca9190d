"""Autofocus inside Micro-Manager: pymmcore-plus's ``CMMCorePlus`` as a focusmon `Stage`
and `Camera`, and a software autofocus for its MDA engine (``pip install 'focusmon[mm]'``).

>>> from pymmcore_plus import CMMCorePlus                     # doctest: +SKIP
>>> core = CMMCorePlus(); core.loadSystemConfiguration()     # doctest: +SKIP
>>> engine = use_focusmon_autofocus(core, range_um=25)       # doctest: +SKIP
>>> core.mda.run(useq.MDASequence(                           # doctest: +SKIP
...     stage_positions=[(0, 0, 10), (500, 0, 12)],
...     autofocus_plan=useq.AxesBasedAF(autofocus_device_name="Z", axes=("p",)),
... ))

Every autofocus event of the sequence (its ``autofocus_plan``) searches the focus device
over ± ``range_um`` around the plane the event stands at (in a sub-ROI of the camera, if
given); the acquisition continues at the plane found, at that position, as Micro-Manager's
own hardware autofocus would; each frame's metadata carries the search that placed it
(``focusmon_autofocus``). `FocusmonEngine.track` keeps focus between time points with the
`~focusmon.autofocus.FocusTracker` instead of a full search.

No Micro-Manager device adapter is needed beyond a camera and a focus drive: the search is
software, on the images the camera snaps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymmcore_plus import CMMCorePlus
from pymmcore_plus.mda import MDAEngine
from useq import HardwareAutofocus, MDAEvent

from .autofocus import AutofocusResult, FocusTracker, autofocus

log = logging.getLogger("focusmon.mm")

__all__ = ["FocusmonEngine", "MMCamera", "MMStage", "use_focusmon_autofocus"]


class MMStage:
    """A focus drive of a ``CMMCorePlus`` as a `focusmon.autofocus.Stage` (µm)."""

    def __init__(self, core: CMMCorePlus, device: str | None = None) -> None:
        self.core = core
        self.device = device or core.getFocusDevice()
        if not self.device:
            raise ValueError("the core has no focus device: give `device` or set one")

    def move_to(self, z_um: float) -> None:
        self.core.setPosition(self.device, float(z_um))
        self.core.waitForDevice(self.device)

    def position(self) -> float:
        return float(self.core.getPosition(self.device))


class MMCamera:
    """The core's camera as a `focusmon.autofocus.Camera`: ``snapImage``, ``getImage``,
    cut to ``roi = (x, y, w, h)`` if given (a sub-ROI scored, the camera untouched)."""

    def __init__(self, core: CMMCorePlus, roi: Sequence[int] | None = None) -> None:
        self.core = core
        self.roi = None if roi is None else tuple(int(v) for v in roi)
        if self.roi is not None and (len(self.roi) != 4 or min(self.roi[2:]) < 3):
            raise ValueError(f"`roi` must be (x, y, w, h), w and h >= 3, got {roi!r}")

    def snap(self) -> np.ndarray:
        self.core.snapImage()
        image = np.asarray(self.core.getImage())
        if image.ndim == 3:  # an RGB camera: its green, the luma's largest part
            image = image[..., 1]
        if image.dtype not in (np.uint8, np.uint16):
            image = np.clip(image, 0, 65535).astype(np.uint16)
        if self.roi is not None:
            x, y, w, h = self.roi
            image = image[y : y + h, x : x + w]
        return image

    @property
    def bit_depth(self) -> int:
        """The camera's bit depth (scores are normalised: it changes no decision)."""
        return int(self.core.getImageBitDepth())


class FocusmonEngine(MDAEngine):
    """pymmcore-plus's MDA engine with focusmon's software autofocus for the sequence's
    autofocus events (Micro-Manager's hardware autofocus is not used or needed).

    Parameters
    ----------
    core : CMMCorePlus
    range_um : float
        Each search covers the event's plane ± this.
    roi : (x, y, w, h), optional
        Score this part of the camera's image only.
    device : str, optional
        The focus device searched (default: the core's focus device).
    options
        Passed to `focusmon.autofocus.autofocus` (``strategy``, ``backlash_um``, ...).

    Attributes
    ----------
    results : dict
        The last search per position index (``None``: a sequence without positions).
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        range_um: float = 50.0,
        roi: Sequence[int] | None = None,
        device: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(core)
        if not (math.isfinite(range_um) and range_um > 0):
            raise ValueError(f"`range_um` must be a finite number > 0, got {range_um!r}")
        self.range_um, self.roi, self.device, self.options = float(range_um), roi, device, options
        self.results: dict[int | None, AutofocusResult] = {}
        self._trackers: dict[int | None, FocusTracker] = {}
        self._track: tuple[float | None, dict[str, Any]] | None = None  # `track`'s step, options

    # -- the autofocus event ------------------------------------------------------------------

    def exec_event(self, event: MDAEvent):  # type: ignore[override]
        if isinstance(getattr(event, "action", None), HardwareAutofocus):
            self._software_autofocus(event)
            return iter(())
        return super().exec_event(event)

    def _software_autofocus(self, event: MDAEvent) -> None:
        core = self.mmcore
        stage = MMStage(core, self.device)
        camera = MMCamera(core, self.roi)
        here = stage.position()
        p_index = event.index.get("p", None)
        tracker = self._trackers.get(p_index)
        if tracker is not None:  # a time-lapse: follow the drift with a few probe snaps
            before = tracker.snaps
            found = tracker.update()  # the snaps of this update alone, not the tracker's total
            result = AutofocusResult(found, [], tracker.step_um, tracker.snaps - before, 0,
                                     "tracked", "track")  # fmt: skip
        else:
            result = autofocus(stage, camera, z_min=here - self.range_um,
                               z_max=here + self.range_um, **self.options)  # fmt: skip
        self.results[p_index] = result
        if not result.ok:
            log.warning("autofocus at position %s failed: %s", p_index, result.reason)
            return
        # The engine adds this to every later event's z at the position, as it does the
        # hardware autofocus's correction.
        correction = getattr(self, "_z_correction", None)
        if isinstance(correction, dict):
            correction[p_index] = result.z - here + correction.get(p_index, 0.0)
        log.info("autofocus at position %s: %.3f µm (%+.3f), %d snaps", p_index, result.z,
                 result.z - here, result.snaps)  # fmt: skip

    def track(self, step_um: float | None = None, **options: Any) -> None:
        """From now on, an autofocus event at a position searched before follows the focus
        with `~focusmon.autofocus.FocusTracker` (three probe snaps ``step_um`` apart; by
        default sized from the curve the position's search measured, as
        `FocusTracker.after` does) instead of a full search: a time-lapse between time
        points."""
        if step_um is not None and not (math.isfinite(step_um) and step_um > 0):
            raise ValueError(f"`step_um` must be a finite number > 0, got {step_um!r}")
        self._track = (None if step_um is None else float(step_um), options)

    def setup_event(self, event: MDAEvent) -> None:
        super().setup_event(event)
        p_index = event.index.get("p", None)
        if self._track is not None and p_index in self.results and p_index not in self._trackers:
            step, options = self._track
            core, found = self.mmcore, self.results[p_index]
            self._trackers[p_index] = FocusTracker.after(
                found, MMStage(core, self.device), MMCamera(core, self.roi),
                z_min=found.z - self.range_um, z_max=found.z + self.range_um,
                **{"step_um": step, **self._shared_options(), **options},
            )  # fmt: skip

    def _shared_options(self) -> dict[str, Any]:
        """The search's options a tracker takes too: the same drive, measure and backend."""
        return {
            k: v for k, v in self.options.items() if k in ("backlash_um", "measure", "backend")
        }

    # -- the frames' metadata -----------------------------------------------------------------

    def get_frame_metadata(self, event: MDAEvent, *args: Any, **kwargs: Any):  # type: ignore[override]
        meta = super().get_frame_metadata(event, *args, **kwargs)
        result = self.results.get(event.index.get("p", None))
        if result is not None:
            meta = dict(meta)
            meta["focusmon_autofocus"] = {
                "z_um": result.z, "uncertainty_um": result.uncertainty_um,
                "snaps": result.snaps, "reason": result.reason, "strategy": result.strategy,
            }  # fmt: skip
        return meta


def use_focusmon_autofocus(core: CMMCorePlus, **options: Any) -> FocusmonEngine:
    """Make ``core``'s MDA runner use `FocusmonEngine` (``options`` as it takes); returns
    the engine."""
    engine = FocusmonEngine(core, **options)
    core.mda.set_engine(engine)
    return engine
