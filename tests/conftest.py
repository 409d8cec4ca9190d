"""Shared fixtures: test images and media, made here or taken from scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data


def photo(name: str = "camera") -> np.ndarray:
    """A scikit-image photograph as 8-bit gray."""
    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    return photo("camera")


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    # Not "moon": it is pixel-doubled, so its Haar detail energy is exactly 0.
    names = ("camera", "astronaut", "coins", "text", "brick", "immunohistochemistry")
    return [photo(n) for n in names]
