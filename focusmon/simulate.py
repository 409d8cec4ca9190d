"""A physical imaging model, to test focus decisions against a known truth.

Scenes are float images in [0, 1] (reflectance), passed in: this module loads nothing.
The chain for one frame is the one a camera applies:

1. `defocus` — a pillbox (disk) point-spread function whose radius grows with the distance
   from focus, as geometric optics gives for a lens out of focus;
2. `expose` — light level, Poisson photon (shot) noise, Gaussian read noise, gain and
   quantisation to 8 or 16 bits;
3. `night_noise_reduction` — the spatial and temporal denoising cameras switch on at night,
   which removes fine detail along with the noise.

On top of it, `focus_sweep` renders a focus sweep (microscope z-stack, lens sweep) with lamp
drift, flicker, low light and fine z-steps, and `surveillance_clip` renders a camera's day
with a knocked lens, a covered lens and a night, with labelled ground-truth segments. Both
are seeded and deterministic.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "Clip",
    "Segment",
    "Sweep",
    "defocus",
    "disk_kernel",
    "expose",
    "focus_sweep",
    "night_noise_reduction",
    "surveillance_clip",
]

#: Ground-truth labels of clip segments.
TRUTHS = ("ok", "blurred", "obstructed", "dark")

_SUBSAMPLES = 16  # disk samples per pixel (at least) when building a defocus kernel


# -- optics ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _disk_kernel_cached(radius_milli: int) -> np.ndarray:
    radius = radius_milli / 1000.0
    half = math.ceil(radius) + 1
    # Sub-pixel sampling of the disk: at least 1/16 px, and finer for small disks so that
    # even a 0.01 px disk spans ~32 samples (its blur then grows continuously from 0).
    s = max(_SUBSAMPLES, _SUBSAMPLES / radius)
    m = math.ceil(radius * s) + 1
    # Sample positions at the centres of 1/s sub-pixels, covering the disk only.
    u = (np.arange(-m, m) + 0.5) / s
    dist = np.hypot(u[:, None], u[None, :])
    # Anti-aliased disk: sub-pixels on the rim count by how much of them lies inside.
    inside = np.clip((radius - dist) * s + 0.5, 0.0, 1.0)
    # Weight of each sub-pixel on each output pixel: the tent (pixel box * pixel box), i.e.
    # the scene is piecewise constant over its pixels and the sensor integrates over its
    # own. The tent is 1 at 0 and 0 at +-1 px, so the kernel tends to identity as r -> 0
    # and widens smoothly for sub-pixel radii.
    offsets = np.arange(-half, half + 1)
    tent = np.clip(1.0 - np.abs(offsets[:, None] - u[None, :]), 0.0, None)
    kernel = tent @ inside @ tent.T
    return kernel / kernel.sum()


def disk_kernel(radius_px: float) -> np.ndarray:
    """The defocus kernel: a pillbox of ``radius_px`` seen through square pixels.

    Parameters
    ----------
    radius_px : float
        Radius of the blur disk in pixels, >= 0. Rounded to 1/1000 px (kernels are cached).

    Returns
    -------
    ndarray, float64, (2k + 1, 2k + 1)
        Sums to 1; ``[[1.0]]`` for a radius below 1/1000 px.
    """
    if not math.isfinite(radius_px) or radius_px < 0:
        raise ValueError(f"`radius_px` must be a finite number >= 0, got {radius_px!r}")
    milli = round(radius_px * 1000)
    if milli == 0:
        return np.ones((1, 1))
    return _disk_kernel_cached(milli).copy()


def defocus(image: np.ndarray, radius_px: float) -> np.ndarray:
    """Blur ``image`` as a lens out of focus does: a disk PSF of ``radius_px``.

    Parameters
    ----------
    image : ndarray, (H, W), float
        The sharp scene.
    radius_px : float
        Blur-disk radius in pixels; 0 returns a copy of the image. Sub-pixel radii blur a
        little (the kernel is anti-aliased), so scores change smoothly with the radius.

    Returns
    -------
    ndarray, (H, W), float32
    """
    src = np.asarray(image, dtype=np.float32)
    kernel = disk_kernel(radius_px)
    if kernel.shape == (1, 1):
        return src.copy()
    # Reflected borders: no dark frame edge that the measures would see as detail.
    return cv2.filter2D(src, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)


# -- sensor ---------------------------------------------------------------------------------


def expose(
    scene: np.ndarray,
    *,
    light: float = 1.0,
    photons_at_white: float = 5000.0,
    read_noise_e: float = 2.0,
    gain: float = 1.0,
    bits: int = 8,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Take a picture of ``scene``: photons, shot noise, read noise, gain, quantisation.

    Parameters
    ----------
    scene : ndarray, (H, W), float
        Reflectance in [0, 1] (values outside are clipped to >= 0).
    light : float or ndarray
        Illumination relative to the exposure's design level (a scalar, or an (H, W)
        illumination field); 1 puts white at full scale with ``gain`` 1.
    photons_at_white : float
        Mean photo-electrons a white pixel collects at ``light`` 1 (full-well-like scale).
    read_noise_e : float
        Standard deviation of the Gaussian read noise, in electrons.
    gain : float
        Analogue gain (AGC): digital numbers per electron relative to unity, where unity
        maps ``photons_at_white`` electrons to full scale.
    bits : {8, 16}
        Output depth: uint8 or uint16 (full-range samples).
    rng : Generator, int or None
        Random source or seed.

    Returns
    -------
    ndarray, (H, W), uint8 or uint16
        Clipped to the output range, rounded to the nearest sample.
    """
    if bits not in (8, 16):
        raise ValueError(f"`bits` must be 8 or 16, got {bits!r}")
    if photons_at_white <= 0:
        raise ValueError(f"`photons_at_white` must be > 0, got {photons_at_white!r}")
    rng = np.random.default_rng(rng)
    mean_e = np.clip(np.asarray(scene, dtype=np.float64), 0.0, None) * (light * photons_at_white)
    electrons = _photon_counts(mean_e, rng)
    if read_noise_e > 0:
        electrons += rng.normal(0.0, read_noise_e, electrons.shape)
    full = 2**bits - 1
    samples = electrons * (gain * full / photons_at_white)
    np.rint(samples, out=samples)
    np.clip(samples, 0, full, out=samples)
    return samples.astype(np.uint8 if bits == 8 else np.uint16)


_POISSON_EXACT_BELOW = 256.0  # mean electrons; above, a rounded normal is as good and faster


def _photon_counts(mean_e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of mean ``mean_e``. Pixels of large mean are drawn from the normal
    approximation (variance = mean, rounded to whole electrons): its skew, 1/sqrt(mean),
    is below 7 % there, and it costs a third of an exact draw."""
    low = mean_e < _POISSON_EXACT_BELOW
    if low.all():
        return rng.poisson(mean_e).astype(np.float64)
    counts = np.rint(mean_e + np.sqrt(mean_e) * rng.standard_normal(mean_e.shape))
    if low.any():
        counts[low] = rng.poisson(mean_e[low])
    return np.clip(counts, 0.0, None)


def night_noise_reduction(
    frame: np.ndarray,
    strength: float = 1.0,
    *,
    previous: np.ndarray | None = None,
    temporal: float = 0.5,
) -> np.ndarray:
    """A camera's night-time noise reduction: edge-preserving spatial denoise plus a
    recursive temporal average. It removes fine texture along with the noise, as cameras do.

    Parameters
    ----------
    frame : ndarray, (H, W), uint8 or uint16
        The noisy frame.
    strength : float
        0 is off; 1 is a typical night setting (bilateral over ~2 px, edges kept where they
        stand out by more than ~3 noise sigmas, then a light Gaussian).
    previous : ndarray, optional
        The previous *output* of this function, for the temporal part (3D-DNR).
    temporal : float
        Weight of ``previous`` in the temporal blend, in [0, 1).

    Returns
    -------
    ndarray, same shape and dtype as ``frame``
    """
    if strength <= 0:
        return frame.copy()
    dtype = frame.dtype
    full = float(np.iinfo(dtype).max)
    f = frame.astype(np.float32)
    # Cameras adapt their NR to the noise they see: estimate sigma from the Laplacian's
    # median absolute value (robust to edges), |L| of white noise has sigma*sqrt(20).
    lap = cv2.Laplacian(f, cv2.CV_32F)
    sigma = float(np.median(np.abs(lap))) / (0.6745 * math.sqrt(20.0))
    sigma = max(sigma, full / 255.0)
    space = 1.0 + 1.5 * strength
    out = cv2.bilateralFilter(f, d=-1, sigmaColor=3.0 * strength * sigma, sigmaSpace=space)
    out = cv2.GaussianBlur(out, (0, 0), 0.5 + 0.5 * strength)
    if previous is not None:
        if previous.shape != frame.shape:
            raise ValueError("`previous` must have the frame's shape")
        out = (1.0 - temporal) * out + temporal * previous.astype(np.float32)
    return np.clip(np.rint(out), 0, full).astype(dtype)


# -- focus sweeps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """A rendered focus sweep and its truth.

    Attributes
    ----------
    frames : list of ndarray
        The exposed frames, uint8 or uint16, in sweep order.
    focus_index : int
        The frame nearest to focus (smallest blur radius): the right answer.
    focus_position : float
        Where focus lies between frames (fractional index).
    radii : ndarray
        Blur radius of each frame, in pixels.
    light : ndarray
        Illumination of each frame (drift x flicker).
    bits : int
        8 or 16.
    """

    frames: list[np.ndarray]
    focus_index: int
    focus_position: float
    radii: np.ndarray
    light: np.ndarray
    bits: int


def focus_sweep(
    image: np.ndarray,
    *,
    n_frames: int = 31,
    focus: float = 15.0,
    step_px: float = 1.0,
    drift: float = 0.0,
    flicker: float = 0.0,
    photons_at_white: float = 5000.0,
    read_noise_e: float = 2.0,
    bits: int = 8,
    exposure: float = 0.75,
    rng: np.random.Generator | int | None = None,
) -> Sweep:
    """Render a focus sweep of ``image`` through focus.

    Frame ``k`` has blur radius ``|k - focus| * step_px``: geometric defocus grows linearly
    with the distance from the focal plane.

    Parameters
    ----------
    image : ndarray, (H, W), float in [0, 1]
        The sharp scene (specimen, target).
    n_frames : int
        Frames in the sweep.
    focus : float
        Fractional frame index of best focus; may lie near either end (off-centre).
    step_px : float
        Change of blur radius per frame. Small steps ("fine step", e.g. 0.25) make many
        frames near focus look alike.
    drift : float
        Lamp drift: relative illumination change over the sweep. ``0.4`` dims linearly
        from 1 to 0.6; ``-0.4`` brightens from 0.6 to 1.
    flicker : float
        Per-frame random illumination factor, uniform in ``1 +- flicker``.
    photons_at_white, read_noise_e, bits :
        The sensor, see `expose`. Low light is a few tens of photons at white.
    exposure : float
        Scene white relative to sensor full scale: headroom against clipping under flicker.
    rng : Generator, int or None
        Random source or seed.

    Returns
    -------
    Sweep
    """
    if n_frames < 2:
        raise ValueError(f"`n_frames` must be >= 2, got {n_frames!r}")
    if not 0 <= focus <= n_frames - 1:
        raise ValueError(f"`focus` must lie in [0, {n_frames - 1}], got {focus!r}")
    rng = np.random.default_rng(rng)
    k = np.arange(n_frames, dtype=np.float64)
    radii = np.abs(k - focus) * step_px
    ramp = k / (n_frames - 1)
    light = 1.0 - abs(drift) * (ramp if drift >= 0 else 1.0 - ramp)
    if flicker:
        light = light * (1.0 + flicker * rng.uniform(-1.0, 1.0, n_frames))
    scene = np.asarray(image, dtype=np.float32) * exposure
    frames = [
        expose(
            defocus(scene, float(r)),
            light=float(lv),
            photons_at_white=photons_at_white,
            read_noise_e=read_noise_e,
            bits=bits,
            rng=rng,
        )
        for r, lv in zip(radii, light, strict=True)
    ]
    return Sweep(frames, int(np.argmin(radii)), float(focus), radii, light, bits)


# -- surveillance clips ---------------------------------------------------------------------


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


def surveillance_clip(
    scene: np.ndarray,
    *,
    fps: float = 10.0,
    size: tuple[int, int] = (240, 320),
    timeline: tuple[tuple[float, float, str, str], ...] = CLIP_TIMELINE,
    day_light: float = 1.0,
    night_factor: float = 20.0,
    defocus_radius: float = 3.0,
    photons_at_white: float = 4000.0,
    read_noise_e: float = 3.0,
    day_max_gain: float = 2.0,
    night_max_gain: float = 16.0,
    nr_strength: float = 1.0,
    sprite: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> Clip:
    """Render a fixed camera's clip with a knocked lens, a covered lens and a night.

    The camera pans slightly (+-4 px, whole pixels, so no resampling blur) and a textured
    object crosses the view. Events follow ``timeline``:

    * ``defocus``: the blur radius ramps to ``defocus_radius`` over 1 s, holds, and returns
      over 1 s at the end of the segment (someone refocuses);
    * ``cover``: within 0.3 s a dark, smooth, slightly textured surface (a hand, a cap) fills
      the view; the AGC then raises the gain, so the covered view is noisy, not black;
    * ``night``: the light falls by ``night_factor`` over 2 s and returns over 2 s at the end;
      below a quarter of the day light the camera goes to night mode: a higher gain cap
      (more noise) and `night_noise_reduction` on (less fine detail).

    Parameters
    ----------
    scene : ndarray, (H, W), float in [0, 1]
        A photograph at least ``size`` + 8 px wide; it is resized to cover the view.
    fps : float
        Frames per second.
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
    photons_at_white, read_noise_e :
        The sensor at unity gain, see `expose`.
    day_max_gain, night_max_gain : float
        The AGC's gain cap in day and night mode; it aims at a mean of 45 % of full scale.
    nr_strength : float
        Night-mode noise-reduction strength (see `night_noise_reduction`).
    sprite : ndarray, (h, w), float in [0, 1], optional
        The moving object; a patch of the scene's own texture, inverted, by default.
    rng : Generator, int or None
        Random source or seed.

    Returns
    -------
    Clip
    """
    rng = np.random.default_rng(rng)
    height, width = size
    pad = 8
    scene = _cover_resize(np.asarray(scene, np.float32), (height + pad, width + 2 * pad))
    duration = timeline[-1][1]
    n = int(round(duration * fps))
    t = np.arange(n) / fps
    radius = np.zeros(n)
    light = np.full(n, float(day_light))
    cover = np.zeros(n)
    segments = []
    for start, end, truth, event in timeline:
        if truth not in TRUTHS:
            raise ValueError(f"truth must be one of {TRUTHS}, got {truth!r}")
        segments.append(Segment(float(start), float(end), truth, event))
        if event == "defocus":
            radius = np.maximum(radius, defocus_radius * _ramp(t, start, end, 1.0, 1.0))
        elif event == "cover":
            cover = np.maximum(cover, _ramp(t, start, end, 0.3, 0.3))
        elif event == "night":
            # Light falls geometrically (dusk), which is how a log-light sensor sees it.
            depth = _ramp(t, start, end, 2.0, 2.0)
            light = light / night_factor**depth
        elif event != "day":
            raise ValueError(f"unknown event {event!r}")
    night_mode = light < day_light / 4.0

    if sprite is None:
        # A quarter of the height tall, an eighth of the width wide: a person nearby.
        sh, sw = max(height // 4, 1), max(width // 8, 1)
        sy = int(rng.integers(0, scene.shape[0] - sh + 1))
        sx = int(rng.integers(0, scene.shape[1] - sw + 1))
        sprite = 1.0 - scene[sy : sy + sh, sx : sx + sw]
    sprite = np.asarray(sprite, np.float32)
    sprite_y = int(rng.integers(height // 3, max(height - sprite.shape[0], height // 3) + 1))
    sprite = sprite[: height - sprite_y, :width]  # what of it fits in the view
    sh, sw = sprite.shape
    sprite_speed = float(rng.uniform(15.0, 30.0))  # px/s: a walker at this distance
    # The covering hand: dark grey, lit only by what leaks round it, with a faint blotchy
    # texture (it sits far inside the lens's near limit, so only coarse shading survives).
    hand = np.clip(0.12 + 0.02 * _smooth_noise(size, 6.0, rng), 0.0, 1.0)
    hand += 0.01 * _smooth_noise(size, 1.5, rng)  # skin pores, faint and close to the lens
    hand = defocus(hand, 2.0)

    frames: list[np.ndarray] = []
    gains = np.empty(n)
    gain = min(day_max_gain, max(1.0, 0.45 / (day_light * float(scene.mean()))))
    previous: np.ndarray | None = None
    for i in range(n):
        ox = pad + int(round(pad * 0.5 * math.sin(2 * math.pi * t[i] / 20.0)))
        view = scene[:height, ox : ox + width].copy()
        x = int((t[i] * sprite_speed) % (width + sw)) - sw
        x0, x1 = max(x, 0), min(x + sw, width)
        if x1 > x0:
            view[sprite_y : sprite_y + sh, x0:x1] = sprite[:, x0 - x : x1 - x]
        if radius[i] > 0:
            view = defocus(view, float(radius[i]))
        if cover[i] > 0:
            view = (1.0 - cover[i]) * view + cover[i] * hand
        # AGC: aims at 45 % grey, follows within ~1 s (a time constant of fps/2 frames).
        cap = night_max_gain if night_mode[i] else day_max_gain
        target = min(cap, max(1.0, 0.45 / max(light[i] * float(view.mean()), 1e-6)))
        gain += (target - gain) * min(1.0, 2.0 / fps)
        gain = min(gain, cap)
        gains[i] = gain
        frame = expose(
            view,
            light=float(light[i]),
            photons_at_white=photons_at_white,
            read_noise_e=read_noise_e,
            gain=gain,
            bits=8,
            rng=rng,
        )
        if night_mode[i]:
            frame = night_noise_reduction(frame, nr_strength, previous=previous)
            previous = frame
        else:
            previous = None
        frames.append(frame)
    return Clip(frames, float(fps), segments, radius, light, gains, cover, night_mode)


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
