"""Per-stream alert states (`AlertState`) and every rule that judges a stream.

Time comes in with each frame (stream time for files, arrival time for live streams); this
module never reads a clock, so it can be driven by tests frame by frame.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from ..kernels import FocusMap, FocusScores
from ._score import SHARPNESS, normalised_sharpness
from ._tiles import TileBaseline, TileWatch, blur_kind, direction_tensor, tile_values
from ._views import THUMB_H, THUMB_W, ViewWatch


class AlertState(str, enum.Enum):
    """What a stream shows, as its alerts and metrics say it. The values are the names in
    events, log lines and the ``state`` label of ``focusmon_state``."""

    OK = "ok"  # in focus (or still learning what in focus is at this light)
    BLURRED = "blurred"  # sharpness well below the stream's baseline
    OBSTRUCTED = "obstructed"  # a lit but flat picture: a covered lens
    DARK = "dark"  # too little light to judge
    NO_SIGNAL = "no_signal"  # stalled, disconnected, or not connected after its open timeout
    FROZEN = "frozen"  # frames keep coming, but the picture does not change
    MOVED = "moved"  # the camera no longer shows the view it learned (turned, knocked)
    PARTIAL = "partial"  # part of the picture blurred or covered, the rest holding

    def __str__(self) -> str:
        return self.value

    @property
    def judged(self) -> bool:
        """Whether sharpness is compared with the baseline in this state (ok, blurred,
        partial): only then does the score over the baseline mean what the alerts mean."""
        return self in (AlertState.OK, AlertState.BLURRED, AlertState.PARTIAL)

    @property
    def signal_valid(self) -> bool:
        """Whether frames in this state describe the camera's view (all but dark,
        no_signal and frozen)."""
        return self not in (AlertState.DARK, AlertState.NO_SIGNAL, AlertState.FROZEN)


#: The alert states, in their order in the exposition.
STATES = tuple(AlertState)
#: `StateChange.previous` of a stream that had no frame yet: it was connecting, not ok.
CONNECTING = "connecting"


def no_signal(
    *, connected: bool, delivering: bool, waiting_s: float, open_timeout_s: float
) -> bool:
    """The no-signal rule: a source that stopped delivering (stalled, reconnecting), or one
    never connected after ``open_timeout_s`` of trying (``waiting_s`` so far). A camera
    that is merely starting up is not an alarm."""
    if not connected:
        return waiting_s > open_timeout_s
    return not delivering


def signal_valid(state: AlertState, frame_age_s: float | None, stall_s: float) -> bool:
    """The signal-valid rule: the scores are of a frame at most ``stall_s`` old (``None``:
    no frame yet), in a state whose frames describe the view (`AlertState.signal_valid`)."""
    return frame_age_s is not None and frame_age_s <= stall_s and state.signal_valid


#: Light levels are half an octave of mean grey level wide; the stream leaves its current
#: level only when the mean is this many half-octaves from the level's centre.
LEVEL_HYSTERESIS = 0.8
#: Below this mean grey level the picture is black: dark, whatever else it shows.
BLACK_MEAN = 5.0
#: A cover also flattens the picture relative to its light: std / mean below this fraction
#: of the scene's (with ``obstructed_ratio`` of its std).
COVER_CV_RATIO = 0.6


@dataclass(frozen=True)
class AlertSettings:
    """How a stream decides its state. The defaults need no calibration per camera.

    Attributes
    ----------
    measure : str
        The measure whose normalised value (`normalised_sharpness`) is compared.
    enter_ratio, leave_ratio : float
        `blurred` starts when the score falls below ``enter_ratio`` × the stream's baseline
        and ends when it is back above ``leave_ratio`` × baseline (hysteresis).
    min_dwell_s : float
        A new condition must hold this long before the state changes (no flapping).
    dark_mean : float
        Mean grey level (8-bit units) below which there is too little light to judge.
    obstructed_std : float
        Contrast (std, 8-bit units) below which a lit frame is flat: a covered lens.
    obstructed_ratio : float
        Or: contrast below this fraction of the baseline's contrast, while the score is
        below ``enter_ratio`` × baseline, is a covered lens rather than a blur.
    learn_s : float
        Seconds of frames at a new light level from which its baseline is learned.
    baseline_tau_s : float
        Time constant with which a known baseline follows slow changes of the scene.
    blur_threshold : float or None
        A fixed threshold on the normalised score instead of the learned baseline, for
        users who want one.
    moved_s : float
        A view unlike the learned one (turned, knocked, something parked in front of the
        lens) for this long is `moved` (0: never).
    moved_share : float
        The share of the picture (of its 7x7 windows of a 64x36 thumbnail) that must
        differ from the learned view; or the whole picture shifted by a thumbnail pixel.
    relearn_s : float
        After this long, a new view becomes the one learned, and the stream `ok` (0: never).
    frozen_s : float
        Frames whose picture has not changed for this long are `frozen` (0: never).
    frozen_diff : float
        A frame has changed when its samples differ from the previous frame's by more
        than this (mean absolute difference, 8-bit grey levels); a live scene's sensor
        noise alone is several times more.
    partial_s : float
        Some tiles of the focus map blurred (below ``enter_ratio`` x their own baselines)
        or covered (contrast below 0.4 x theirs) while the rest of the picture holds, for
        this long, is `partial` (0: never): a spider web, a raindrop, a smear, something
        parked in front of the lens. Needs the frames' focus maps.
    focus_map : (int, int)
        The grid (rows, cols) of the focus map the pipeline scores for `partial`.
    """

    measure: str = "tenengrad"
    enter_ratio: float = 0.5
    leave_ratio: float = 0.7
    min_dwell_s: float = 1.0
    dark_mean: float = 20.0
    obstructed_std: float = 4.0
    obstructed_ratio: float = 0.25
    learn_s: float = 3.0
    baseline_tau_s: float = 120.0
    blur_threshold: float | None = None
    moved_s: float = 10.0
    moved_share: float = 0.6
    relearn_s: float = 300.0
    frozen_s: float = 30.0
    frozen_diff: float = 0.1
    partial_s: float = 10.0
    focus_map: tuple[int, int] = (4, 4)

    def __post_init__(self) -> None:
        names = ("enter_ratio", "leave_ratio", "min_dwell_s", "dark_mean", "obstructed_std",
                 "obstructed_ratio", "learn_s", "baseline_tau_s", "moved_s", "moved_share",
                 "relearn_s", "frozen_s", "frozen_diff", "partial_s")  # fmt: skip
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        grid = self.focus_map
        if not (len(grid) == 2 and all(isinstance(v, int) and v >= 1 for v in grid)):
            raise ValueError(f"`focus_map` must be two integers >= 1 (rows, cols), got {grid!r}")
        if not 0 < self.enter_ratio <= self.leave_ratio:
            raise ValueError(
                f"`enter_ratio` must be > 0 and <= `leave_ratio`, got {self.enter_ratio!r} "
                f"and {self.leave_ratio!r}"
            )
        if self.blur_threshold is not None and not (
            math.isfinite(self.blur_threshold) and self.blur_threshold > 0
        ):
            raise ValueError(f"`blur_threshold` must be a number > 0, got {self.blur_threshold!r}")
        if self.measure not in SHARPNESS:
            raise ValueError(
                f"`measure` must be one of {', '.join(SHARPNESS)}, got {self.measure!r}"
            )


@dataclass(frozen=True, slots=True)
class StateChange:
    """A stream entered ``state`` at ``time``: one line of ``--events``.

    ``time`` is Unix time for a ``live`` stream, else seconds of the stream. ``previous``
    is an `AlertState`, or `CONNECTING` for a stream that had not delivered a frame yet.
    ``detail`` says more of some states, as (name, value) pairs: for `moved`, ``changed``
    (the share of the picture unlike the learned view) and ``shift_x``, ``shift_y`` (the
    whole picture's shift, as a share of its width and height); for `frozen`,
    ``still_s`` (how long no frame has changed); for `blurred`, ``blur`` (``motion``: a
    shake or a pan, along ``angle`` degrees, 0 horizontal, 90 vertical, y down;
    ``defocus``: all directions alike); for `partial`, ``tiles`` (the ``[row, col]`` of
    the focus map's tiles lost) and ``covered`` (those of them covered, not blurred).
    """

    stream: str
    time: float
    state: AlertState
    previous: AlertState | str
    score: float
    baseline: float
    live: bool = False
    detail: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The event's JSON object (``live`` is said by the time itself), with the
        ``detail`` pairs after the rest."""
        return {
            "stream": self.stream, "time": self.time, "state": str(self.state),
            "previous": str(self.previous), "score": self.score, "baseline": self.baseline,
            **dict(self.detail),
        }  # fmt: skip


class _Baseline:
    """What sharpness is normal for the stream at one light level."""

    __slots__ = ("contrast", "learned_s", "samples", "tensor", "tensors", "tiles", "tiles_s",
                 "value")  # fmt: skip

    def __init__(self) -> None:
        self.value: float | None = None
        self.contrast = 0.0
        self.samples: list[tuple[float, float]] = []  # (score, std) while learning
        self.learned_s = 0.0
        self.tensor: np.ndarray | None = None  # the detail's normal direction tensor
        self.tensors: list[np.ndarray] = []  # while learning it
        self.tiles = TileBaseline()  # each tile's, learned on a clock of its own:
        self.tiles_s = 0.0  # a level restored (or tiles asked for later) learns them anew


class AlertTracker:
    """The alert state of one stream, from its frames' scores.

    Parameters
    ----------
    stream : str
        The stream's name, carried into each `StateChange`.
    settings : AlertSettings, optional
    live : bool
        Times are Unix times (a live stream), not seconds of the stream; carried into each
        `StateChange`.

    Notes
    -----
    *Baseline.* Sharpness depends on the scene, so the stream learns what is normal: the
    median normalised score of its first ``learn_s`` seconds, then an exponential average
    with time constant ``baseline_tau_s`` over frames judged `ok`.

    *Light.* A camera at night is darker, noisier and smoothed by its noise reduction:
    its sharpness is not the day's. Baselines are therefore kept per light level (half an
    octave of mean grey level each). A gradual change (dusk) carries the neighbouring
    level's baseline along; an abrupt one (lights off, IR switch) meets a level without a
    baseline and learns one — during which nothing is judged blurred. Too little light
    (``dark_mean``) is `dark`, where nothing is judged at all.

    *Decisions.* Each frame yields a candidate: `dark`, `obstructed` (a lit but flat
    frame: a covered lens), `frozen` (a picture with content that has not changed for
    ``frozen_s``, told by `FreezeWatch` from samples of it, `update`'s ``view``), `moved`
    (most of the picture unlike the view learned at its light for ``moved_s``, or all of
    it shifted: `ViewWatch`, on `update`'s ``thumb``),
    `blurred` (score below ``enter_ratio`` × baseline, or below ``leave_ratio`` ×
    baseline while already blurred) or `ok`. The state follows a candidate only once it
    has held for ``min_dwell_s``.
    """

    def __init__(
        self, stream: str, settings: AlertSettings | None = None, *, live: bool = False
    ) -> None:
        self.stream = stream
        self.settings = settings or AlertSettings()
        self.live = live
        self.state = AlertState.OK  # until judged otherwise: what the metrics show
        self._judged_a_frame = False
        self.score = 0.0
        self.baseline = 0.0
        self._levels: dict[int, _Baseline] = {}
        self._key: int | None = None
        # (std, std / mean) of the last scene judged normal, at whatever light: what a
        # covered lens is told apart by.
        self._reference: tuple[float, float] | None = None
        self._candidate = AlertState.OK
        self._candidate_since: float | None = None
        self._last_time: float | None = None
        self._freeze = FreezeWatch(self.settings.frozen_s, self.settings.frozen_diff)
        s = self.settings
        self._views = ViewWatch(s.moved_share, s.moved_s, s.relearn_s, s.learn_s)
        self._tiles = TileWatch(s.enter_ratio, s.leave_ratio)
        self._tensor = np.zeros((2, 2))  # `direction_tensor`, over the last half second
        self._blurred_tensors: list[np.ndarray] = []  # each frame's, while blurred is due
        self._frame_tensor = self._tensor  # the last frame's own

    # -- public ---------------------------------------------------------------------------

    def update(
        self,
        scores: FocusScores,
        time_s: float,
        view: np.ndarray | None = None,
        key: bool = True,
        thumb: np.ndarray | None = None,
        tiles: FocusMap | None = None,
    ) -> StateChange | None:
        """Take one frame's scores at ``time_s``; a `StateChange` if the state changed.

        ``view``: samples of the frame's picture (`picture_samples`), in 8-bit grey
        levels, by which a picture that stopped changing is told (without: never frozen);
        ``key``: a keyframe came with or since the last frame (see `FreezeWatch`);
        ``thumb``: the frame's `thumbnail`, by which a camera that no longer shows its
        view is told (without: never moved); ``tiles``: the frame's focus map, by which
        a picture partly blurred or covered is told (without: never partial).
        """
        dt = 0.0 if self._last_time is None else max(time_s - self._last_time, 0.0)
        self._last_time = time_s
        frozen = view is not None and self._freeze.update(view, time_s, key)
        candidate = self._judge(scores, dt)
        # The kind of a blur is told from every frame of its dwell, not one: a frame's
        # detail by direction is noisy.
        if candidate is AlertState.BLURRED and self.state is not AlertState.BLURRED:
            self._blurred_tensors.append(self._frame_tensor)
        else:
            self._blurred_tensors = []
        candidate = self._judge_tiles(candidate, tiles, time_s, dt)
        # What it shows is old: its sharpness says nothing of the camera now. (A black or
        # flat picture may well repeat exactly: dark and obstructed say more of it.)
        if frozen and candidate.judged:
            candidate = AlertState.FROZEN
        elif thumb is not None and candidate.judged and self.settings.moved_s > 0:
            assert self._key is not None  # a judged frame has a light level
            if self._views.update(thumb, self._key, time_s, dt):
                candidate = AlertState.MOVED
            elif self._views.relearned:  # a new view: its sharpness is learned anew too
                self._levels[self._key] = _Baseline()
        self._judged_a_frame = True
        return self._settle(candidate, time_s)

    def tile_ratios(self) -> list[list[float]] | None:
        """Each tile's sharpness over its own baseline at the last frame (rows of tiles),
        or None while there is none (no focus map, tiles still learning, a picture not
        judged)."""
        ratio = self._tiles.ratio
        return None if ratio is None else [[float(v) for v in row] for row in ratio]

    def no_signal(self, time_s: float) -> StateChange | None:
        """The source is stalled or disconnected (see `no_signal`): `no_signal` at once."""
        self._candidate, self._candidate_since = AlertState.NO_SIGNAL, time_s
        return self._change(AlertState.NO_SIGNAL, time_s)

    def learned(self) -> dict[str, object]:
        """What the stream has learned, as plain data (JSON-able): its baseline and contrast
        per light level, and the contrast of the scene last judged normal. `restore` takes
        it back, in another process (a fleet's shard started on another host)."""
        return {
            "levels": {
                str(key): [level.value, level.contrast]
                for key, level in self._levels.items()
                if level.value is not None
            },
            "reference": list(self._reference) if self._reference is not None else None,
        }

    def restore(self, learned: object) -> int:
        """Take back what `learned` gave: learned levels are judged at once, without
        learning again. Malformed data is ignored (a stream learns anew rather than fails);
        returns how many levels were restored."""
        if not isinstance(learned, dict):
            return 0
        restored = 0
        levels = learned.get("levels")
        for key, pair in levels.items() if isinstance(levels, dict) else ():
            try:
                value, contrast = (float(v) for v in pair)
                level_key = int(key)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value) and math.isfinite(contrast) and value >= 0 <= contrast:
                level = self._levels.setdefault(level_key, _Baseline())
                level.value, level.contrast, level.samples = value, contrast, []
                restored += 1
        reference = learned.get("reference")
        try:
            ref = tuple(float(v) for v in reference) if reference is not None else None
        except (TypeError, ValueError):
            ref = None
        if ref is not None and len(ref) == 2 and all(math.isfinite(v) and v >= 0 for v in ref):
            self._reference = ref
        return restored

    # -- judging one frame ----------------------------------------------------------------

    def _judge(self, scores: FocusScores, dt: float) -> AlertState:
        s = self.settings
        mean, std = _finite(scores.mean), _finite(scores.std)
        score = normalised_sharpness(scores, s.measure)
        self.score = score
        # The detail's directions over the last half second or so: a single frame's are
        # noisy.
        self._frame_tensor = now = direction_tensor(scores)
        weight = min(dt / 0.5, 1.0) if self._judged_a_frame else 1.0
        self._tensor = self._tensor + weight * (now - self._tensor)
        if mean < BLACK_MEAN:
            return AlertState.DARK
        if self._covered(mean, std):
            return AlertState.OBSTRUCTED
        if mean < s.dark_mean:
            return AlertState.DARK
        level = self._level_of(mean)
        if s.blur_threshold is not None:  # the user's own level: below it is blurred
            self.baseline = s.blur_threshold
            return AlertState.OK if score >= s.blur_threshold else AlertState.BLURRED
        if level.value is None:
            # A light level not seen before — dusk, lights off, an IR switch, the camera's
            # night mode: its sharpness is not the day's. Learn it; judge nothing meanwhile.
            self._learn(level, score, std, mean, dt)
            self.baseline = 0.0
            return AlertState.OK
        self.baseline = level.value
        candidate = self._blur_candidate(score, level.value)
        if candidate is AlertState.OK and self.state is AlertState.OK:
            # Follow slow changes of the scene; never learn from a blurred or covered view.
            alpha = self._alpha(dt)
            level.value += alpha * (score - level.value)
            level.contrast += alpha * (std - level.contrast)
            self._reference = (level.contrast, level.contrast / max(mean, 1e-9))
            if level.tensor is not None:
                level.tensor += alpha * (self._tensor - level.tensor)
        return candidate

    def _alpha(self, dt: float) -> float:
        tau = self.settings.baseline_tau_s
        return min(dt / tau, 1.0) if tau > 0 else 1.0

    def _judge_tiles(
        self, candidate: AlertState, tiles: FocusMap | None, time_s: float, dt: float
    ) -> AlertState:
        """`partial` for a picture whose whole is ok but some tiles of ``tiles`` have
        been lost for ``partial_s`` (`TileWatch`); each tile's baseline is learned and
        followed while the picture is ok."""
        s = self.settings
        if (
            tiles is None
            or s.partial_s <= 0
            or candidate is not AlertState.OK
            or self._key is None
        ):
            self._tiles.reset()
            return candidate
        level = self._levels.get(self._key)
        if level is None or level.value is None:  # the level is still learning: so are they
            return candidate
        sharp, contrast, saturated = tile_values(tiles, s.measure)
        base = level.tiles
        if base.sharpness is None or base.sharpness.shape != sharp.shape:
            if base.sharpness is not None:  # a new grid or frame size: learn it anew
                base = level.tiles = TileBaseline()
                level.tiles_s = 0.0
            base.learn(sharp, contrast)
            level.tiles_s += dt
            # Twice as long as a tile must be lost: a person lingering in one is not its
            # normal.
            if level.tiles_s >= max(s.learn_s, 2 * s.partial_s) and len(base.samples or ()) >= 3:
                base.settle()
            return candidate
        # A tile must stay lost for all but the last min_dwell_s of partial_s (the state's
        # own dwell): then `_settle` makes it partial_s.
        hold_s = max(s.partial_s - s.min_dwell_s, 0.0)
        partial = self._tiles.update(base, sharp, contrast, saturated, time_s, hold_s)
        if self.state is AlertState.OK and self._tiles.lost is not None:
            base.follow(sharp, contrast, self._alpha(dt), ~self._tiles.lost)
        return AlertState.PARTIAL if partial else candidate

    def _covered(self, mean: float, std: float) -> bool:
        """A flat view: far less than the scene's known contrast, both absolutely (std) and
        relative to the light (std / mean), which a darker scene keeps and a cover does
        not; before the scene is known, a picture with almost no contrast at all."""
        s = self.settings
        if self._reference is None:  # nothing known of the scene yet: only a flat picture
            return std < s.obstructed_std and mean >= s.dark_mean
        ref_std, ref_cv = self._reference
        cv = std / max(mean, 1e-9)
        return std < s.obstructed_ratio * ref_std and cv < COVER_CV_RATIO * ref_cv

    def _blur_candidate(self, score: float, baseline: float) -> AlertState:
        s = self.settings
        limit = s.leave_ratio if self.state is AlertState.BLURRED else s.enter_ratio
        return AlertState.OK if score >= limit * baseline else AlertState.BLURRED

    def _level_of(self, mean: float) -> _Baseline:
        octaves = 2 * math.log2(max(mean, 1e-3))
        key = round(octaves)
        if self._key is not None and abs(octaves - self._key) < LEVEL_HYSTERESIS:
            key = self._key  # a mean near a boundary must not split the learning in two
        self._key = key
        level = self._levels.get(key)
        if level is None:
            level = self._levels[key] = _Baseline()
        return level

    def _learn(self, level: _Baseline, score: float, std: float, mean: float, dt: float) -> None:
        level.samples.append((score, std))
        level.tensors.append(self._tensor)
        level.learned_s += dt
        if level.learned_s >= self.settings.learn_s and len(level.samples) >= 3:
            scores = sorted(v for v, _ in level.samples)
            stds = sorted(c for _, c in level.samples)
            level.value = scores[len(scores) // 2]
            level.contrast = stds[len(stds) // 2]
            level.tensor = np.median(level.tensors, axis=0)
            level.samples, level.tensors = [], []
            self._reference = (level.contrast, level.contrast / max(mean, 1e-9))

    # -- changing state -------------------------------------------------------------------

    def _settle(self, candidate: AlertState, time_s: float) -> StateChange | None:
        if candidate != self._candidate:
            self._candidate, self._candidate_since = candidate, time_s
        if candidate == self.state:
            return None
        since = self._candidate_since if self._candidate_since is not None else time_s
        if self.state is AlertState.NO_SIGNAL or time_s - since >= self.settings.min_dwell_s:
            return self._change(candidate, time_s)
        return None

    def _change(self, state: AlertState, time_s: float) -> StateChange | None:
        if state is self.state:
            return None
        previous = self.state if self._judged_a_frame else CONNECTING
        detail: tuple[tuple[str, object], ...] = ()
        if state is AlertState.BLURRED:
            detail = self._blur_detail()
        elif state is AlertState.PARTIAL:
            detail = (("tiles", self._tiles.where()), ("covered", self._tiles.where(True)))
        elif state is AlertState.MOVED:
            dx, dy = self._views.shift
            detail = (
                ("changed", round(self._views.changed, 3)),
                ("shift_x", round(dx / THUMB_W, 3)),
                ("shift_y", round(dy / THUMB_H, 3)),
            )
        elif state is AlertState.FROZEN:
            detail = (("still_s", round(self._freeze.still_s(time_s), 1)),)
        change = StateChange(
            self.stream, float(time_s), state, previous, _finite(self.score),
            _finite(self.baseline), self.live, detail,
        )  # fmt: skip
        self.state = state
        return change

    def _blur_detail(self) -> tuple[tuple[str, object], ...]:
        """``blur`` (and ``angle`` for motion) of a frame judged blurred: `blur_kind` of
        its detail against the level's normal detail."""
        level = self._levels.get(self._key) if self._key is not None else None
        if level is None or level.tensor is None:
            return ()
        now = np.mean(self._blurred_tensors, axis=0) if self._blurred_tensors else self._tensor
        kind = blur_kind(now, level.tensor)
        if kind is None:
            return ()
        name, angle = kind
        return (("blur", name), ("angle", angle)) if name == "motion" else (("blur", name),)


class FreezeWatch:
    """Whether a stream's picture has stopped changing. Frozen: for ``frozen_s`` (0:
    never), no keyframe whose samples differ from the previous keyframe's by more than
    ``still_diff`` on average, at least one that matched, and no frame in between that
    differs from the one before it by ten times that.

    Keyframes are what tell a still scene from a stuck one. An encoder at a low bit rate
    codes a still scene's frames between keyframes as "nothing changed" (x264 at CRF 35:
    a mean difference of 0.04 grey levels), but its sensor noise anew in each keyframe
    (2.5 grey levels and more); an encoder fed one picture over and over refines it in
    the frames between (up to 0.1) and starts again at each keyframe (0.5 to 5 from the
    frame before), but codes each keyframe the same. Where every frame is a keyframe (an
    MJPEG camera, images) each frame is compared with the one before.
    """

    def __init__(self, frozen_s: float, still_diff: float) -> None:
        self.frozen_s, self.still_diff = frozen_s, still_diff
        self._previous: np.ndarray | None = None  # the last frame's samples
        self._key: np.ndarray | None = None  # the last keyframe's
        self._changed_at: float | None = None
        self._matched = 0  # keyframes like the one before, since the last change
        self.difference = math.nan  # the last comparison's, for a look at a stream

    def still_s(self, time_s: float) -> float:
        """How long, at ``time_s``, the picture has not changed."""
        return 0.0 if self._changed_at is None else max(time_s - self._changed_at, 0.0)

    def update(self, view: np.ndarray, time_s: float, key: bool = True) -> bool:
        """Take one frame's samples at ``time_s`` (``key``: a keyframe came with or since
        the last frame); whether the picture is frozen."""
        view = np.asarray(view, np.float32)
        previous, self._previous = self._previous, view
        if previous is None or previous.shape != view.shape:
            self._key = view if key else None
            self._changed_at, self._matched, self.difference = time_s, 0, math.nan
            return False
        if key:
            if self._key is None or self._key.shape != view.shape:
                self._key = view
                return False
            self.difference = float(np.mean(np.abs(view - self._key)))
            self._key = view
            if self.difference <= self.still_diff:
                self._matched += 1
            else:  # (a NaN is a change, not a freeze)
                self._changed_at, self._matched = time_s, 0
        else:
            self.difference = float(np.mean(np.abs(view - previous)))
            if not self.difference <= 10 * self.still_diff:  # moving: not stuck
                self._changed_at, self._matched = time_s, 0
        assert self._changed_at is not None
        still_s = time_s - self._changed_at
        return self.frozen_s > 0 and self._matched > 0 and still_s >= self.frozen_s


#: `picture_samples` takes about this many samples across and down a frame.
SAMPLES_ACROSS, SAMPLES_DOWN = 64, 36


def picture_samples(luma: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Samples of a frame on a regular grid of about 64 x 36 (single pixels, not averages:
    a live camera's sensor noise stays in them), in 8-bit grey levels (``(v - offset) *
    scale``, as the measures are): what `AlertTracker.update` tells a frozen picture by."""
    h, w = luma.shape
    step_y, step_x = max(h // SAMPLES_DOWN, 1), max(w // SAMPLES_ACROSS, 1)
    samples = luma[step_y // 2 :: step_y, step_x // 2 :: step_x].astype(np.float32)
    if scale != 1.0 or offset != 0.0:
        samples = (samples - np.float32(offset)) * np.float32(scale)
    return samples


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0
