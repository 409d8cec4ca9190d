"""Surveillance clips: a fixed camera's day with a knocked lens, a covered lens and a night.

`SurveillanceCamera` renders the frames one at a time through the camera model (so a live
source can run it for ever: the demo camera of ``focusmon watch demo``); `surveillance_clip`
collects a whole clip with its labelled ground truth (for the decision benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ._model import defocus, expose, night_noise_reduction

#: Ground-truth labels of clip segments.
TRUTHS = ("ok", "blurred", "obstructed", "dark", "moved", "frozen", "partial")
#: What may happen in a segment.
EVENTS = ("day", "defocus", "cover", "night", "turn", "freeze", "smear", "occlude", "shake")


@dataclass(frozen=True)
class Segment:
    """A stretch of a clip with one true state.

    Attributes
    ----------
    start_s, end_s : float
        Half-open interval ``[start_s, end_s)`` in stream seconds.
    truth : str
        What a monitor should report: ``ok``, ``blurred``, ``obstructed`` or ``dark``.
    event : str
        What happens: ``day``, ``defocus``, ``cover`` or ``night``.
    """

    start_s: float
    end_s: float
    truth: str
    event: str


@dataclass(frozen=True)
class Clip:
    """A rendered surveillance clip.

    Attributes
    ----------
    frames : list of ndarray
        uint8 frames, ``fps`` per second.
    fps : float
    segments : list of Segment
        Contiguous, covering ``[0, duration)``.
    radius, light, gain, cover : ndarray
        Per-frame blur radius (px), illumination, AGC gain and cover opacity (0..1).
    night_mode : ndarray of bool
        Per frame: the camera's night mode (high gain cap, noise reduction on).
    """

    frames: list[np.ndarray]
    fps: float
    segments: list[Segment]
    radius: np.ndarray
    light: np.ndarray
    gain: np.ndarray
    cover: np.ndarray
    night_mode: np.ndarray = field(repr=False)

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def truth_at(self, t: float) -> str:
        """The true state at stream time ``t``."""
        for seg in self.segments:
            if seg.start_s <= t < seg.end_s:
                return seg.truth
        return self.segments[-1].truth


#: Default event timeline (seconds): (start, end, truth, event).
CLIP_TIMELINE: tuple[tuple[float, float, str, str], ...] = (
    (0.0, 20.0, "ok", "day"),  # long enough for a monitor to learn its baseline
    (20.0, 28.0, "blurred", "defocus"),
    (28.0, 36.0, "ok", "day"),
    (36.0, 42.0, "obstructed", "cover"),
    (42.0, 50.0, "ok", "day"),
    (50.0, 72.0, "dark", "night"),
    (72.0, 80.0, "ok", "day"),
)


def _ramp(t: np.ndarray, start: float, end: float, rise_s: float, fall_s: float) -> np.ndarray:
    """0 outside ``[start, end)``, rising linearly over ``rise_s`` after ``start`` and
    falling over ``fall_s`` before ``end``."""
    up = np.clip((t - start) / rise_s, 0.0, 1.0) if rise_s > 0 else (t >= start) * 1.0
    down = np.clip((end - t) / fall_s, 0.0, 1.0) if fall_s > 0 else (t < end) * 1.0
    return np.minimum(up, down)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std low-pass noise (texture of skin, fabric, a lens cap)."""
    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return n / max(float(n.std()), 1e-6)


class SurveillanceCamera:
    """A fixed camera over ``scene``, rendered one frame at a time (`render`).

    The camera pans slightly (+-4 px, whole pixels, so no resampling blur) and a textured
    object crosses the view. Events follow ``timeline``:

    * ``defocus``: the blur radius ramps to ``defocus_radius`` over 1 s, holds, and returns
      over 1 s at the end of the segment (someone refocuses);
    * ``cover``: within 0.3 s a dark, smooth, slightly textured surface (a hand, a cap) fills
      the view; the AGC then raises the gain, so the covered view is noisy, not black;
    * ``night``: the light falls by ``night_factor`` over 2 s and returns over 2 s at the end;
      below a quarter of the day light the camera goes to night mode: a higher gain cap
      (more noise) and `night_noise_reduction` on (less fine detail);
    * ``turn``: the camera is turned by ``turn_px`` (the view slides across; what leaves
      one side comes back at the other) and turned back at the end;
    * ``freeze``: the camera resends its last frame until the end of the segment;
    * ``smear``: within 0.5 s a smear (a raindrop, grease) on the lens blurs an area of
      about a sixth of the view near its top left corner, and hazes it;
    * ``occlude``: within 0.3 s something dark close to the lens (a spider, a leaf, a
      sign hung in front) hides an area of about a sixth of the view near its bottom
      right corner;
    * ``shake``: the camera shakes (a mast in the wind): each frame is blurred by a
      motion of ``shake_px`` pixels along ``shake_angle`` degrees, ramping in over 1 s.

    With ``repeat`` the timeline starts again at its end, for ever. The camera's automatic
    gain and its night noise reduction carry state from frame to frame: ask for the frames
    in order.

    Parameters
    ----------
    scene : ndarray, (H, W), float in [0, 1]
        A photograph at least ``size`` + 8 px wide; it is resized to cover the view.
    fps : float
        Frames per second (the gain follows within about a second).
    size : (height, width)
        Frame size.
    timeline : tuple of (start_s, end_s, truth, event)
        Contiguous segments from 0; events as above, ``day`` for nothing.
    day_light : float
        Daytime illumination (1 bright; ~0.2 a dim scene that the AGC cannot fully lift).
    night_factor : float
        Day light / night light.
    defocus_radius : float
        Blur-disk radius (px) of the knocked lens.
    turn_px : int
        How far a ``turn`` slides the view, in pixels.
    smear_radius : float
        Blur-disk radius (px) inside a smear.
    shake_px, shake_angle : float
        The length (px) and direction (degrees, 0 horizontal, 90 vertical) of a shake's
        motion blur.
    photons_at_white, read_noise_e :
        The sensor at unity gain, see `expose`.
    day_max_gain, night_max_gain : float
        The AGC's gain cap in day and night mode; it aims at a mean of 45 % of full scale.
    nr_strength : float
        Night-mode noise-reduction strength (see `night_noise_reduction`).
    sprite : ndarray, (h, w), float in [0, 1], optional
        The moving object; a patch of the scene's own texture, inverted, by default.
    repeat : bool
        Run the timeline again at its end, for ever (a live camera).
    rng : Generator, int or None
        Random source or seed.
    """

    def __init__(
        self,
        scene: np.ndarray,
        *,
        fps: float = 10.0,
        size: tuple[int, int] = (240, 320),
        timeline: tuple[tuple[float, float, str, str], ...] = CLIP_TIMELINE,
        day_light: float = 1.0,
        night_factor: float = 20.0,
        defocus_radius: float = 3.0,
        turn_px: int = 24,
        smear_radius: float = 5.0,
        shake_px: float = 9.0,
        shake_angle: float = 0.0,
        photons_at_white: float = 4000.0,
        read_noise_e: float = 3.0,
        day_max_gain: float = 2.0,
        night_max_gain: float = 16.0,
        nr_strength: float = 1.0,
        sprite: np.ndarray | None = None,
        repeat: bool = False,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        rng = np.random.default_rng(rng)
        height, width = size
        self.size, self.fps, self.repeat = size, float(fps), repeat
        self.timeline = tuple(timeline)
        for _, _, truth, event in self.timeline:
            if truth not in TRUTHS:
                raise ValueError(f"truth must be one of {TRUTHS}, got {truth!r}")
            if event not in EVENTS:
                raise ValueError(f"unknown event {event!r}")
        self.duration_s = float(self.timeline[-1][1])
        self.day_light, self.night_factor = float(day_light), night_factor
        self.defocus_radius = defocus_radius
        self.turn_px = int(turn_px)
        self.smear_radius, self.shake_px = float(smear_radius), float(shake_px)
        self.shake_angle = float(shake_angle)
        self._smear_mask = _soft_ellipse(size, (0.3, 0.27), (0.25, 0.22))
        self._occluder_mask = _soft_ellipse(size, (0.72, 0.75), (0.25, 0.22))
        self._last: np.ndarray | None = None  # the last frame rendered, for a freeze
        self.photons_at_white, self.read_noise_e = photons_at_white, read_noise_e
        self.day_max_gain, self.night_max_gain = day_max_gain, night_max_gain
        self.nr_strength = nr_strength
        self._pad = pad = 8
        self._scene = _cover_resize(np.asarray(scene, np.float32), (height + pad, width + 2 * pad))
        if sprite is None:
            # A quarter of the height tall, an eighth of the width wide: a person nearby.
            sh, sw = max(height // 4, 1), max(width // 8, 1)
            sy = int(rng.integers(0, self._scene.shape[0] - sh + 1))
            sx = int(rng.integers(0, self._scene.shape[1] - sw + 1))
            sprite = 1.0 - self._scene[sy : sy + sh, sx : sx + sw]
        sprite = np.asarray(sprite, np.float32)
        self._sprite_y = int(
            rng.integers(height // 3, max(height - sprite.shape[0], height // 3) + 1)
        )
        self._sprite = sprite[: height - self._sprite_y, :width]  # what of it fits the view
        self._sprite_speed = float(rng.uniform(15.0, 30.0))  # px/s: a walker at this distance
        # The covering hand: dark grey, lit only by what leaks round it, with a faint blotchy
        # texture (it sits far inside the lens's near limit, so only coarse shading survives).
        hand = np.clip(0.12 + 0.02 * _smooth_noise(size, 6.0, rng), 0.0, 1.0)
        hand += 0.01 * _smooth_noise(size, 1.5, rng)  # skin pores, faint, close to the lens
        self._hand = defocus(hand, 2.0)
        self._rng = rng
        mean = float(self._scene.mean())
        #: The automatic gain of the last frame rendered.
        self.gain = min(day_max_gain, max(1.0, 0.45 / (self.day_light * mean)))
        self._previous: np.ndarray | None = None  # the last night frame, for temporal NR

    def conditions(self, t):
        """``(radius, light, cover, night_mode)`` at time(s) ``t``: the blur radius (px),
        the illumination, the cover's opacity (0..1) and whether the camera is in night
        mode. ``t`` may be a number or an array."""
        phase = np.mod(t, self.duration_s) if self.repeat else np.asarray(t, np.float64)
        radius = np.zeros_like(phase, dtype=np.float64)
        light = np.full_like(phase, self.day_light, dtype=np.float64)
        cover = np.zeros_like(phase, dtype=np.float64)
        for start, end, _, event in self.timeline:
            if event == "defocus":
                ramp = _ramp(phase, start, end, 1.0, 1.0)
                radius = np.maximum(radius, self.defocus_radius * ramp)
            elif event == "cover":
                cover = np.maximum(cover, _ramp(phase, start, end, 0.3, 0.3))
            elif event == "night":
                # Light falls geometrically (dusk), which is how a log-light sensor sees it.
                light = light / self.night_factor ** _ramp(phase, start, end, 2.0, 2.0)
        return radius, light, cover, light < self.day_light / 4.0

    def _amount(self, t: float, event: str, rise_s: float) -> float:
        """How far into an ``event`` (0..1) the camera is at ``t``: up over ``rise_s``
        after its start, down over as long before its end."""
        phase = t % self.duration_s if self.repeat else t
        amounts = [float(_ramp(np.float64(phase), start, end, rise_s, rise_s))
                   for start, end, _, e in self.timeline if e == event]  # fmt: skip
        return max(amounts, default=0.0)

    def _during(self, t: float, event: str) -> bool:
        phase = t % self.duration_s if self.repeat else t
        return any(e == event and start <= phase < end for start, end, _, e in self.timeline)

    def render(self, t: float) -> np.ndarray:
        """The uint8 frame at ``t`` seconds (call with increasing times)."""
        if self._last is not None and self._during(t, "freeze"):
            return self._last.copy()
        self._last = frame = self._render(t)
        return frame

    def _render(self, t: float) -> np.ndarray:
        height, width = self.size
        pad = self._pad
        # NumPy scalars, not floats: a float64 scalar makes the cover's blend float64.
        radius, light, cover, night_mode = (v[()] for v in self.conditions(t))
        ox = pad + int(round(pad * 0.5 * math.sin(2 * math.pi * t / 20.0)))
        view = self._scene[:height, ox : ox + width].copy()
        if self._during(t, "turn"):
            view = np.roll(view, self.turn_px, axis=1)
        sh, sw = self._sprite.shape
        x = int((t * self._sprite_speed) % (width + sw)) - sw
        x0, x1 = max(x, 0), min(x + sw, width)
        if x1 > x0:
            view[self._sprite_y : self._sprite_y + sh, x0:x1] = self._sprite[:, x0 - x : x1 - x]
        shake = self._amount(t, "shake", 1.0)
        if shake > 0:
            view = motion_blur(view, self.shake_px * shake, self.shake_angle)
        if radius > 0:
            view = defocus(view, float(radius))
        smear = self._amount(t, "smear", 0.5)
        if smear > 0:  # blurred, and hazed by the light it scatters
            hazy = 0.7 * defocus(view, self.smear_radius) + 0.3 * float(view.mean())
            m = smear * self._smear_mask
            view = (1.0 - m) * view + m * hazy
        occluder = self._amount(t, "occlude", 0.3)
        if occluder > 0:
            m = occluder * self._occluder_mask
            view = (1.0 - m) * view + m * self._hand
        if cover > 0:
            view = (1.0 - cover) * view + cover * self._hand
        # AGC: aims at 45 % grey, follows within ~1 s (a time constant of fps/2 frames).
        cap = self.night_max_gain if night_mode else self.day_max_gain
        target = min(cap, max(1.0, 0.45 / max(light * float(view.mean()), 1e-6)))
        self.gain = min(self.gain + (target - self.gain) * min(1.0, 2.0 / self.fps), cap)
        frame = expose(
            view, light=float(light), photons_at_white=self.photons_at_white,
            read_noise_e=self.read_noise_e, gain=self.gain, bits=8, rng=self._rng,
        )  # fmt: skip
        if night_mode:
            frame = night_noise_reduction(frame, self.nr_strength, previous=self._previous)
            self._previous = frame
        else:
            self._previous = None
        return frame


def surveillance_clip(scene: np.ndarray, **camera: Any) -> Clip:
    """Render a fixed camera's clip with a knocked lens, a covered lens and a night.

    The frames of a `SurveillanceCamera` (whose parameters it takes) over its timeline,
    with the truth of each stretch and the camera's conditions frame by frame.

    Returns
    -------
    Clip
    """
    if camera.get("repeat"):
        raise ValueError("a clip has an end: `repeat` is for a live camera")
    cam = SurveillanceCamera(scene, **camera)
    fps = cam.fps
    segments = [Segment(float(s), float(e), truth, event) for s, e, truth, event in cam.timeline]
    t = np.arange(int(round(cam.duration_s * fps))) / fps
    radius, light, cover, night_mode = cam.conditions(t)
    frames, gains = [], np.empty(len(t))
    for i, ti in enumerate(t):
        frames.append(cam.render(float(ti)))
        gains[i] = cam.gain
    return Clip(frames, float(fps), segments, radius, light, gains, cover, night_mode)


def motion_blur(image: np.ndarray, length_px: float, angle_deg: float) -> np.ndarray:
    """``image`` blurred by a straight motion of ``length_px`` pixels along ``angle_deg``
    (0 horizontal, 90 vertical, y down), edges reflected."""
    if length_px < 1.0:
        return image
    n = int(math.ceil(length_px)) | 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for s in np.linspace(-length_px / 2, length_px / 2, 4 * n):
        kernel[int(round(c + s * dy)), int(round(c + s * dx))] += 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _soft_ellipse(
    size: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]
) -> np.ndarray:
    """A float32 mask, 1 inside an ellipse (centre and radii as shares of the height and
    width), 0 outside, with a soft edge."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((y / height - centre[0]) / radii[0], (x / width - centre[1]) / radii[1])
    return np.clip((1.15 - r) / 0.3, 0.0, 1.0).astype(np.float32)


def _cover_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``image`` to cover ``size`` (height, width), keeping its aspect, then crop the
    centre."""
    h, w = image.shape
    height, width = size
    s = max(height / h, width / w)
    nh, nw = max(height, math.ceil(h * s)), max(width, math.ceil(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = cv2.resize(image, (nw, nh), interpolation=interp)
    y, x = (nh - height) // 2, (nw - width) // 2
    return np.clip(out[y : y + height, x : x + width], 0.0, 1.0)
