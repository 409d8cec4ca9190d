"""The demo camera's scene and day: what ``focusmon score demo`` and ``watch demo`` show."""

from __future__ import annotations

import cv2
import numpy as np

from ._surveillance import SurveillanceCamera

#: The demo camera's minute, repeated: (start s, end s, truth, event), as `surveillance_clip`
#: takes it. Every alert state shows within it.
DEMO_TIMELINE: tuple[tuple[float, float, str, str], ...] = (
    (0.0, 15.0, "ok", "day"),
    (15.0, 23.0, "blurred", "defocus"),
    (23.0, 30.0, "ok", "day"),
    (30.0, 36.0, "obstructed", "cover"),
    (36.0, 42.0, "ok", "day"),
    (42.0, 52.0, "dark", "night"),
    (52.0, 60.0, "ok", "day"),
)


def demo_scene(size: tuple[int, int], rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A rendered scene of ``size`` (height, width): shapes and lines of text on grey, as
    reflectance in [0, 1] (float32). Rendered, not loaded, so the demo needs no file."""
    rng = np.random.default_rng(rng)
    height, width = size
    scene = np.full((height, width), 110, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        color = int(rng.integers(20, 235))
        if rng.random() < 0.5:
            w, h = int(rng.integers(10, width // 4)), int(rng.integers(10, height // 4))
            cv2.rectangle(scene, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(scene, (x, y), int(rng.integers(5, max(height // 6, 6))), color, -1)
    for row in range(0, height, 40):
        text = "focusmon 0123456789"
        cv2.putText(scene, text, (10, row + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 240, 2)
        cv2.putText(scene, text, (12, row + 32), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 15, 1)
    return scene.astype(np.float32) / 255.0


def demo_camera(
    size: tuple[int, int] = (360, 640), fps: float = 25.0, seed: int | None = 0
) -> SurveillanceCamera:
    """The demo camera: `demo_scene` through the camera model, its `DEMO_TIMELINE` for ever.

    Its night is a real night (no gain to lift it: `dark`), its knocked lens a 4 px blur
    disk and its cover a hand over the lens, so each of ``watch``'s states shows each
    minute.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    scene = demo_scene((height + 8, width + 16), rng)
    return SurveillanceCamera(
        scene, fps=fps, size=size, timeline=DEMO_TIMELINE, repeat=True, night_factor=32.0,
        night_max_gain=1.0, defocus_radius=4.0, rng=rng,
    )  # fmt: skip
