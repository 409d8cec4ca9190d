"""A simulated microscope: a focus drive and a camera over a real micrograph.

For autofocus tests, the benchmark and ``focusmon autofocus --simulate``. Built on the
camera model (`defocus`, `expose`: disk defocus, photon and read noise).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from ._model import defocus, expose

SPECIMEN = Path(__file__).with_name("data") / "specimen.png"


@functools.lru_cache(maxsize=1)
def specimen() -> np.ndarray:
    """The bundled micrograph (256x256, IHC-stained tissue) as float32 in [0, 1]."""
    image = cv2.imread(str(SPECIMEN), cv2.IMREAD_GRAYSCALE)
    if image is None:  # pragma: no cover (a broken install)
        raise FileNotFoundError(f"the bundled specimen is missing: {SPECIMEN}")
    image = image.astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


class SimulatedMicroscope:
    """A microscope for autofocus tests: a `focusmon.autofocus.Stage` and `Camera` in one.

    The specimen (a float image in [0, 1]) is in focus at ``z_focus_um``; the blur-disk
    radius grows by ``blur_px_per_um`` per micrometre of defocus. Each snap is exposed with
    photon and read noise under a lamp that flickers by ``flicker`` (relative, uniform) and
    drifts by ``lamp_drift`` per snap, while the focal plane drifts by ``drift_um`` per
    snap (thermal drift in a time-lapse). The focus drive has ``backlash_um`` of play:
    the real position lags the commanded one by that much after a change of direction.
    """

    def __init__(
        self,
        specimen: np.ndarray,
        *,
        z_focus_um: float = 0.0,
        blur_px_per_um: float = 1.0,
        photons_at_white: float = 2000.0,
        read_noise_e: float = 2.0,
        bits: int = 16,
        flicker: float = 0.0,
        lamp_drift: float = 0.0,
        drift_um: float = 0.0,
        backlash_um: float = 0.0,
        z_start_um: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        self.specimen = np.asarray(specimen, np.float32)
        self.z_focus_um = float(z_focus_um)
        self.blur_px_per_um = blur_px_per_um
        self.photons_at_white, self.read_noise_e, self.bits = photons_at_white, read_noise_e, bits
        self.flicker, self.lamp_drift, self.drift_um = flicker, lamp_drift, drift_um
        self.backlash_um = backlash_um
        self._commanded = self._actual = float(z_start_um)
        self._rng = np.random.default_rng(seed)
        self._lamp = 1.0
        self.snaps = 0
        self.moves = 0
        self.history: list[float] = []  # every commanded position, for tests

    # Stage
    def move_to(self, z_um: float) -> None:
        z_um = float(z_um)
        self.history.append(z_um)
        self.moves += 1
        # Backlash: a dead band of `backlash_um`. Driven upward the carriage trails the
        # screw by the play; driven downward it is pushed down with it.
        if z_um > self._commanded:
            self._actual = max(self._actual, z_um - self.backlash_um)
        elif z_um < self._commanded:
            self._actual = min(self._actual, z_um)
        self._commanded = z_um

    def position(self) -> float:
        return self._commanded

    @property
    def actual_um(self) -> float:
        """Where the focus drive really is."""
        return self._actual

    def defocus_um(self) -> float:
        return self._actual - self.z_focus_um

    # Camera
    def snap(self) -> np.ndarray:
        radius = abs(self.defocus_um()) * self.blur_px_per_um
        scene = defocus(self.specimen, radius)
        light = self._lamp * (1.0 + self.flicker * self._rng.uniform(-1.0, 1.0))
        image = expose(
            scene, light=light, photons_at_white=self.photons_at_white,
            read_noise_e=self.read_noise_e, bits=self.bits, rng=self._rng,
        )  # fmt: skip
        self.snaps += 1
        self._lamp *= 1.0 + self.lamp_drift
        self.z_focus_um += self.drift_um
        return image
