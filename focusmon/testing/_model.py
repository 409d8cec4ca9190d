"""The physical model of a camera, shared by every synthetic source in focusmon.

Scenes are float images in [0, 1] (reflectance), passed in: this module loads nothing.
The chain for one frame is the one a camera applies:

1. `defocus` — a pillbox (disk) point-spread function whose radius grows with the distance
   from focus, as geometric optics gives for a lens out of focus;
2. `expose` — light level, Poisson photon (shot) noise, Gaussian read noise, gain and
   quantisation to 8 or 16 bits;
3. `night_noise_reduction` — the spatial and temporal denoising cameras switch on at night,
   which removes fine detail along with the noise.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

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
