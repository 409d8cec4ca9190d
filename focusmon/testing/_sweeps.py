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
