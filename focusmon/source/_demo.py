"""The built-in synthetic camera, so ``focusmon score demo`` works on a fresh machine."""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from .._errors import ConfigError
from ._base import Source, SourceOptions, SourceState
from ._frame import LumaFrame


class DemoSource(Source):
    """A synthetic camera: a textured scene that drifts in and out of focus, 25 fps.

    Rendered, not loaded, so ``focusmon score demo`` works on a fresh machine. Sharp at
    t = 0, most blurred (Gaussian sigma ``max_sigma``) every ``period_s`` / 2.
    """

    def __init__(
        self,
        frames: int = 250,
        size: tuple[int, int] = (640, 360),
        fps: float = 25.0,
        period_s: float = 4.0,
        max_sigma: float = 4.0,
        seed: int = 0,
        options: SourceOptions | None = None,
    ) -> None:
        super().__init__(options)
        if frames < 1:
            raise ConfigError(f"`frames` must be >= 1, got {frames}")
        self.name = "demo"
        self.total = frames
        self._fps, self._period_s, self._max_sigma = fps, period_s, max_sigma
        self._rng = np.random.default_rng(seed)
        self._scene = _render_scene(size, self._rng)

    def sigma_at(self, t: float) -> float:
        """The blur of the frame shown at time ``t`` (seconds)."""
        return self._max_sigma * (1 - math.cos(2 * math.pi * t / self._period_s)) / 2

    def __iter__(self) -> Iterator[LumaFrame]:
        height, width = self._scene.shape
        self._enter(SourceState.UP)
        for index in range(self.total):
            t = index / self._fps
            self.stats.decoded += 1
            if self.stopping:
                break
            if not self._keep(index, t):
                continue
            dx = round(8 * math.sin(2 * math.pi * t / 5.0))  # whole-pixel pan: no resampling blur
            shift = np.float32([[1, 0, dx], [0, 1, 0]])
            frame = cv2.warpAffine(
                self._scene, shift, (width, height), borderMode=cv2.BORDER_REFLECT_101
            )
            sigma = self.sigma_at(t)
            if sigma > 0.05:
                frame = cv2.GaussianBlur(frame, (0, 0), sigma)
            noise = self._rng.normal(0.0, 2.0, frame.shape)
            frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
            yield LumaFrame(frame, index, t)
        self._enter(SourceState.ENDED)


def _render_scene(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    scene = np.full((height, width), 110, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        color = int(rng.integers(20, 235))
        if rng.random() < 0.5:
            w, h = int(rng.integers(10, width // 4)), int(rng.integers(10, height // 4))
            cv2.rectangle(scene, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(scene, (x, y), int(rng.integers(5, height // 6)), color, -1)
    for row in range(0, height, 40):
        text = "focusmon 0123456789"
        cv2.putText(scene, text, (10, row + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 240, 2)
        cv2.putText(scene, text, (12, row + 32), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 15, 1)
    return scene
