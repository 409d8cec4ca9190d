"""What the sinks' tests share: a clip that goes out of focus and back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from media import write_video


@pytest.fixture(scope="session")
def defocus_clip(tmp_path_factory, camera):
    """10 fps, 9 s: sharp, then blurred from 4 s to 6 s, then sharp."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(90):
        view = camera[100:340, 100 + i % 20 : 420 + i % 20].astype(np.float64)
        if 40 <= i < 60:
            view = cv2.GaussianBlur(view, (0, 0), 3.0)
        frames.append(np.clip(view + rng.normal(0, 2, view.shape), 0, 255).astype(np.uint8))
    return write_video(tmp_path_factory.mktemp("clip") / "defocus.mkv", frames,
                       pix_fmt="gray", rate=10)  # fmt: skip
