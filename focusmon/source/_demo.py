"""The built-in synthetic camera, so ``focusmon score demo`` works on a fresh machine."""

from __future__ import annotations

import math
import time
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


#: The demo camera's day: (start second, what happens) over one cycle of `CYCLE_S`.
SCHEDULE = (
    (0.0, "ok"), (15.0, "defocus"), (23.0, "ok"), (30.0, "cover"), (36.0, "ok"),
    (42.0, "night"), (52.0, "ok"),
)  # fmt: skip
CYCLE_S = 60.0


class DemoCamera(Source):
    """A live synthetic camera for ``focusmon watch demo``: it runs until stopped.

    A rendered scene with objects moving across it and sensor noise, delivered in real
    time at ``fps``. Each minute (`SCHEDULE`) its lens drifts out of focus and back, a hand
    covers it, and the lights go off — so every alert state shows within a minute.

    ``clock`` and ``sleep`` are injectable so that tests need not wait in real time.
    """

    live = True

    def __init__(
        self,
        size: tuple[int, int] = (640, 360),
        fps: float = 25.0,
        seed: int = 0,
        options: SourceOptions | None = None,
        *,
        clock=None,
        sleep=None,
    ) -> None:
        super().__init__(options, clock=clock or time.monotonic)
        self.name = "demo"
        self._fps = fps
        self._sleep = sleep or self._stop.wait
        self._rng = np.random.default_rng(seed)
        self._scene = _render_scene(size, self._rng).astype(np.float32)
        height, width = self._scene.shape
        yy, xx = np.mgrid[0:height, 0:width]
        self._cover = (60 + 6 * np.sin(xx / 23.0) * np.cos(yy / 31.0)).astype(np.float32)

    @staticmethod
    def event_at(t: float) -> str:
        """What the camera shows at ``t`` seconds: ok, defocus, cover or night."""
        phase = t % CYCLE_S
        current = SCHEDULE[0][1]
        for start, what in SCHEDULE:
            if phase >= start:
                current = what
        return current

    def __iter__(self) -> Iterator[LumaFrame]:
        start = self._clock()
        self._enter(SourceState.UP)
        index = 0
        try:
            while not self.stopping:
                due = start + index / self._fps
                wait = due - self._clock()
                if wait > 0:
                    self._sleep(wait)
                    if self.stopping:
                        break
                t = index / self._fps
                frame = self._render(t)
                now = self._clock()
                self.stats.decoded += 1
                self.stats.last_frame_at = now
                if self._keep(index, t):
                    yield LumaFrame(frame, index, t, 1.0, 0.0, now)
                index += 1
        finally:
            self._enter(SourceState.ENDED)

    def _render(self, t: float) -> np.ndarray:
        height, width = self._scene.shape
        view = self._scene.copy()
        for k in range(3):  # objects crossing the scene
            x = int((t * (40 + 25 * k) + 200 * k) % (width + 80)) - 40
            y = int(height * (0.25 + 0.25 * k))
            cv2.circle(view, (x, y), 18 + 6 * k, 30.0 + 90 * k, -1)
            cv2.rectangle(view, (x - 6, y - 30), (x + 6, y - 24), 235.0, -1)
        event = self.event_at(t)
        light, noise = 1.0, 2.0
        if event == "defocus":
            into = t % CYCLE_S - 15.0
            sigma = 4.0 * min(into, 1.0, max(23.0 - t % CYCLE_S, 0.0))  # 1 s ramps
            if sigma > 0.05:
                view = cv2.GaussianBlur(view, (0, 0), sigma)
        elif event == "cover":
            view = self._cover.copy()
        elif event == "night":
            light, noise = 0.06, 1.5
        view = view * light + self._rng.normal(0.0, noise, view.shape).astype(np.float32)
        if event == "night":
            view = cv2.GaussianBlur(view, (0, 0), 1.2)  # the camera's noise reduction
        return np.clip(view, 0, 255).astype(np.uint8)
