"""Microscope autofocus: move a stage to the in-focus plane, and keep it there.

Any microscope is two small objects: a `Stage` that moves to a z position (µm) and says
where it is, and a `Camera` that snaps a 2-D uint8 or uint16 image. A pycro-manager (or
Micro-Manager) adapter, for example, is::

    class MMStage:
        def __init__(self, core): self.core = core
        def move_to(self, z_um): self.core.set_position(z_um); self.core.wait_for_system()
        def position(self): return self.core.get_position()

    class MMCamera:
        def __init__(self, core): self.core = core
        def snap(self):
            self.core.snap_image()
            image = self.core.get_image()
            return image.reshape(self.core.get_image_height(), self.core.get_image_width())

Every image is scored with the scheduler's robust focus score (brightness-normalised,
noise-compensated Tenengrad, `focusmon.scheduler.normalised_sharpness`), and curves are
fitted with its robust peak (`focusmon.scheduler.peak_position`, as `find_peak` uses).

Guarantees: no position outside ``[z_min, z_max]`` is ever commanded; every plane, the
final one included, is approached from below (the side every sweep measures from), by
``backlash_um`` or, when the stage's play is not known, by `DEFAULT_APPROACH_UM`, so gear
play does not shift it; a camera or stage error ends the search, with the stage at a
position the result reports and the reason said. `measure_backlash` measures a stage's
play from an upward and a downward sweep.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .measures import measure as measure_frame
from .scheduler import normalised_sharpness, peak_position

STRATEGIES = ("model", "sweep-fit", "golden")
#: A coarse-sweep maximum must stand this many noise deviations above the floor before the
#: sweep may stop early.
SIGNIFICANT = 8.0
#: Each finer sweep of sweep-fit spans ± this many of the previous level's spacings.
LEVEL_SPAN = 1.0
#: FocusTracker: a tracker predicts the plane from its drift so far, probes around the
#: prediction, and moves this fraction of the way from it to the probes' fitted apex (the
#: rest is noise it does not follow) ...
TRACK_GAIN = 0.6
#: ... and corrects its drift estimate by this fraction of the same residual (an
#: alpha-beta filter). Measured on bench_autofocus's time-lapses: with neither (1.0, 0)
#: the plane lagged a 0.3 µm/time point drift by 0.1-0.17 µm (91% of an MDA's tracked
#: images in focus, now 96-97%), and the dim, flickering retina's probes jittered it
#: ±0.4 µm (49-56% of its steps in focus, now 66-73%).
TRACK_VELOCITY_GAIN = 0.2
#: `FocusTracker`: a lost focus is searched again over ± this many probe spacings ...
REACQUIRE_STEPS = 10
#: ... and the in-focus level it compares with is forgotten by this share an update.
REFERENCE_DECAY = 0.005
#: Samples a tracker keeps of its session's curve (the rest are of no further use).
TRACK_CURVE_KEPT = 300
_GOLDEN = (math.sqrt(5) - 1) / 2
#: ``model``: planes in its coarse sweep (a sixth of the range apart) ...
MODEL_COARSE_STEPS = 7
#: ... which stops once the broad score has fallen this share below its maximum.
MODEL_PASSED_DROP = 0.02
#: ``model``: Tenengrad's top is the focus's, not noise, once it is this many times the
#: highest (and the spread) of the samples away from it; until then the broad score leads.
MODEL_STANDS_OUT = 3.0
#: ``model``: the fit uses the samples within this many first probe offsets of the plane,
#: and those of at least this share of the top (the cusp's flanks, not its tails).
MODEL_WINDOW, MODEL_FLANK = 3.0, 0.3
#: ``model``: probes after the coarse sweep (at least, at most).
MODEL_PROBES = (4, 14)
#: ``model``, where the focused score never stands out: it may still stop on that score's
#: own cusp fit, from at least this many samples, if its standard error is under this
#: share of the usual bound and its apex within this many bounds of the broad score's.
#: (The phase-contrast cell over ±25 µm took 18-21 snaps, probing to `MODEL_PROBES`' cap,
#: now 8-11; from 5 samples a dim, flickering retina's noise passed for a fit.)
MODEL_OWN_FIT = (6, 0.5, 4.0)
#: How far below a plane the drive starts its last move up when the play is not given
#: (``backlash_um=None``): more than the play of common focus drives (a few µm), so the
#: plane is reached the way the curve was measured whatever the stage. It costs one extra
#: move per downward move, never a snap.
DEFAULT_APPROACH_UM = 5.0


class Stage(Protocol):
    """A focus drive: positions in micrometres."""

    def move_to(self, z_um: float) -> None: ...

    def position(self) -> float: ...


class Camera(Protocol):
    """Takes one 2-D uint8 or uint16 image."""

    def snap(self) -> np.ndarray: ...


@dataclass(frozen=True)
class AutofocusResult:
    """What a search found and what it cost.

    Attributes
    ----------
    z : float
        The chosen plane (µm); the stage was left there.
    curve : list of (float, float)
        Every sampled (z, score), in the order snapped.
    uncertainty_um : float
        How far the true plane may lie from ``z`` given the sampling and the fit.
    snaps, moves : int
        Images taken and stage moves commanded.
    coarse_snaps : int
        Of ``snaps``, those of the coarse sweep (the rest refine).
    reason : str
        Why it stopped: ``converged``, ``peak passed``, or the error that ended it.
    strategy : str
    """

    z: float
    curve: list[tuple[float, float]]
    uncertainty_um: float
    snaps: int
    moves: int
    reason: str
    strategy: str
    coarse_snaps: int = 0

    @property
    def ok(self) -> bool:
        """False if an error ended the search."""
        return not self.reason.startswith("error")

    def as_dict(self) -> dict[str, object]:
        return {
            "z": self.z, "uncertainty_um": self.uncertainty_um, "snaps": self.snaps,
            "moves": self.moves, "reason": self.reason, "strategy": self.strategy,
            "coarse_snaps": self.coarse_snaps, "curve": [[z, s] for z, s in self.curve],
        }  # fmt: skip


class _DeviceError(Exception):
    """A device error: ends the search."""


@dataclass
class _Session:
    """The stage and camera behind bounds, backlash handling and counters."""

    stage: Stage
    camera: Camera
    z_min: float
    z_max: float
    backlash_um: float | None  # None: not known, approach by DEFAULT_APPROACH_UM
    score: Callable[[np.ndarray], float] | Callable[[np.ndarray], tuple[float, float]]
    snaps: int = 0
    moves: int = 0
    curve: list[tuple[float, float]] = field(default_factory=list)
    last_z: float | None = None
    #: Upward travel since the last downward move: a sample is `settled` (the play taken
    #: up) once it reaches the approach. Near ``z_min`` a full approach cannot be made.
    rise: float = 0.0
    coarse_snaps: int = 0
    #: ``model``: (z, score, broad score, settled) of every sample.
    points: list[tuple[float, float, float, bool]] = field(default_factory=list)

    def clamp(self, z: float) -> float:
        return min(max(z, self.z_min), self.z_max)

    @property
    def approach(self) -> float:
        """How far below a plane the last move up starts."""
        return DEFAULT_APPROACH_UM if self.backlash_um is None else self.backlash_um

    def go(self, z: float) -> float:
        """Move to ``z`` (clamped), arriving from below when the last move came from above."""
        z = self.clamp(z)
        if self.approach > 0 and (self.last_z is None or z < self.last_z):
            self._move(self.clamp(z - self.approach))  # take up the play going upward
        self._move(z)
        return z

    def _move(self, z: float) -> None:
        try:
            self.stage.move_to(z)
        except Exception as exc:
            raise _DeviceError(f"error: stage move to {z:g} µm failed: {exc}") from exc
        self.moves += 1
        if self.last_z is None or z < self.last_z:
            self.rise = 0.0
        else:
            self.rise += z - self.last_z
        self.last_z = z

    def sample(self, z: float) -> float:
        z = self.go(z)
        try:
            image = self.camera.snap()
        except Exception as exc:
            raise _DeviceError(f"error: camera snap failed: {exc}") from exc
        self.snaps += 1
        value: float | tuple[float, float] = self.score(image)
        broad = math.nan
        if isinstance(value, tuple):
            value, broad = value
        self.curve.append((z, value))
        # The bound's own plane counts as settled: nothing lies below it to come from.
        settled = self.approach == 0 or self.rise >= self.approach - 1e-9
        self.points.append((z, value, broad, settled))
        return value


def autofocus(
    stage: Stage,
    camera: Camera,
    *,
    z_min: float,
    z_max: float,
    strategy: str = "model",
    coarse_steps: int | None = None,
    fine_step_um: float | None = None,
    tolerance_um: float | None = None,
    backlash_um: float | None = None,
    measure: str = "tenengrad_nc",
    backend: str = "auto",
    early_stop: bool = True,
) -> AutofocusResult:
    """Find the in-focus plane between ``z_min`` and ``z_max`` and leave the stage there.

    Parameters
    ----------
    stage, camera : Stage, Camera
    z_min, z_max : float
        The range searched (µm); nothing outside it is ever commanded.
    strategy : {"model", "sweep-fit", "golden"}
        ``model`` (about half the snaps of the others): a coarse sweep upward, scoring each
        snap with ``measure`` and with the broad ``variance_nc`` (whose curve spans the
        whole range, so a sixth of it between planes cannot step over the focus), stopping
        once the broad score has passed its peak; then probes placed by a model of the
        curve's shape — a symmetric cusp, ``top - slope * |z - z0|`` — fitted to the
        samples on its flanks, each pair of probes half as far apart around the last fit,
        until the fitted plane's standard error is under half the distance over which the
        fitted curve loses 5% (the depth of field as the curve shows it). Where the
        focused score does not yet stand out of the noise (a dim or sparse specimen), the
        broad score places the probes. See `model_search`.
        ``sweep-fit``: a coarse sweep upward (stopping early once the curve has clearly
        passed its peak) and a robust peak fit, then sweeps 3x finer across ± one spacing
        of the fitted peak, each fitted to every sample near it, down to ``fine_step_um``.
        ``golden``: the peak bracketed by a coarse sweep, then golden-section search.
    coarse_steps : int, optional
        Planes in the coarse sweep over the whole range (default: 7 for ``model``, 15 for
        the others).
    fine_step_um : float, optional
        ``model``: the first probes' offset from the coarse estimate (default: 3 µm, at
        most a twelfth of the range). The others: the spacing of the finest sweep
        (default: 1/27 of the coarse spacing: three levels).
    tolerance_um : float, optional
        ``model``: stop once the fitted plane's standard error is below this (default: from
        the fitted curve, as above). ``golden``: stop when the bracket is this narrow
        (default: ``fine_step_um``).
    backlash_um : float, optional
        Play in the focus drive: every plane is approached from below by this much (0: a
        drive without play). Not given: by `DEFAULT_APPROACH_UM`, which covers the play
        of common drives; `measure_backlash` measures a stage's.
    measure, backend : str
        The score (see `focusmon.scheduler.normalised_sharpness`) and the kernel backend.
    early_stop : bool
        Stop the coarse sweep once the peak is clearly passed.

    Returns
    -------
    AutofocusResult
    """
    if not (math.isfinite(z_min) and math.isfinite(z_max) and z_min < z_max):
        raise ValueError(f"need finite z_min < z_max, got {z_min!r} and {z_max!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if coarse_steps is None:
        coarse_steps = MODEL_COARSE_STEPS if strategy == "model" else 15
    if not isinstance(coarse_steps, int) or coarse_steps < 3:
        raise ValueError(f"`coarse_steps` must be an integer >= 3, got {coarse_steps!r}")
    _check_backlash(backlash_um)
    coarse = (z_max - z_min) / (coarse_steps - 1)
    if strategy == "model":
        fine = fine_step_um if fine_step_um else min(3.0, (z_max - z_min) / 12)
    else:
        fine = fine_step_um if fine_step_um else coarse / 27
    if not fine > 0:
        raise ValueError(f"`fine_step_um` must be > 0, got {fine_step_um!r}")
    if tolerance_um is not None and not tolerance_um > 0:
        raise ValueError(f"`tolerance_um` must be > 0, got {tolerance_um!r}")

    def both(image: np.ndarray) -> tuple[float, float]:
        scores = measure_frame(image, backend=backend)
        return (normalised_sharpness(scores, measure),
                normalised_sharpness(scores, "variance_nc"))  # fmt: skip

    session = _Session(
        stage, camera, z_min, z_max, backlash_um,
        both if strategy == "model" else found_score(measure, backend),
    )  # fmt: skip
    best_z, uncertainty, reason = (z_min + z_max) / 2, (z_max - z_min) / 2, "converged"
    try:
        if strategy == "model":
            best_z, uncertainty, reason = model_search(
                session, coarse, fine, tolerance_um, early_stop
            )
        else:
            centre, reason = _coarse_sweep(session, coarse, coarse_steps, early_stop)
            session.coarse_snaps = session.snaps
            best_z, uncertainty = centre, coarse
            if strategy == "sweep-fit":
                spacing = coarse
                while spacing > fine * 1.001:  # each level: ±1 of the last spacing, 3x finer
                    best_z, uncertainty = _fine_sweep(
                        session, best_z, spacing, max(spacing / 3, fine)
                    )
                    spacing = max(spacing / 3, fine)
            else:
                best_z, uncertainty = _golden(session, centre, coarse, tolerance_um or fine)
        best_z = session.go(best_z)  # from below, like every sample
    except _DeviceError as stop:
        reason = str(stop)
        best_z = _settle_after_error(session)
    return AutofocusResult(
        best_z, session.curve, float(uncertainty), session.snaps, session.moves, reason,
        strategy, session.coarse_snaps,
    )  # fmt: skip


def model_search(
    session: _Session, coarse: float, offset: float, tolerance: float | None,
    early_stop: bool = True,
) -> tuple[float, float, str]:  # fmt: skip
    """The ``model`` strategy on a session whose score gives (focused, broad) per snap:
    the plane, its standard error and why it stopped.

    1. Coarse sweep upward every ``coarse`` µm, until the broad score has fallen
       `MODEL_PASSED_DROP` below its maximum (``peak passed``).
    2. The first estimate: the three coarse samples around the top matched by symmetry
       (the level of the lower neighbour found on the other flank by interpolation; the
       focus is midway), on the focused score if its top stands out
       (`MODEL_STANDS_OUT`), else on the broad one.
    3. Probes at the estimate ± ``offset``; then, until the standard error is small
       enough: if the top sample's neighbours are more than 2 offsets away, one probe
       halves that gap (toward the higher neighbour); else a symmetric cusp is fitted to
       the settled samples on the flanks near the top, and two probes are placed at the
       fit ± half the last offset (not under a third of ``offset``). A focused score
       that never stands out (a broad curve on a high floor) may end the search by its
       own fit once that has settled (`MODEL_OWN_FIT`).

    A cusp because that is the shape defocus gives a gradient measure (the blur disk's
    radius grows linearly with defocus, and the score falls with it); and a symmetric
    model's fit depends on the samples' placement, not the exact fall-off, once probes
    straddle the peak evenly.
    """
    z_min, z_max = session.z_min, session.z_max
    reason = "converged"
    steps = int(round((z_max - z_min) / coarse)) + 1
    start = len(session.points)
    for k in range(steps):
        session.sample(z_min + k * coarse)
        broad = [p[2] for p in session.points[start:]]
        top = int(np.argmax(broad))
        if (
            early_stop
            and 0 < top < k
            and broad[top] > 0
            and (broad[-1] < broad[top] * (1 - MODEL_PASSED_DROP))
        ):
            reason = "peak passed"
            break
    session.coarse_snaps = session.snaps
    coarse_points = session.points[start:]
    focused = [p[1] for p in coarse_points]
    stands_out = _stands_out(coarse_points, int(np.argmax(focused)), 1.5 * coarse)
    column = 1 if stands_out else 2
    z = _symmetric_vertex(coarse_points, column)
    floor = z_min + session.approach  # above it, a probe can be reached from below

    def reach(z: float) -> float:
        """Below ``floor`` no probe can be reached from below (z_min itself is reached from
        above): such a probe goes to ``floor``."""
        return min(max(session.clamp(z), floor), z_max)

    z = session.clamp(z)
    probes, low, high = 0, *MODEL_PROBES
    width, error = offset, float("inf")
    pending = [z - width, z + width]
    while True:
        for probe in pending:
            session.sample(reach(probe))
            probes += 1
        if probes >= high:
            break
        pending = []
        every = sorted(session.points)
        top = int(np.argmax([p[1] for p in every]))
        stands_out = stands_out or _stands_out(every, top, 2 * offset)
        # Unsettled samples (a probe just above z_min, the play maybe not taken up) are
        # not where they were commanded: they neither bracket nor fit.
        points = [p for p in every if p[3]]
        column = 1 if stands_out else 2
        values = [p[column] for p in points]
        top = int(np.argmax(values))
        gap = _open_gap(points, top, column, 2 * offset, z_min, z_max)
        if gap is not None:
            gap = reach(gap)
        if gap is not None and all(abs(gap - p[0]) > 1e-6 for p in points):
            pending = [gap]
            z = gap
            continue
        near = [p for p in points if abs(p[0] - points[top][0]) <= MODEL_WINDOW * offset]
        if stands_out:
            near = [p for p in near if p[1] >= MODEL_FLANK * points[top][1]]
        fit = _cusp_fit([p[0] for p in near], [p[column] for p in near])
        if fit is None:
            z = points[top][0]
        else:
            fitted, error, top_level, slope = fit
            z = session.clamp(min(max(fitted, z - 2 * width), z + 2 * width))
            enough = _fit_bound(tolerance, top_level, slope)
            if stands_out and probes >= low and error <= enough:
                break
            if not stands_out and probes >= low:
                # A specimen whose focused curve is as broad as its floor is high (phase
                # contrast: its top never stands out) but smooth: its own fit converged.
                own = _settled_own_fit(near, fitted, tolerance)
                if own is not None:
                    z, error = session.clamp(own[0]), own[1]
                    break
        width = max(width / 2, offset / 3)
        pending = [z - width, z + width]
    if not math.isfinite(error):
        error = width
    return z, float(error), reason


def _settled_own_fit(
    near: list, broad_apex: float, tolerance: float | None
) -> tuple[float, float] | None:
    """The apex and standard error of the focused score's cusp fit to ``near``, where that
    fit has settled (`MODEL_OWN_FIT`; the bound is ``tolerance`` if given) and agrees with
    the broad score's apex; else None."""
    least, share, agree = MODEL_OWN_FIT
    if len(near) < least:
        return None
    fit = _cusp_fit([p[0] for p in near], [p[1] for p in near])
    if fit is None:
        return None
    apex, error, top, slope = fit
    bound = _fit_bound(tolerance, top, slope)
    if error <= share * bound and abs(apex - broad_apex) <= agree * bound:
        return apex, error
    return None


def _fit_bound(tolerance: float | None, top: float, slope: float) -> float:
    """How small a cusp fit's standard error must be: ``tolerance`` if given, else half
    the distance over which the fitted curve loses 5% (its depth of field)."""
    return tolerance if tolerance is not None else 0.5 * 0.05 * top / slope


def _stands_out(points: list, top: int, distance: float) -> bool:
    """Whether the focused score's top sample stands out of the samples more than
    ``distance`` from it (at least two): `MODEL_STANDS_OUT` times their highest and their
    spread."""
    far = [p[1] for p in points if abs(p[0] - points[top][0]) > distance]
    if len(far) < 2:
        return False
    return points[top][1] >= MODEL_STANDS_OUT * max(max(far), max(far) - min(far))


def _symmetric_vertex(points: list, column: int) -> float:
    """The peak of the curve through ``points`` (z order) by symmetry: the top sample, its
    higher neighbour h and its lower one g; the focus lies between the top and h, midway
    between h and the place on g's flank where the curve is at h's level."""
    zs = [p[0] for p in points]
    values = [p[column] for p in points]
    i = int(np.argmax(values))
    if i == 0 or i == len(values) - 1:
        return zs[i]  # the probes bracket it
    left, top, right = values[i - 1], values[i], values[i + 1]
    if left >= right:
        zh, vh, zg, vg = zs[i - 1], left, zs[i + 1], right
    else:
        zh, vh, zg, vg = zs[i + 1], right, zs[i - 1], left
    if top <= vg:
        return zs[i]
    level_at = zg + (vh - vg) / (top - vg) * (zs[i] - zg)
    return (level_at + zh) / 2


def _open_gap(
    points: list, top: int, column: int, widest: float, z_min: float, z_max: float
) -> float | None:
    """Where to probe next if the top sample is not yet bracketed within ``widest`` on both
    sides: the middle of the wider gap (toward the higher neighbour), or a step past an
    open end; None once it is."""
    zs = [p[0] for p in points]
    z = zs[top]
    below = z - zs[top - 1] if top > 0 else (0.0 if z <= z_min + 1e-9 else math.inf)
    above = zs[top + 1] - z if top < len(zs) - 1 else (0.0 if z >= z_max - 1e-9 else math.inf)
    if below <= widest and above <= widest:
        return None
    if math.isinf(below):
        return max(z - widest / 2, z_min)
    if math.isinf(above):
        return min(z + widest / 2, z_max)
    if above <= widest:
        return z - below / 2
    if below <= widest:
        return z + above / 2
    higher_below = points[top - 1][column] >= points[top + 1][column]
    return z - below / 2 if higher_below else z + above / 2


def _cusp_fit(zs: list[float], values: list[float]):
    """Least squares ``top - slope * |z - z0|`` through the samples (z0 searched on a grid
    over their span): (z0, its standard error, top, slope), or None without a sample on
    each side of z0 and a falling flank."""
    if len(zs) < 3:
        return None
    z = np.asarray(zs, dtype=float)
    v = np.asarray(values, dtype=float)
    best = None
    for z0 in np.linspace(z.min(), z.max(), 301):
        design = np.column_stack([np.ones_like(z), -np.abs(z - z0)])
        coef = np.linalg.lstsq(design, v, rcond=None)[0]
        residual = float(np.sum((design @ coef - v) ** 2))
        if best is None or residual < best[0]:
            best = (residual, float(z0), coef)
    residual, z0, (top, slope) = best
    left, right = int(np.sum(z < z0 - 1e-9)), int(np.sum(z > z0 + 1e-9))
    if not slope > 0 or not left or not right:
        return None
    # Three samples leave no residual to judge the noise by: a slope's worth of a µm.
    sigma = math.sqrt(residual / (len(z) - 3)) if len(z) > 3 else slope
    error = sigma / slope * math.sqrt((1 / left + 1 / right) / 4)
    return z0, error, float(top), float(slope)


def _check_backlash(backlash_um: float | None) -> None:
    if backlash_um is not None and not (math.isfinite(backlash_um) and backlash_um >= 0):
        raise ValueError(f"`backlash_um` must be a finite number >= 0, got {backlash_um!r}")


@dataclass(frozen=True)
class BacklashResult:
    """`measure_backlash`: the play, and the two sweeps' peaks it is the gap of.

    Attributes
    ----------
    backlash_um : float
        The commanded position of the peak swept upward minus that swept downward: the
        play (clipped at 0; `raw_um` keeps the sign).
    up_um, down_um : float
        The peak's commanded position in each sweep.
    raw_um : float
    snaps : int
    """

    backlash_um: float
    up_um: float
    down_um: float
    raw_um: float
    snaps: int

    def as_dict(self) -> dict[str, object]:
        return {"backlash_um": self.backlash_um, "up_um": self.up_um, "down_um": self.down_um,
                "raw_um": self.raw_um, "snaps": self.snaps}  # fmt: skip


def measure_backlash(
    stage: Stage,
    camera: Camera,
    *,
    z_min: float,
    z_max: float,
    span_um: float | None = None,
    steps: int = 41,
    measure: str = "tenengrad_nc",
    backend: str = "auto",
) -> BacklashResult:
    """Measure the focus drive's play: find the focus, then sweep through it upward and
    downward, each sweep started from beyond its end so the play is taken up; a drive
    with play b reaches the sharpest plane b later going up than going down.

    Parameters
    ----------
    span_um : float, optional
        The sweeps cover the found focus ± this (default: an eighth of the range, at least
        5 µm), within ``[z_min, z_max]``.
    steps : int
        Planes in each sweep (their spacing is the measurement's resolution before the
        peak fit, which interpolates).
    """
    if not isinstance(steps, int) or steps < 5:
        raise ValueError(f"`steps` must be an integer >= 5, got {steps!r}")
    found = autofocus(stage, camera, z_min=z_min, z_max=z_max, measure=measure,
                      backend=backend)  # fmt: skip
    if not found.ok:
        raise RuntimeError(f"the focus could not be found: {found.reason}")
    span = span_um if span_um is not None else max((z_max - z_min) / 8, 5.0)
    low, high = max(found.z - span, z_min), min(found.z + span, z_max)
    session = _Session(stage, camera, z_min, z_max, 0.0, found_score(measure, backend))
    peaks = []
    for start, end in ((low, high), (high, low)):
        session._move(session.clamp(start - (end - start) * 0.25))  # from beyond its end
        zs = [float(z) for z in np.linspace(start, end, steps)]
        values = [session.sample(z) for z in zs]
        order = np.argsort(zs)
        peaks.append(_fit_position([zs[k] for k in order], [values[k] for k in order]))
    up, down = peaks
    return BacklashResult(max(up - down, 0.0), up, down, up - down, found.snaps + session.snaps)


def found_score(measure: str, backend: str) -> Callable[[np.ndarray], float]:
    """The score every search uses: ``measure`` normalised (`normalised_sharpness`)."""

    def score(image: np.ndarray) -> float:
        return normalised_sharpness(measure_frame(image, backend=backend), measure)

    return score


def _coarse_sweep(
    session: _Session, step: float, steps: int, early_stop: bool
) -> tuple[float, str]:
    """Sweep upward; the fitted peak position (µm) and why the sweep ended."""
    values: list[float] = []
    zs: list[float] = []
    reason = "converged"
    for k in range(steps):
        z = session.z_min + k * step
        values.append(session.sample(z))
        zs.append(session.clamp(z))
        if early_stop and _passed(values):
            reason = "peak passed"
            break
    return _fit_position(zs, values), reason


def _passed(values: list[float], drop: float = 0.5, patience: int = 2) -> bool:
    """The curve has clearly passed its peak: the maximum is interior, stands out of the
    noise, and the last ``patience`` samples lie below ``drop`` of its height over the
    floor."""
    if len(values) < 5:
        return False
    top = int(np.argmax(values))
    if top == 0:
        return False  # a first sample highest is as likely noise as a peak at the edge
    floor = min(values)
    height = values[top] - floor
    # Noise from the second differences (var = 6 s² for white noise); the median ignores
    # the few that the peak itself makes. A dim sample can fake a peak of a few s.
    noise = float(np.median(np.abs(np.diff(values, 2)))) / (0.6745 * math.sqrt(6))
    if height < SIGNIFICANT * noise:
        return False
    after = values[top + 1 :]
    return len(after) >= patience and all(v - floor < drop * height for v in after[-patience:])


def _fit_position(zs: list[float], values: list[float]) -> float:
    """The robust peak's sub-sample position, mapped from sample index to z."""
    return float(np.interp(peak_position(values), np.arange(len(zs)), zs))


def _fine_sweep(
    session: _Session, centre: float, last: float, spacing: float
) -> tuple[float, float]:
    """Sweep upward across ±`LEVEL_SPAN` ``last`` spacings of ``centre`` every ``spacing``; the
    plane fitted to every sample taken near it, and its uncertainty."""
    start = session.clamp(centre - LEVEL_SPAN * last)
    end = session.clamp(centre + LEVEL_SPAN * last)
    count = max(int(round((end - start) / spacing)) + 1, 3)
    for z in np.linspace(start, end, count):
        session.sample(float(z))
    z = _fit_near(session, start, end)
    return z, (end - start) / (count - 1) / 2


def _fit_near(session: _Session, start: float, end: float) -> float:
    """The peak fitted to all samples in [start, end] (earlier levels' too), in z order."""
    near = sorted((z, v) for z, v in session.curve if start - 1e-9 <= z <= end + 1e-9)
    zs = [z for z, _ in near]
    values = [v for _, v in near]
    if len(near) < 3:
        return zs[int(np.argmax(values))] if near else (start + end) / 2
    return _fit_position(zs, values)


def _golden(
    session: _Session, centre: float, coarse: float, tolerance: float
) -> tuple[float, float]:
    """Golden-section search for the maximum in ``centre`` ± one coarse step."""
    a, b = session.clamp(centre - coarse), session.clamp(centre + coarse)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = session.sample(c), session.sample(d)
    while b - a > tolerance:
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = session.sample(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = session.sample(d)
    # Noisy scores mislead the last comparisons: fit every sample of the bracket instead.
    low, high = session.clamp(centre - coarse), session.clamp(centre + coarse)
    z = min(max(_fit_near(session, low, high), a - tolerance), b + tolerance)
    return z, max((b - a) / 2, tolerance / 2)


def _settle_after_error(session: _Session) -> float:
    """After a device error: the best plane seen if the stage can get there, else wherever
    the stage says it is (the position is then known, if not the best)."""
    if session.curve:
        best = max(session.curve, key=lambda zs: zs[1])[0]
        try:
            return session.go(best)
        except _DeviceError:
            pass
    try:
        return float(session.stage.position())
    except Exception:
        return float("nan") if session.last_z is None else session.last_z


class FocusTracker:
    """Keep focus during a time-lapse: small probes around the current plane.

    Each `update` predicts the plane from the drift seen so far (`velocity_um` per
    update), snaps at the prediction and a step below and above it (moving upward), fits
    the apex of a symmetric cusp through the three scores (the shape of a measured focus
    curve's top) and moves `TRACK_GAIN` of the way from the prediction to it, at most a
    step, and not at all where the probes show no maximum; the drift estimate takes
    `TRACK_VELOCITY_GAIN` of the same residual (an alpha-beta filter). A steady drift is
    followed without a search and without lagging behind it; the probes' noise is damped.
    The new plane is approached from below.

    Three probes cannot always see the peak through the noise of a dim, low-detail
    specimen, and a tracker that follows noise walks away. So it also watches the score
    at its plane: once the median of the last three falls below ``reacquire_ratio`` of
    the in-focus level (the best it has seen, forgotten slowly as the specimen changes),
    focus is lost, and a local search over ± `REACQUIRE_STEPS` probe spacings (then 3x
    finer around the fitted peak) finds it again (`reacquired` counts them).

    Parameters
    ----------
    stage, camera : Stage, Camera
    z_min, z_max : float
        Bounds never crossed.
    step_um : float
        Probe spacing: about the depth of field.
    reacquire_ratio : float or None
        Search again when the score falls below this share of the in-focus level (None:
        never). Half height of the focus curve is what a walk past its half width costs.
    reference : float, optional
        The in-focus score level (default: the first probe's score; `after` takes the
        found curve's).
    """

    def __init__(
        self,
        stage: Stage,
        camera: Camera,
        *,
        z_min: float,
        z_max: float,
        step_um: float,
        backlash_um: float | None = None,
        measure: str = "tenengrad_nc",
        backend: str = "auto",
        reacquire_ratio: float | None = 0.5,
        reference: float | None = None,
    ) -> None:
        if not step_um > 0:
            raise ValueError(f"`step_um` must be > 0, got {step_um!r}")
        _check_backlash(backlash_um)
        if reacquire_ratio is not None and not 0 < reacquire_ratio < 1:
            raise ValueError(f"`reacquire_ratio` must be in (0, 1), got {reacquire_ratio!r}")
        self.reacquire_ratio, self.reference = reacquire_ratio, reference
        self.reacquired = 0
        self._recent: collections.deque[float] = collections.deque(maxlen=3)

        self._session = _Session(
            stage, camera, z_min, z_max, backlash_um, found_score(measure, backend)
        )
        self.step_um = step_um
        #: The drift per update the tracker predicts (µm; positive: upward).
        self.velocity_um = 0.0
        self.z = self._session.clamp(float(stage.position()))

    @classmethod
    def after(
        cls, result: AutofocusResult, stage: Stage, camera: Camera, *, z_min: float,
        z_max: float, **options: object,
    ) -> FocusTracker:  # fmt: skip
        """A tracker whose probe spacing suits the specimen: a third of the half width at
        half height of the focus curve ``result`` sampled (a broad curve needs wide probes
        for its slope to stand out of the noise, a sharp one narrow probes), unless
        ``step_um`` is given; its in-focus level is the curve's."""
        if options.get("step_um") is None:
            width = half_width(result.curve)
            # Flanks unseen: a broad curve.
            options["step_um"] = width / 3 if width else (z_max - z_min) / 30
        options.setdefault("reference", _top_level(result.curve))
        return cls(stage, camera, z_min=z_min, z_max=z_max, **options)

    @property
    def snaps(self) -> int:
        return self._session.snaps

    def update(self) -> float:
        """One probe cycle; returns the plane the stage is left at.

        Raises
        ------
        RuntimeError
            If the stage or camera fails (the message says which).
        """
        s, z, step = self._session, self.z, self.step_um
        try:
            del s.curve[:-TRACK_CURVE_KEPT]  # a time-lapse may run for months
            # Probes around where the drift so far puts the plane (at most a step away).
            centre = s.clamp(z + min(max(self.velocity_um, -step), step))
            zs = [s.clamp(centre - step), centre, s.clamp(centre + step)]
            values = [s.sample(p) for p in zs]
            if self._lost(values[1]):
                self.velocity_um = 0.0
                self.z = self._reacquire()
                return self.z
            apex = _cusp_apex(zs, values)
            # At most a step, and not at all where the three probes show no maximum: a
            # jump toward the highest noisy probe would be a random walk.
            residual = 0.0 if apex is None else min(max(apex - centre, -step), step)
            self.velocity_um += TRACK_VELOCITY_GAIN * residual
            self.z = s.go(centre + TRACK_GAIN * residual)
        except _DeviceError as stop:
            raise RuntimeError(str(stop)) from stop.__cause__
        return self.z

    def _lost(self, centre: float) -> bool:
        """Whether the score at the plane shows focus lost (and keep the level up to date:
        up at once, down by `REFERENCE_DECAY` an update, as the specimen changes)."""
        if self.reacquire_ratio is None:
            return False
        self._recent.append(centre)
        level = float(np.median(self._recent))
        if self.reference is None or level > self.reference:
            self.reference = level
            return False
        self.reference = max(self.reference * (1 - REFERENCE_DECAY), level)
        return len(self._recent) == self._recent.maxlen and level < (
            self.reacquire_ratio * self.reference
        )

    def _reacquire(self) -> float:
        """A local search around the plane; the level is taken afresh from its curve."""
        s, step = self._session, self.step_um
        # The fits see only this search's samples: older probes saw the focus elsewhere.
        earlier, s.curve = s.curve, []
        try:
            best, _ = _fine_sweep(s, self.z, REACQUIRE_STEPS * step, step)
            best, _ = _fine_sweep(s, best, step, step / 3)
        finally:
            fresh, s.curve = s.curve, earlier + s.curve
        self.reacquired += 1
        self.reference = _top_level(fresh)
        self._recent.clear()
        return s.go(best)


def track(
    stage: Stage,
    camera: Camera,
    *,
    z_min: float,
    z_max: float,
    result: AutofocusResult | None = None,
    step_um: float | None = None,
    **options: object,
) -> FocusTracker:
    """Keep focus during a time-lapse: a `FocusTracker`, whose `FocusTracker.update` is
    called once per time point (three probe snaps, a small move, a new search if focus
    was lost).

    Parameters
    ----------
    stage, camera : Stage, Camera
    z_min, z_max : float
        Bounds never crossed.
    result : AutofocusResult, optional
        The search that found focus: its curve sizes the probes and sets the in-focus
        level (see `FocusTracker.after`).
    step_um : float, optional
        The probe spacing, where there is no ``result`` (or to override it).
    **options
        ``backlash_um``, ``measure``, ``backend``, ``reacquire_ratio``: as `FocusTracker`.

    Examples
    --------
    >>> found = autofocus(stage, camera, z_min=-50, z_max=50)  # doctest: +SKIP
    >>> tracker = track(stage, camera, z_min=-50, z_max=50, result=found)  # doctest: +SKIP
    >>> for _ in timelapse:  # doctest: +SKIP
    ...     tracker.update()
    """
    if result is not None:
        return FocusTracker.after(
            result, stage, camera, z_min=z_min, z_max=z_max, step_um=step_um, **options
        )
    if step_um is None:
        raise ValueError("`track` needs `step_um`, or the `result` of the search that found focus")
    return FocusTracker(stage, camera, z_min=z_min, z_max=z_max, step_um=step_um, **options)


def _top_level(curve: list[tuple[float, float]]) -> float | None:
    """The in-focus level of a sampled curve: the median of its three best scores (the
    single best is biased high by noise)."""
    values = sorted(v for _, v in curve)[-3:]
    return float(np.median(values)) if values else None


def half_width(curve: list[tuple[float, float]]) -> float | None:
    """Half the width (µm) of a sampled focus curve at half its height over the floor, or
    None where the samples do not show both flanks."""
    if len(curve) < 3:
        return None
    points = sorted(curve)
    zs = np.array([z for z, _ in points])
    values = np.array([v for _, v in points])
    top = int(np.argmax(values))
    half = values.min() + 0.5 * (values[top] - values.min())
    left = np.flatnonzero(values[:top] < half)
    right = np.flatnonzero(values[top + 1 :] < half)
    if not left.size or not right.size:
        return None
    # Where each flank crosses half height, between the samples either side of it (a
    # search's samples are sparse on the flanks).
    low, high = int(left[-1]), top + 1 + int(right[0])
    crossings = []
    for outer, inner in ((low, low + 1), (high, high - 1)):
        span = values[inner] - values[outer]
        share = (half - values[outer]) / span if span > 0 else 0.0
        crossings.append(zs[outer] + share * (zs[inner] - zs[outer]))
    return float(crossings[1] - crossings[0]) / 2


def _cusp_apex(zs: list[float], values: list[float]) -> float | None:
    """The apex of the symmetric cusp ``top - slope * |z - apex|`` through three rising
    (z, value), or None where the samples show no maximum (no evidence of which way the
    focus lies). Measured focus curves fall linearly from their top: a parabola through
    three such samples puts its vertex only half as far from the middle one as the apex.

    The slope is the pair's on the side away from the apex; each side is tried, and the
    one whose apex lies on its own side is the answer (exact for a cusp, at any spacing).
    """
    (z0, z1, z2), (f0, f1, f2) = zs, values
    if f1 > f0 and z1 > z0:  # the apex above the middle: the lower pair gives the slope
        apex = (z1 + z2) / 2 - (f1 - f2) * (z1 - z0) / (2 * (f1 - f0))
        if apex >= z1:
            return apex
    if f1 > f2 and z2 > z1:  # below it: the upper pair gives the slope
        apex = (z0 + z1) / 2 + (f1 - f0) * (z2 - z1) / (2 * (f1 - f2))
        if apex <= z1:
            return apex
    return None


def run_simulated_autofocus(
    *,
    strategy: str = "model",
    z_min: float = -50.0,
    z_max: float = 50.0,
    focus_um: float | None = None,
    photons: float = 2000.0,
    flicker: float = 0.1,
    backlash_um: float = 2.0,
    blur_px_per_um: float = 0.5,
    seed: int | None = None,
    backend: str = "auto",
    tell_backlash: bool = False,
    measure_play: bool = False,
) -> tuple[AutofocusResult | BacklashResult, dict[str, float]]:
    """One search on the simulated microscope (`focusmon.testing.SimulatedMicroscope`),
    its drive with ``backlash_um`` of play that the search is not told of (unless
    ``tell_backlash``): the result, and the truth (``true_focus_um``, ``error_um`` of
    where the drive really ended, ``true_focus_commanded_um``: the command that reaches
    the focus from below). With ``measure_play``: `measure_backlash`'s result instead,
    and the true play."""
    from .testing import SimulatedMicroscope, specimen

    rng = np.random.default_rng(seed)
    if focus_um is None:
        margin = 0.1 * (z_max - z_min)
        focus_um = float(rng.uniform(z_min + margin, z_max - margin))
    scope = SimulatedMicroscope(
        specimen(), z_focus_um=focus_um, blur_px_per_um=blur_px_per_um,
        photons_at_white=photons, flicker=flicker, backlash_um=backlash_um,
        z_start_um=float(rng.uniform(z_min, z_max)), seed=int(rng.integers(2**31)),
    )  # fmt: skip
    if measure_play:
        measured = measure_backlash(scope, scope, z_min=z_min, z_max=z_max, backend=backend)
        return measured, {"true_backlash_um": backlash_um}
    result = autofocus(
        scope, scope, z_min=z_min, z_max=z_max, strategy=strategy,
        backlash_um=backlash_um if tell_backlash else None, backend=backend,
    )  # fmt: skip
    truth = {"true_focus_um": focus_um, "error_um": scope.actual_um - scope.z_focus_um,
             "true_focus_commanded_um": focus_um + backlash_um}  # fmt: skip
    return result, truth


def plot_curve(result: AutofocusResult, truth: dict[str, float], path: str) -> None:
    """Save the sampled curve, the chosen plane and the truth as an image (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    zs = np.array([z for z, _ in result.curve])
    scores = np.array([s for _, s in result.curve])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(zs, scores, "o", ms=4, label="samples (commanded z, reached from below)")
    order = np.argsort(zs)
    ax.plot(zs[order], scores[order], "-", lw=0.8, alpha=0.5)
    ax.axvline(
        result.z, color="C1", label=f"chosen z = {result.z:.2f} µm ± {result.uncertainty_um:.2f}"
    )
    if "true_focus_commanded_um" in truth:
        # In the samples' coordinates: the command that, reached from below, puts the
        # drive at the true focus (the true position plus the play).
        ax.axvline(truth["true_focus_commanded_um"], color="C2", ls="--",
                   label="true focus (commanded, from below)")  # fmt: skip
    ax.set_xlabel("commanded z (µm)")
    ax.set_ylabel("normalised sharpness")
    ax.set_title(f"{result.strategy}: {result.snaps} snaps, {result.reason}")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
