"""Finding the in-focus frame of a focus sweep, robustly and to a fraction of a frame."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..kernels import FocusScores
from ._score import BLACK, NOISE_RATIO, SHARPNESS, normalised_sharpness

#: Half-width of the running mean that picks the region of the maximum (frames).
SMOOTH = 1
#: The top of the curve is what lies above this fraction of the peak's height over the floor.
TOP_FRACTION = 0.5
#: `find_peak`'s default: it chooses between these two measures (see its notes).
AUTO = "auto"
FINE, COARSE = "tenengrad_nc", "variance_nc"
#: A sweep is dim when its fine measure rises less than this fraction of the noise power it
#: cancelled: then the coarse measure's curve may be the better one.
DIM_CONTRAST = 0.15
#: The coarse measure's broad peak is not trusted this close (in frames) to a sweep's end.
COARSE_EDGE = 1.5
#: A sweep whose encoder quantised its frames at this H.264 QP or coarser (the median over
#: the sweep, as the decoder tells it), and removed their noise (`COMPRESSED_CONTRAST`), is
#: heavily compressed (see `find_peak`). On the benchmark's sweeps x264 at crf 18 gave QP
#: 15-19 (19-24 when noisy), at crf 30 25-33, and through its low-latency stream 24-30.
COMPRESSED_QP = 24.0
#: ... and its fine measure's curve rises at least this many times the noise power it
#: cancelled (the median over the sweep). A camera's noise, coded afresh in every frame,
#: drives the quantiser up as well, but its frames do not persist. On the benchmark's
#: sweeps the ratio was 5 or more at crf 30-40 but for two sweeps whose fine detail the
#: encoder all but erased (0 and 2.6), and at most 1.6 on the dim ones (up to about 50
#: photo-electrons at white, crf 18-24).
COMPRESSED_CONTRAST = 3.0
#: A heavily compressed sweep's peak (see `find_peak`) is placed by three marks on its
#: curve: the top of its 3-frame running median, and where the curve crosses this fraction
#: of its height on the way up and on the way down, either side of that top. The height is
#: over the rising side's floor (the least value up to the top), which the frames after
#: the top cannot move: a streaming stop places the peak as the whole sweep would.
COMPRESSED_LEVEL = 0.7
#: The rising and the falling crossing's weights (the top takes the rest) and an offset in
#: frames, by whether the stream has B-frames. Each set was fitted by least absolute
#: deviations to the truth of 600 simulated sweeps, x264 at crf 30, 35 and 40
#: (`bench/bench_decisions.py`'s sweeps, seeds 0-4): one with x264's default B-frames, one
#: with its low-latency stream (``tune=zerolatency``), which has none, as an IP camera's.
COMPRESSED_MARKS = {True: (0.52, 0.16, 0.83), False: (0.50, 0.08, 0.32)}
#: The picture types of intra-coded frames, as `pict_type_of` names them: coded afresh, not
#: from a prediction (see `find_peak`'s ``pict_types``).
INTRA = frozenset({"I", "SI", "BI"})
#: `PeakTracker` stops a sweep only once its peak stands this many times the curve's
#: frame-to-frame jitter above its floor: the first frames of a sparse, dim field (beads)
#: are noise about the floor, whose spikes fall "below half the peak" soon enough. (On the
#: benchmark's sweeps, 3 took away its wrong stops on beads and 10-20 photons and no
#: right one; 5 and 8 delayed a stop in `combined` onto a wrong peak.)
STREAM_PROMINENCE = 3.0
#: `PeakTracker` stops a sweep only once `Peak.uncertainty` places its peak to within this
#: many frames: in a sweep of a handful of photons the curve passes its peak long before
#: the noise lets the fit place it. One frame, the benchmark's tolerance: on its dim
#: sweeps (seven draws), 0.8 and 1.0 took away all 6 wrong stops, 1.2 left 3.
STREAM_UNCERTAINTY = 1.0
#: Perturbed copies of a curve `peak_uncertainty` refits, and the seed they are drawn from.
UNCERTAINTY_DRAWS = 32
UNCERTAINTY_SEED = 0
#: A Gaussian's median absolute deviation in standard deviations, and a white noise's
#: second difference's standard deviation in the noise's.
_MAD_SIGMA = 0.6744897501960817
_SECOND_DIFF_SIGMA = math.sqrt(6.0)


@dataclass(frozen=True, slots=True)
class Peak:
    """The in-focus frame of a sweep.

    Attributes
    ----------
    best_index : int
        Position in the sweep (0-based) of the frame nearest the peak.
    position : float
        The peak's interpolated position, in frames.
    measure : str
        The measure the normalised score was made from.
    values : list of float
        The normalised score of every frame, in sweep order.
    compressed : bool
        Whether the sweep was judged heavily compressed (its median quantiser at least
        `COMPRESSED_QP`, its noise removed): then the peak is placed by three marks on the
        curve, not by the fit of its top (see `find_peak`).
    uncertainty : float
        How closely the peak is placed, in frames (one standard deviation); computed when
        asked (see the property).
    """

    best_index: int
    position: float
    measure: str
    values: list[float]
    compressed: bool = False

    @property
    def uncertainty(self) -> float:
        """How closely the peak is placed, in frames (one standard deviation).

        For a fitted sweep, `peak_uncertainty` of its curve: the spread of the fit under
        the curve's own jitter. For a heavily compressed one, the run of frames around
        `best_index` that the encoder repeated exactly (it coded no change there: where in
        the run the focus lies, the stream does not tell), as a uniform spread: its length
        over √12, 0.29 for a frame not repeated. Computed when asked (a few milliseconds).
        """
        if self.compressed:
            return _repeated_run(self.values, self.best_index) / math.sqrt(12.0)
        return peak_uncertainty(self.values)


def _repeated_run(values: Sequence[float], index: int) -> int:
    """The length of the run of values exactly equal to ``values[index]`` that holds it."""
    lo, hi = _span(values, index, lambda v: v == values[index])
    return hi - lo + 1


def _span(
    values: Sequence[float] | np.ndarray, index: int, inside: Callable[[float], bool]
) -> tuple[int, int]:
    """The first and last index of the run of values around ``index`` that are all
    ``inside`` (``index`` itself is taken as inside)."""
    lo = hi = index
    while lo > 0 and inside(values[lo - 1]):
        lo -= 1
    while hi < len(values) - 1 and inside(values[hi + 1]):
        hi += 1
    return lo, hi


def find_peak(
    scores: Sequence[FocusScores],
    *,
    measure: str = AUTO,
    quantiser: float | None = None,
    bframes: bool | None = None,
    pict_types: Sequence[str | None] | None = None,
) -> Peak:
    """The in-focus frame of a focus sweep.

    Parameters
    ----------
    scores : sequence of FocusScores
        One per frame, in sweep order.
    measure : str
        The measure to normalise (see `normalised_sharpness`), or ``auto`` (the default):
        ``tenengrad_nc``, or ``variance_nc`` for a dim sweep where it does better (below).
    quantiser : float, optional
        The median of the frames' quantisers on H.264's QP scale, where the decoder tells
        them (`focusmon.source.SourceOptions.quantiser`; `LumaFrame.qp`). From
        `COMPRESSED_QP` up, unless noisy, the sweep is heavily compressed (below).
    bframes : bool, optional
        Whether the stream has B-frames (pictures predicted from later ones too), as the
        decoder tells (`LumaFrame.pict_type`; `sweep_bframes`). It sets how a heavily
        compressed sweep's peak is placed; None (not told) is taken as True, x264's and
        most encoders' default, unless ``pict_types`` tells.
    pict_types : sequence of str or None, optional
        Each frame's picture type (``I``, ``P``, ``B``), as the decoder tells
        (`LumaFrame.pict_type`). Where told, ``bframes`` defaults to `sweep_bframes` of
        them, and a heavily compressed sweep's intra frames are bridged (below).

    Returns
    -------
    Peak

    Notes
    -----
    Three steps, each against one way the raw argmax goes wrong:

    1. Brightness: each frame's measure is divided by its mean's matching power, so a
       drifting or flickering lamp does not move the peak.
    2. Noise: the default measure cancels white noise's power (see
       `normalised_sharpness`); single-frame jitter is smoothed by a 3-frame running mean
       before the maximum is chosen, and the sweep's floor (its least sharp frames,
       where only noise and coarse structure remain) is subtracted before fitting.
    3. Shape: a Gaussian — a parabola in the logarithm — is fitted by weighted least
       squares to the top of the curve (what lies above half the peak's height over the
       floor), so a flat or noisy top still yields its centre, between frames.

    ``auto`` adds a fourth, against photon noise in a dim sweep (40 photo-electrons at
    white). Tenengrad weights the fine detail, which the noise drowns first: when its
    noise-compensated curve rises less than `DIM_CONTRAST` of the noise power it cancelled
    (the median over the sweep), the noise-compensated variance, which weights the coarse
    detail, is fitted too, and kept if its peak stands out better (height over the
    curve's frame-to-frame jitter) and lies inside the sweep, not within `COARSE_EDGE`
    frames of an end (its broad peak cut off by the end leans outward). On simulated
    dim sweeps that took the hit rate from 82-90 % to 97-100 % (`bench/bench_decisions.py`).

    A heavily compressed sweep (``quantiser`` at least `COMPRESSED_QP`: an IP camera's
    stream, H.264 at crf 30 and up) breaks the third step. The encoder codes each frame
    as a prediction from others plus a quantised residual; past the focus, the detail the
    blur should remove is a residual too fine to survive the quantiser, so frames keep
    their predecessors' sharpness (often whole runs of repeated frames) and the curve
    falls late and slowly: its falling flank is stretched, and the fitted centre lies 2-4
    frames late. With B-frames the top also starts early: the encoder codes the detail
    into the last P-frame before the focus and the B-frames after it copy it. There the
    peak is placed by three marks on the ``tenengrad_nc`` curve: the top of its 3-frame
    running median (a one-frame spike of a finer-quantised frame is not a top), and where
    the curve crosses `COMPRESSED_LEVEL` of its height rising and falling around that top.
    The position is the top moved by fixed weights of the two crossings' distances from
    it, plus an offset (`COMPRESSED_MARKS`, fitted to simulated sweeps: one set for
    streams with B-frames, one for streams without); the rising crossing weighs most, as
    compression stretches the falling flank.
    On the benchmark's sweeps (seven draws of 40, two of them not fitted to) that took the
    hit rate at crf 30, 35 and 40 from 92-100 %, 80-88 % and 60-72 % (the fit) to
    98-100 %, 95-100 % and 95-98 %; through x264's low-latency stream, without B-frames,
    from 82-90 %, 58-75 % and 28-42 % to 90-98 %, 92-100 % and 92-100 %. The noise
    compensation stays (at these quantisers the sensor noise is gone, and with it what it
    subtracts); the dim-sweep choice is not made.

    Only where the noise is gone, though: the fine curve must rise at least
    `COMPRESSED_CONTRAST` times the noise power it cancelled. A dim camera's encoder
    spends its bits on the noise, which changes in every frame, so the quantiser is as
    coarse but no frame persists, and the noise compensation and the dim-sweep choice
    are what place its peak: on 80 dim sweeps through x264's low-latency stream at crf 18
    and 24 (QP 21-33), the marks had 71 within a frame, the fit 79.

    Told the picture types, the marks are placed on the curve with its intra frames
    bridged. An encoder starts an I-frame at a scene cut (a sweep's fast change triggers
    them, mostly in a stream without B-frames, as an IP camera's) and at every keyframe
    interval. It codes that frame afresh and at a finer quantiser than the predicted frames
    before it, whose detail is what their chain of coarse residuals kept: the curve jumps
    at it, up far from the focus as well as near it. The step from a predicted frame to the
    intra frame after it is taken as the mean of the steps either side (those that are
    not such a jump themselves), so each stretch keeps its shape and the stretches join.
    On the benchmark's low-latency sweeps (seven draws of 40 at crf 30, 35 and 40), with
    the noise rule above and `COMPRESSED_QP` lowered from 25 to 24 (20 of the 280 crf 30
    sweeps had QP 24, and the fit missed 16 of them), that took the hit rate from
    90-98 %, 92-100 % and 92-100 % to 98-100 %, 95-100 % and 92-98 % (802 to 824 of
    840), and the wrong streaming stops from 26 to 12; on the sweeps with B-frames, 823
    to 824 of 840, and 3 to 3.

    Raises
    ------
    ValueError
        If ``scores`` is empty, ``measure`` is unknown, ``quantiser`` is not finite, or
        ``pict_types`` has not one entry per frame.
    """
    if len(scores) == 0:
        raise ValueError("`scores` is empty: a sweep needs at least one frame")
    if quantiser is not None and not math.isfinite(quantiser):
        raise ValueError(f"`quantiser` must be a finite number, got {quantiser!r}")
    _check_measure(measure)
    if pict_types is not None and len(pict_types) != len(scores):
        raise ValueError(
            f"`pict_types` has {len(pict_types)} entries for {len(scores)} frames: one per frame"
        )
    if bframes is None and pict_types is not None:
        bframes = sweep_bframes(pict_types)
    if _compressed(quantiser):
        fine = _curve(scores, FINE)
        if _noise_gone(fine, [_cancelled_noise(s) for s in scores]):
            measure = FINE if measure == AUTO else measure
            values = fine if measure == FINE else _curve(scores, measure)
            marked = values if pict_types is None else _bridge_intra(values, pict_types)
            position = _compressed_position(marked, bframes is not False)
            best = min(max(round(position), 0), values.size - 1)
            return Peak(best, position, measure, values.tolist(), compressed=True)
    if measure == AUTO:
        measure, values, position = _auto_measure(scores)
    else:
        values = _curve(scores, measure)
        position = peak_position(values)
    n = values.size
    best = min(max(round(position), 0), n - 1)
    return Peak(best, position, measure, values.tolist())


def sweep_quantiser(qps: Sequence[float | None]) -> float | None:
    """A sweep's quantiser, as `find_peak` takes it: the median of its frames' (those the
    decoder told, finite), or None where there is none."""
    told = [float(q) for q in qps if q is not None and math.isfinite(q)]
    return float(np.median(told)) if told else None


def _compressed(quantiser: float | None) -> bool:
    return quantiser is not None and quantiser >= COMPRESSED_QP


def _noise_gone(fine: Sequence[float], noises: Sequence[float]) -> bool:
    """Whether the fine measure's curve rises at least `COMPRESSED_CONTRAST` times the
    noise power it cancelled (the median over the frames): the encoder has removed the
    sensor's noise (see `find_peak`)."""
    return float(np.ptp(fine)) >= COMPRESSED_CONTRAST * float(np.median(noises))


def sweep_bframes(pict_types: Sequence[str | None]) -> bool | None:
    """Whether a sweep's stream has B-frames, as `find_peak` takes it: True if any frame
    the decoder told the picture type of was a B-frame, False if none was, None where it
    told none."""
    told = [p for p in pict_types if p is not None]
    return any(p.startswith("B") for p in told) if told else None


def _bridge_intra(values: np.ndarray, pict_types: Sequence[str | None]) -> np.ndarray:
    """The curve with each step from a predicted frame to an intra frame (`INTRA`) replaced
    by the mean of the steps either side that are not such a step (0 where neither is)."""
    intra = np.array([p in INTRA for p in pict_types], bool)
    jump = intra[1:] & ~intra[:-1]
    if not jump.any():
        return values
    steps = np.diff(values)
    bridged = steps.copy()
    for k in np.flatnonzero(jump):
        around = [steps[j] for j in (k - 1, k + 1) if 0 <= j < steps.size and not jump[j]]
        bridged[k] = float(np.mean(around)) if around else 0.0
    return np.concatenate([values[:1], values[0] + np.cumsum(bridged)])


def _compressed_position(values: np.ndarray, bframes: bool) -> float:
    """A heavily compressed sweep's peak position: the top of the 3-frame running median,
    moved by `COMPRESSED_MARKS`' weights of the distances to where the curve crosses
    `COMPRESSED_LEVEL` of its height on either side of it, plus their offset."""
    smooth = _median3(values.tolist())
    top = int(np.argmax(smooth))
    floor, high = float(values[: top + 1].min()), float(values.max())
    if not high > floor:
        return float(top)  # a flat rise (or the top at the start): no flanks to place it by
    level = floor + COMPRESSED_LEVEL * (high - floor)
    n = values.size
    if values[top] < level:  # the median's top on a dip: the higher of its neighbours
        top = max((k for k in (top - 1, top + 1) if 0 <= k < n), key=lambda k: values[k])
        if values[top] < level:
            return float(top)  # a lone spike above a low curve: no flanks either
    lo, hi = _span(values, top, lambda v: v >= level)
    # Between the last sample below the level and the first above, linearly.
    rise = 0.0 if lo == 0 else lo - (values[lo] - level) / (values[lo] - values[lo - 1])
    fall = n - 1.0 if hi == n - 1 else hi + (values[hi] - level) / (values[hi] - values[hi + 1])
    w_rise, w_fall, offset = COMPRESSED_MARKS[bframes]
    position = top + w_rise * (rise - top) + w_fall * (fall - top) + offset
    return float(min(max(position, 0.0), n - 1.0))


def _check_measure(measure: str) -> None:
    if measure != AUTO and measure not in SHARPNESS:
        choices = ", ".join((AUTO, *SHARPNESS))
        raise ValueError(f"`measure` must be one of {choices}, got {measure!r}")


def _curve(scores: Sequence[FocusScores], measure: str) -> np.ndarray:
    return np.array([normalised_sharpness(s, measure) for s in scores], np.float64)


def _auto_measure(scores: Sequence[FocusScores]) -> tuple[str, np.ndarray, float]:
    """`find_peak`'s choice for ``auto``: the measure, its curve and its peak position."""
    fine = _curve(scores, FINE)
    position = peak_position(fine)
    n = fine.size
    if n < 5:
        return FINE, fine, position
    if not _is_dim(fine, [_cancelled_noise(s) for s in scores]):
        return FINE, fine, position
    coarse = _curve(scores, COARSE)
    coarse_position = peak_position(coarse)
    inside = COARSE_EDGE <= coarse_position <= n - 1 - COARSE_EDGE
    if inside and _prominence(coarse) > _prominence(fine):
        return COARSE, coarse, coarse_position
    return FINE, fine, position


def _is_dim(fine: Sequence[float], noises: Sequence[float]) -> bool:
    """Whether the fine measure's curve rises less than `DIM_CONTRAST` of the noise power
    it cancelled (the median over the frames)."""
    noise = float(np.median(noises))
    return noise > 0 and float(np.ptp(fine)) < DIM_CONTRAST * noise


def _cancelled_noise(scores: FocusScores) -> float:
    """The noise power `tenengrad_nc` subtracts, normalised as it is (0 for a black frame)."""
    mean, lap = float(scores.mean), float(scores.laplacian_var)
    if not (math.isfinite(mean) and math.isfinite(lap)) or mean < BLACK:
        return 0.0
    return NOISE_RATIO * lap / (mean * mean)


def _prominence(values: np.ndarray) -> float:
    """How well a curve's peak stands out: the height of its running mean (as `find_peak`
    smooths) over the median absolute second difference (its frame-to-frame jitter)."""
    jitter = _jitter(values)
    height = float(np.ptp(_running_sum(values))) / (2 * SMOOTH + 1)
    return height / jitter if jitter > 0 else (math.inf if height > 0 else 0.0)


def _jitter(values: np.ndarray) -> float:
    """A curve's frame-to-frame jitter: its median absolute second difference."""
    return float(np.median(np.abs(np.diff(values, 2))))


def _running_sum(values: np.ndarray) -> np.ndarray:
    """Each value summed with its `SMOOTH` neighbours each side (the ends repeated)."""
    return np.convolve(np.pad(values, SMOOTH, mode="edge"), np.ones(2 * SMOOTH + 1), "valid")


def peak_position(values: Sequence[float] | np.ndarray) -> float:
    """The robust, interpolated peak position (in samples) of an already normalised curve:
    the smoothing, floor and Gaussian fit of `find_peak`, for callers with their own score.
    """
    values = np.asarray(values, np.float64)
    n = values.size
    if n == 0:
        raise ValueError("`values` is empty")
    if n < 3:
        return float(np.argmax(values))
    smooth = _running_sum(values)
    centre = int(np.argmax(smooth))
    floor = float(np.min(smooth)) / (2 * SMOOTH + 1)
    height = values - floor
    top = height[centre] if height[centre] > 0 else float(np.max(height))
    if not top > 0:
        return float(centre)  # a flat curve: no peak to find, the middle of nothing
    lo, hi = _span(height, centre, lambda v: v >= TOP_FRACTION * top)
    lo, hi = min(lo, max(centre - 1, 0)), max(hi, min(centre + 1, n - 1))
    x = np.arange(lo, hi + 1, dtype=np.float64)
    y = height[lo : hi + 1]
    position = _gaussian_vertex(x, y)
    if position is None:
        weights = np.clip(y, 0, None)
        position = float((x * weights).sum() / weights.sum()) if weights.sum() > 0 else centre
    return float(min(max(position, lo - 0.5), hi + 0.5))


def peak_uncertainty(values: Sequence[float] | np.ndarray) -> float:
    """How closely `peak_position` places a curve's peak, in frames (one standard deviation).

    The curve is refitted `UNCERTAINTY_DRAWS` times, each time with white noise added of
    the curve's own frame-to-frame jitter (its median absolute second difference, as a
    standard deviation of white noise), and the root-mean-square shift of the position is
    returned: a parametric bootstrap. The draws come from a fixed seed, so the same curve
    always gets the same answer. On Gaussian curves in white noise (four widths and
    levels) its median over 60 curves was 8-21 % above the root-mean-square error of
    `peak_position` over 300 independent draws. It measures noise, not bias: a curve an
    encoder has flattened (`find_peak`'s heavily compressed sweeps) is placed off by its
    shape, which no jitter shows. 0 for a curve of fewer than 3 values or without jitter.
    """
    v = np.asarray(values, np.float64)
    if v.size < 3:
        return 0.0
    sigma = _jitter(v) / (_MAD_SIGMA * _SECOND_DIFF_SIGMA)
    if not sigma > 0:
        return 0.0
    position = peak_position(v)
    rng = np.random.default_rng(UNCERTAINTY_SEED)
    noise = rng.normal(0.0, sigma, (UNCERTAINTY_DRAWS, v.size))
    shifts = np.array([peak_position(v + n) for n in noise]) - position
    return float(np.sqrt(np.mean(shifts * shifts)))


def _gaussian_vertex(x: np.ndarray, y: np.ndarray) -> float | None:
    """Centre of the Gaussian through (x, y) > 0, by a y²-weighted parabola fit of log y
    (Caruana's method with Guo's weights); None where it has no maximum."""
    keep = y > 0
    if keep.sum() < 3:
        return None
    x, y = x[keep], y[keep]
    w = y * y
    # Weighted least squares for log y = a x² + b x + c, centred for conditioning.
    x0 = x.mean()
    design = np.stack([(x - x0) ** 2, x - x0, np.ones_like(x)], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], np.log(y) * sw, rcond=None)
    a, b = coef[0], coef[1]
    if not (a < 0 and math.isfinite(a) and math.isfinite(b)):
        return None
    return float(x0 - b / (2 * a))


class PeakTracker:
    """The focus peak of a sweep that is still running, reported once it is clearly passed.

    Push each frame's scores in sweep order; `push` returns the `Peak` (over the frames so
    far) the first time the curve has fallen, for ``patience`` frames in a row, below
    ``drop`` of the best height seen over the floor, and the peak is placed to within
    ``uncertainty`` frames — the sweep can stop there. With
    ``measure="auto"`` the curve watched is ``tenengrad_nc``'s, or ``variance_nc``'s while
    the sweep so far is dim in `find_peak`'s sense, and it is watched through a 3-frame
    median: in a dim sweep a dip or spike of the noise would look like the peak passing
    (on the simulated dim sweeps of `bench/bench_decisions.py`, three seeds, it stopped
    on a wrong peak in 21 of 120 watching Tenengrad alone, in none now). The peak is then
    found as `find_peak` finds it, told the median of the quantisers pushed with the
    frames (``qp``, `LumaFrame.qp`) and their picture types (``pict_type``).

    The placement is `Peak.uncertainty` (one standard deviation, in frames;
    ``uncertainty=None`` does not ask). While it is wider, the tracker waits: each
    frame still below the peak is another try, and a sweep that never gets there is left
    to its end, where `find_peak` takes it whole. In a dim sweep the curve passes its
    peak while the noise still hides where the peak lies: on the benchmark's sweeps of
    10-20 photo-electrons at mid grey (ten draws of 40, three of them not looked at while
    choosing the width) the tracker stopped on a wrong peak in 4 of 372 stops, in none of
    356 now; in its ``combined`` sweeps (ten draws), in 7 of 213 and none of 204.
    In a heavily compressed sweep whose peak lies in a run of four or more frames the
    encoder repeated, the run is the uncertainty, and the marks place the peak as the
    whole sweep does, so such a sweep runs to its end: on the benchmark's compressed
    sweeps (seven draws of 40 at crf 30, 35 and 40, with and without B-frames) the
    tracker stopped on a wrong peak in 15 of 1,518 stops without this rule (29 before the
    bridging of `find_peak`), in 5 of 1,459 with it.
    """

    def __init__(
        self,
        *,
        measure: str = AUTO,
        drop: float = 0.5,
        patience: int = 3,
        uncertainty: float | None = STREAM_UNCERTAINTY,
    ):
        if not 0 < drop < 1:
            raise ValueError(f"`drop` must lie in (0, 1), got {drop!r}")
        if patience < 1:
            raise ValueError(f"`patience` must be >= 1, got {patience!r}")
        if uncertainty is not None and not (math.isfinite(uncertainty) and uncertainty > 0):
            raise ValueError(f"`uncertainty` must be a positive number of frames or None, "
                             f"got {uncertainty!r}")  # fmt: skip
        _check_measure(measure)
        self.measure, self._drop, self._patience = measure, drop, patience
        self._uncertainty = uncertainty
        self._scores: list[FocusScores] = []
        self._values: list[float] = []  # the measure's curve, or auto's fine one
        self._coarse: list[float] = []  # auto: the coarse curve and the cancelled noise
        self._noise: list[float] = []
        self._qps: list[float | None] = []
        self._pict_types: list[str | None] = []
        self._below = 0
        self.peak: Peak | None = None

    def push(
        self, scores: FocusScores, qp: float | None = None, pict_type: str | None = None
    ) -> Peak | None:
        """Add the next frame (and its quantiser and picture type, where the decoder tells
        them); the peak the first time the curve has clearly passed it, else None."""
        self._scores.append(scores)
        self._qps.append(qp)
        self._pict_types.append(pict_type)
        auto = self.measure == AUTO
        self._values.append(normalised_sharpness(scores, FINE if auto else self.measure))
        if auto:
            self._coarse.append(normalised_sharpness(scores, COARSE))
            self._noise.append(_cancelled_noise(scores))
        if self.peak is not None or len(self._values) < 3:
            return None
        values = self._values
        # (A heavily compressed sweep is never dim: its noise is gone, `_noise_gone`.)
        if auto and _is_dim(values, self._noise):
            values = self._coarse
        if auto:  # a one-frame spike of noise is not a peak
            values = _median3(values)
        value, floor, best = values[-1], min(values), max(values)
        if best <= floor or not _stands_out(values):
            return None
        passed = (
            value - floor < self._drop * (best - floor) and values.index(best) < len(values) - 1
        )
        self._below = self._below + 1 if passed else 0
        if self._below < self._patience:
            return None
        peak = find_peak(
            self._scores, measure=self.measure, quantiser=self.quantiser,
            pict_types=self._pict_types,
        )  # fmt: skip
        if self._uncertainty is not None and peak.uncertainty > self._uncertainty:
            return None  # passed, not yet placed: the next frame is another try
        self.peak = peak
        return peak

    @property
    def quantiser(self) -> float | None:
        """The median quantiser of the frames pushed with one (None: none was)."""
        return sweep_quantiser(self._qps)


def _stands_out(values: list[float]) -> bool:
    """Whether the curve's peak stands `STREAM_PROMINENCE` times its frame-to-frame jitter
    above its floor (as `_prominence` measures them)."""
    return _prominence(np.asarray(values, np.float64)) >= STREAM_PROMINENCE


def _median3(values: list[float]) -> list[float]:
    """Each value the median of it and its neighbours (the ends kept)."""
    v = np.asarray(values, np.float64)
    if v.size < 3:
        return list(values)
    middle = np.median(np.stack([v[:-2], v[1:-1], v[2:]]), axis=0)
    return [float(v[0]), *middle.tolist(), float(v[-1])]
