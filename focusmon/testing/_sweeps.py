"""Focus sweeps (microscope z-stacks, lens sweeps) rendered through the camera model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._model import defocus, expose


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
        Blur radius of each frame, in pixels (at the centre of the field).
    light : ndarray
        Illumination of each frame (drift x flicker).
    bits : int
        8 or 16.
    tilt_x, tilt_y : float
        The focal plane's tilt: frames of focus per 100 px to the right and downward
        (focus at pixel (x, y) is ``focus_position + tilt_x * (x - W/2) / 100 + ...``).
    """

    frames: list[np.ndarray]
    focus_index: int
    focus_position: float
    radii: np.ndarray
    light: np.ndarray
    bits: int
    tilt_x: float = 0.0
    tilt_y: float = 0.0


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
    tilt: tuple[float, float] = (0.0, 0.0),
    shake_px: float = 0.0,
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
    tilt : (float, float)
        A tilted slide or sensor: the focal plane's slope, frames of focus per 100 px to
        the right and downward. Each pixel is blurred by its own distance from it (blurs
        at radii 0.25 px apart, blended linearly).
    shake_px : float
        A shaking camera: each frame's image is translated by a random amount, uniform in
        ``±shake_px`` along each axis (sub-pixel amounts shift the band-limited image
        exactly, by its Fourier phase; the borders are mirrored, not wrapped).
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
    if not (np.isfinite(shake_px) and 0 <= shake_px <= SHAKE_MAX_PX):
        raise ValueError(f"`shake_px` must lie in [0, {SHAKE_MAX_PX}], got {shake_px!r}")
    rng = np.random.default_rng(rng)
    k = np.arange(n_frames, dtype=np.float64)
    radii = np.abs(k - focus) * step_px
    ramp = k / (n_frames - 1)
    light = 1.0 - abs(drift) * (ramp if drift >= 0 else 1.0 - ramp)
    if flicker:
        light = light * (1.0 + flicker * rng.uniform(-1.0, 1.0, n_frames))
    scene = np.asarray(image, dtype=np.float32) * exposure
    h, w = scene.shape
    yy, xx = np.mgrid[0:h, 0:w]
    plane = tilt[0] * (xx - w / 2) / 100.0 + tilt[1] * (yy - h / 2) / 100.0
    shifts = rng.uniform(-shake_px, shake_px, (n_frames, 2)) if shake_px else None
    frames = [
        expose(
            _defocused(
                scene if shifts is None else _shifted(scene, *shifts[int(kk)]),
                float(r), np.abs(kk - focus - plane) * step_px if any(tilt) else None,
            ),
            light=float(lv),
            photons_at_white=photons_at_white,
            read_noise_e=read_noise_e,
            bits=bits,
            rng=rng,
        )
        for kk, r, lv in zip(k, radii, light, strict=True)
    ]  # fmt: skip
    return Sweep(frames, int(np.argmin(radii)), float(focus), radii, light, bits, *tilt)


#: `focus_sweep`'s largest shake (px): the mirrored margin the shift is taken in.
SHAKE_MAX_PX = 8.0


def _defocused(scene: np.ndarray, radius: float, radii: np.ndarray | None) -> np.ndarray:
    """``scene`` blurred by ``radius``, or by each pixel's own ``radii`` (a tilt)."""
    return defocus(scene, radius) if radii is None else _tilted_defocus(scene, radii)


def _shifted(scene: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``scene`` translated by (dx, dy) px: a Fourier phase ramp on the mirrored scene (a
    sub-pixel shift without the low-pass of an interpolation), cropped back."""
    margin = int(SHAKE_MAX_PX) + 1
    padded = np.pad(scene, margin, mode="reflect")
    h, w = padded.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    ramp = np.exp(-2j * np.pi * (fx * dx + fy * dy))
    moved = np.fft.irfft2(np.fft.rfft2(padded) * ramp, s=(h, w))
    return moved[margin:-margin, margin:-margin].astype(np.float32)


#: The radii a tilted sweep's blurs are rendered at are this far apart, in pixels.
RADIUS_STEP = 0.25


def _tilted_defocus(scene: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """``scene`` with each pixel blurred by its own ``radius`` (px): blurs at radii
    `RADIUS_STEP` apart, each pixel blended linearly between the two nearest."""
    level = radius / RADIUS_STEP
    lo = np.floor(level).astype(np.int64)
    frac = (level - lo).astype(np.float32)
    out = np.zeros_like(scene)
    for k in range(int(lo.min()), int(lo.max()) + 2):
        near = (lo == k) | (lo + 1 == k)
        if not near.any():
            continue
        blurred = defocus(scene, k * RADIUS_STEP)
        weight = np.where(lo == k, 1.0 - frac, 0.0) + np.where(lo + 1 == k, frac, 0.0)
        out += blurred * weight.astype(np.float32)
    return out
