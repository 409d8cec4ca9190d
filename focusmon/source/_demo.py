"""The built-in synthetic cameras, so ``focusmon score demo`` and ``watch demo`` work on a
fresh machine. Both render through `focusmon.testing`'s camera model."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np

from .._errors import ConfigError
from ..testing import (
    DEMO_TIMELINE,
    defocus,
    demo_camera,
    demo_scene,
    expose,
    night_noise_reduction,
)
from ._base import Source, SourceOptions, SourceState
from ._frame import LumaFrame

#: The demo camera's day lasts this long, then starts again.
CYCLE_S = DEMO_TIMELINE[-1][1]
#: Whole pixels the finite demo clip pans either way.
_PAN_PX = 8


class DemoSource(Source):
    """A synthetic clip: a textured scene that drifts in and out of focus, 25 fps.

    Sharp at t = 0, most blurred (a blur disk of ``max_radius`` px) every ``period_s`` / 2,
    with photon and read noise (`focusmon.testing.expose`).
    """

    def __init__(
        self,
        frames: int = 250,
        size: tuple[int, int] = (640, 360),
        fps: float = 25.0,
        period_s: float = 4.0,
        max_radius: float = 4.0,
        seed: int = 0,
        options: SourceOptions | None = None,
    ) -> None:
        super().__init__(options)
        if frames < 1:
            raise ConfigError(f"`frames` must be >= 1, got {frames}")
        self.name = "demo"
        self.total = frames
        self._fps, self._period_s, self._max_radius = fps, period_s, max_radius
        self._size = size
        self._rng = np.random.default_rng(seed)
        width, height = size
        self._scene = demo_scene((height, width + 2 * _PAN_PX), self._rng)

    def radius_at(self, t: float) -> float:
        """The blur-disk radius (px) of the frame shown at time ``t`` (seconds)."""
        return self._max_radius * (1 - math.cos(2 * math.pi * t / self._period_s)) / 2

    def __iter__(self) -> Iterator[LumaFrame]:
        width, _ = self._size
        self._enter(SourceState.UP)
        for index in range(self.total):
            t = index / self._fps
            self.stats.decoded += 1
            if self.stopping:
                break
            if not self._keep(index, t):
                continue
            dx = _PAN_PX + round(_PAN_PX * math.sin(2 * math.pi * t / 5.0))  # whole pixels
            view = defocus(self._scene[:, dx : dx + width], self.radius_at(t))
            frame = expose(view, photons_at_white=4000.0, rng=self._rng)
            yield LumaFrame(frame, index, t)
        self._enter(SourceState.ENDED)


class DemoCamera(Source):
    """A live synthetic camera for ``focusmon watch demo``: it runs until stopped.

    `focusmon.testing.demo_camera` delivered in real time at ``fps``: a scene with an
    object crossing it and sensor noise. Each minute (`DEMO_TIMELINE`) its lens is knocked
    out of focus and set right, a hand covers it, and night falls — so every alert state
    shows within a minute.

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
        width, height = size
        self._camera = demo_camera((height, width), fps, seed)
        # OpenCV starts its worker threads at its first parallel filter, which here is the
        # first night's noise reduction, 42 s in. Start them now: a service's thread count
        # is then steady from the start, as a soak or an operator expects.
        night_noise_reduction(np.zeros((height, width), np.uint8))

    @staticmethod
    def event_at(t: float) -> str:
        """What the camera shows at ``t`` seconds: day, defocus, cover or night."""
        phase = t % CYCLE_S
        return next(event for start, end, _, event in DEMO_TIMELINE if start <= phase < end)

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
                frame = self._camera.render(t)
                now = self._clock()
                self.stats.decoded += 1
                self.stats.last_frame_at = now
                if self._keep(index, t):
                    yield LumaFrame(frame, index, t, 1.0, 0.0, now)
                index += 1
        finally:
            self._enter(SourceState.ENDED)
