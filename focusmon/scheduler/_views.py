"""Whether a camera still looks where it learned to look: a small thumbnail of each frame
against a learned reference, by structural similarity and by the global shift."""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Thumbnails are this many pixels across and down (area averages of the frame).
THUMB_W, THUMB_H = 64, 36
#: SSIM's constants and window, as scikit-image's ``structural_similarity`` has them
#: (uniform 7x7 window, sample covariances), for 8-bit data.
K1, K2, WIN, DATA_RANGE = 0.01, 0.03, 7, 255.0


def thumbnail(luma: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """A frame as a `THUMB_W` x `THUMB_H` thumbnail of area averages, float32, in 8-bit
    grey levels (``(v - offset) * scale``). A large frame is thinned first (every nth
    row and column, n keeping at least 4 x 4 samples per thumbnail pixel): the averages
    change by a grey level or two (1.4 on a photograph at 1080p), the cost by the square
    of n (0.06 ms instead of 0.41 at 1080p)."""
    h, w = luma.shape
    step = max(1, min(h // (4 * THUMB_H), w // (4 * THUMB_W)))
    small = np.ascontiguousarray(luma[::step, ::step]).astype(np.float32)
    thumb = cv2.resize(small, (THUMB_W, THUMB_H), interpolation=cv2.INTER_AREA)
    if scale != 1.0 or offset != 0.0:
        thumb = (thumb - np.float32(offset)) * np.float32(scale)
    return thumb


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The structural similarity of each 7x7 window of two images (8-bit units), as
    scikit-image's ``structural_similarity`` computes it (``win_size=7``, uniform
    weights, sample covariances, ``data_range=255``); its mean over the windows that
    lie wholly inside the images is that function's value."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    n = WIN * WIN
    cov_norm = n / (n - 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.blur(x, (WIN, WIN), borderType=cv2.BORDER_REFLECT)

    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def inner(values: np.ndarray) -> np.ndarray:
    """The windows of an `ssim_map` that lie wholly inside the images."""
    pad = (WIN - 1) // 2
    return values[pad:-pad, pad:-pad]


def matched(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``current`` with its mean and contrast set to the reference's: a change of the
    light (a gain and an offset) is not a change of the view."""
    std = float(current.std())
    if std < 1e-6:
        return np.full_like(current, float(reference.mean()))
    return (current - current.mean()) * (float(reference.std()) / std) + reference.mean()


class ViewWatch:
    """Whether a stream still shows the view it learned, per light level.

    Each light level (the tracker's) learns a reference thumbnail: the mean of its first
    ``learn_s`` seconds of judged frames. Then each frame's thumbnail, with its mean and
    contrast matched to the reference's (`matched`: light is no change of view), is
    compared with it window by window (`ssim_map`); the share of windows below
    `CHANGED_SSIM` is how much of the picture changed, and phase correlation gives the
    whole picture's shift. Moved: most of the picture changed (``moved_share``, then 3/4
    of it to stay changed), or the whole of it shifted by a thumbnail pixel or more, for
    ``moved_s`` — people and cars crossing change a part, for a while. After
    ``relearn_s`` of the new view it becomes the reference (`relearned` is set), and the
    stream is no longer moved.
    """

    #: A window this dissimilar to the reference's has changed.
    CHANGED_SSIM = 0.5
    #: A phase correlation peak this strong is a shift of the whole picture (a scene of
    #: little texture, a rocket against the sky, gives 0.13 to 0.18 when turned; people
    #: crossing move no peak off 0; the dwell takes care of what is brief).
    SHIFT_RESPONSE = 0.1

    def __init__(
        self, moved_share: float = 0.6, moved_s: float = 10.0, relearn_s: float = 300.0,
        learn_s: float = 3.0,
    ) -> None:  # fmt: skip
        self.moved_share, self.moved_s, self.relearn_s = moved_share, moved_s, relearn_s
        self.learn_s = learn_s
        self._references: dict[int, np.ndarray] = {}
        self._learning: dict[int, list[np.ndarray]] = {}
        self._learned_s: dict[int, float] = {}
        self._moved_since: float | None = None
        self.changed = 0.0  # the last frame's share of changed windows
        self.shift = (0.0, 0.0)  # and its shift, in thumbnail pixels (x, y)
        self.relearned = False  # the last update took a new reference

    def update(self, thumb: np.ndarray, level: int, time_s: float, dt: float) -> bool:
        """Take one judged frame's thumbnail at light ``level``; whether it is moved."""
        self.relearned = False
        reference = self._references.get(level)
        if reference is None:
            self._learn(thumb, level, dt)
            self._moved_since = None
            return False
        cur = matched(thumb.astype(np.float64), reference)
        self.changed = float(np.mean(inner(ssim_map(cur, reference)) < self.CHANGED_SSIM))
        window = cv2.createHanningWindow((THUMB_W, THUMB_H), cv2.CV_64F)
        (dx, dy), response = cv2.phaseCorrelate(reference, cur, window)
        self.shift = (float(dx), float(dy)) if response >= self.SHIFT_RESPONSE else (0.0, 0.0)
        shifted = math.hypot(*self.shift) >= 1.0
        # Hysteresis: a view found changed stays so down to 3/4 of the share (a frame or
        # two of a weak phase correlation peak must not start the wait again).
        share = self.moved_share * (0.75 if self._moved_since is not None else 1.0)
        if self.changed < share and not shifted:
            self._moved_since = None
            return False
        if self._moved_since is None:
            self._moved_since = time_s
        held = time_s - self._moved_since
        if self.relearn_s > 0 and held >= self.relearn_s:
            self._references[level] = thumb.astype(np.float64)  # the new view is the view
            self._moved_since, self.relearned = None, True
            return False
        return held >= self.moved_s

    def _learn(self, thumb: np.ndarray, level: int, dt: float) -> None:
        frames = self._learning.setdefault(level, [])
        frames.append(thumb.astype(np.float64))
        self._learned_s[level] = self._learned_s.get(level, 0.0) + dt
        if self._learned_s[level] >= self.learn_s and len(frames) >= 3:
            self._references[level] = np.mean(frames, axis=0)
            del self._learning[level], self._learned_s[level]
