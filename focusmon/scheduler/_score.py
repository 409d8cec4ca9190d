"""The one documented function that turns a frame's measures into the score decisions use."""

from __future__ import annotations

import math

from ..kernels import MEASURE_TABLE, FocusScores

#: The sharpness measures derived here from the kernels' (see `normalised_sharpness`):
#: Tenengrad and the variance with their white-noise power cancelled, and how each scales
#: with the light (as `focusmon.kernels.Measure.power`).
DERIVED_POWER = {"tenengrad_nc": 2, "variance_nc": 2}
#: Every measure a decision can compare, and its light power: the kernels' sharpness
#: measures (their table) and the derived ones.
POWER = {m.name: m.power for m in MEASURE_TABLE.values() if m.sharpness} | DERIVED_POWER
SHARPNESS = tuple(sorted(POWER))

#: White noise of variance s² adds 24 s² to Tenengrad (the Sobel pair's squared weights
#: sum to 2 x 12) and 20 s² to the Laplacian's variance (16 + 4 x 1): this multiple of the
#: one cancels the noise in the other.
NOISE_RATIO = 24.0 / 20.0
#: The same for the variance, to which white noise adds s² itself.
VARIANCE_NOISE_RATIO = 1.0 / 20.0

#: Below this mean grey level (8-bit units) a frame is black: every score is 0 there.
BLACK = 0.5


def normalised_sharpness(scores: FocusScores, measure: str = "tenengrad") -> float:
    """A sharpness that does not change when the light does.

    A lamp that drifts or flickers multiplies every grey level by some k: the squared
    measures scale by k², `sobel_mean` by k, and the mean by k. Dividing by the mean's
    matching power cancels k, so the score follows focus only.

    Parameters
    ----------
    scores : FocusScores
        A frame's measures (8-bit full-range units).
    measure : str
        One of ``laplacian_var``, ``tenengrad``, ``sobel_mean``, ``haar_energy``;
        ``tenengrad_nc``: ``tenengrad - 1.2 * laplacian_var``; or ``variance_nc``:
        ``std**2 - laplacian_var / 20``. The last two are noise-compensated.

    Returns
    -------
    float
        ``measure / mean**2`` (``/ mean`` for ``sobel_mean``); 0.0 for a black frame, never
        NaN or infinite.

    Notes
    -----
    Noise looks like sharpness: sensor noise of variance s² adds 24 s² to Tenengrad and
    20 s² to the Laplacian variance whatever the focus, and under a low, flickering light
    that offset (∝ 1/mean after normalisation, for photon noise) moves from frame to frame
    more than focus does. ``tenengrad_nc`` subtracts 1.2 x the Laplacian variance, which
    cancels the white-noise power exactly while keeping the low and middle frequencies that
    defocus removes. On simulated low-light, flickering sweeps it found the in-focus frame
    (±1) in every case where plain normalised Tenengrad did in about half.

    ``variance_nc`` cancels the noise the same way in the variance, whose weight is flat
    over all frequencies: the difference weights the low frequencies, where a dim scene's
    detail still stands above the photon noise when the fine detail that Tenengrad sees
    has sunk into it (see `find_peak`).

    The normalisation is Groen, Young and Ligthart's "energy normalisation" of focus
    functions (Cytometry 6, 1985), where it is the property that made autofocus robust to
    illumination changes.
    """
    power = POWER.get(measure)
    if power is None:
        raise ValueError(f"`measure` must be one of {', '.join(SHARPNESS)}, got {measure!r}")
    mean = float(scores.mean)
    if measure == "tenengrad_nc":
        value = float(scores.tenengrad) - NOISE_RATIO * float(scores.laplacian_var)
    elif measure == "variance_nc":
        std = float(scores.std)
        value = std * std - VARIANCE_NOISE_RATIO * float(scores.laplacian_var)
    else:
        value = float(getattr(scores, measure))
    if not (math.isfinite(mean) and math.isfinite(value)) or mean < BLACK:
        return 0.0
    return value / (mean * mean if power == 2 else mean)
