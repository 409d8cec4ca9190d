"""Where and why: which tiles of a picture lost their focus or contrast (`TileWatch`), and
whether a blur is a shake or a defocus (`blur_kind`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import FocusMap, FocusScores
from ._score import POWER, normalised_sharpness

#: A tile whose samples are more than this share saturated is not judged: clipped
#: highlights carry no focus (nor a baseline).
SATURATED_TILE = 0.5
#: Only tiles with at least this share of the median tile's baseline sharpness are judged
#: by their sharpness: a patch of sky or wall is mostly noise, blurred or not.
TEXTURED = 0.5
#: The quantile of a tile's learned values that is its baseline (see `TileBaseline.settle`).
LEARN_QUANTILE = 0.3
#: A judged tile is covered when its contrast falls below this share of its baseline's.
COVERED_CONTRAST = 0.4


@dataclass
class TileBaseline:
    """Each tile's normal sharpness and contrast (relative to the frame's light) at one
    light level, learned with the level's own baseline."""

    sharpness: np.ndarray | None = None  # (rows, cols)
    contrast: np.ndarray | None = None
    samples: list[tuple[np.ndarray, np.ndarray]] | None = None

    def learn(self, sharp: np.ndarray, contrast: np.ndarray) -> None:
        if self.samples is None or (self.samples and self.samples[0][0].shape != sharp.shape):
            self.samples = []
        self.samples.append((sharp, contrast))

    def settle(self) -> None:
        """The lower third of what was learned becomes the baseline: a tile's sharpness
        rises while a person or a car crosses it (more edges, for seconds at a time),
        which must not make the tile's normal look lost once they have gone."""
        if self.samples:
            self.sharpness = np.quantile([s for s, _ in self.samples], LEARN_QUANTILE, axis=0)
            self.contrast = np.quantile([c for _, c in self.samples], LEARN_QUANTILE, axis=0)
        self.samples = None

    def follow(
        self, sharp: np.ndarray, contrast: np.ndarray, alpha: float, keep: np.ndarray
    ) -> None:
        """Follow slow changes of the scene, in the tiles ``keep`` only, keeping the
        baseline at the `LEARN_QUANTILE` of what the tile shows: it steps up by ``q`` of
        ``alpha`` when the tile is above it and down by ``1 - q`` when below, so people
        and cars crossing (more detail, for a while) do not lift it."""
        if self.sharpness is None or self.contrast is None or self.sharpness.shape != sharp.shape:
            return
        q = LEARN_QUANTILE
        for base, now in ((self.sharpness, sharp), (self.contrast, contrast)):
            step = np.where(now < base, q - 1.0, q)
            base *= np.where(keep, np.exp(alpha * step), 1.0)


def tile_values(tiles: FocusMap, measure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tile: sharpness and contrast (std) relative to the whole frame's light (so a
    dark cover over one tile counts, while a dimmer day does not), and the saturated
    share."""
    mean = max(float(tiles.frame.mean), 1e-9)
    power = POWER[measure]
    sharp = np.array(
        [[normalised_sharpness(t, measure) * (float(t.mean) / mean) ** power
          if math.isfinite(float(t.mean)) else 0.0 for t in row] for row in tiles.tiles]
    )  # fmt: skip
    contrast = np.array([[float(t.std) / mean for t in row] for row in tiles.tiles])
    saturated = np.array([[float(t.saturated) for t in row] for row in tiles.tiles])
    return (np.nan_to_num(sharp, nan=0.0, posinf=0.0), np.nan_to_num(contrast, nan=0.0,
            posinf=0.0), saturated)  # fmt: skip


class TileWatch:
    """Which tiles lost their sharpness or contrast against their own baselines, and for
    how long.

    A judged tile (not mostly saturated; judged by sharpness only where its baseline has
    texture, `TEXTURED`) is *blurred* below ``enter_ratio`` x its baseline (and stays so
    until above ``leave_ratio`` x), *covered* below `COVERED_CONTRAST` x its contrast.
    The picture is partly lost (`update` returns True) when some tiles have been lost for
    ``hold_s`` each (a person or a car crossing moves on from tile to tile) and the rest
    of the picture holds: at most half the judged tiles lost, and the others' median at
    or above ``leave_ratio`` of their baselines.
    """

    def __init__(self, enter_ratio: float, leave_ratio: float) -> None:
        self.enter_ratio, self.leave_ratio = enter_ratio, leave_ratio
        self.lost: np.ndarray | None = None  # bool (rows, cols): the tiles lost now
        self.covered: np.ndarray | None = None  # bool: of those, the ones covered
        self.held: np.ndarray | None = None  # bool: lost for hold_s
        self.ratio: np.ndarray | None = None  # each tile's sharpness over its baseline
        self._since: np.ndarray | None = None  # when each lost tile was first lost (NaN)

    def reset(self) -> None:
        self.lost = self.covered = self.held = self._since = self.ratio = None

    def update(
        self,
        base: TileBaseline,
        sharp: np.ndarray,
        contrast: np.ndarray,
        saturated: np.ndarray,
        time_s: float,
        hold_s: float,
    ) -> bool:
        if base.sharpness is None or base.contrast is None or base.sharpness.shape != sharp.shape:
            self.reset()
            return False
        judged = saturated <= SATURATED_TILE
        textured = judged & (base.sharpness >= TEXTURED * np.median(base.sharpness))
        ratio = sharp / np.maximum(base.sharpness, 1e-12)
        self.ratio = np.where(np.isfinite(ratio), ratio, 0.0)
        was = self.lost if self.lost is not None and self.lost.shape == sharp.shape else None
        limit = self.enter_ratio if was is None else np.where(was, self.leave_ratio,
                                                               self.enter_ratio)  # fmt: skip
        blurred = textured & (ratio < limit)
        covered = judged & (base.contrast > 0) & (contrast < COVERED_CONTRAST * base.contrast)
        lost = blurred | covered
        since = self._since if self._since is not None and was is not None else None
        if since is None:
            since = np.full(sharp.shape, np.nan)
        since = np.where(lost, np.where(np.isnan(since), time_s, since), np.nan)
        self.lost, self.covered, self._since = lost, covered, since
        self.held = lost & (time_s - np.nan_to_num(since, nan=time_s) >= hold_s)
        n_judged, n_lost = int(judged.sum()), int(lost.sum())
        if not self.held.any() or n_lost * 2 > n_judged:
            return False
        holding = textured & ~lost
        return bool(holding.any()) and float(np.median(ratio[holding])) >= self.leave_ratio

    def where(self, covered: bool = False) -> list[list[int]]:
        """The tiles lost for ``hold_s`` (of them, the covered ones), as ``[row, col]``."""
        if self.held is None or self.covered is None:
            return []
        tiles = self.held & self.covered if covered else self.held
        return [[int(r), int(c)] for r, c in zip(*np.nonzero(tiles), strict=True)]


def direction_tensor(scores: FocusScores) -> np.ndarray:
    """The finest detail's structure tensor ``[[dx², dx dy], [dx dy, dy²]]`` relative to
    the light (divided by mean²), its white-noise floor taken off: noise adds to dx² and
    dy² what it adds to the diagonal detail, which a blurred picture keeps little else of."""
    mean = float(scores.mean)
    if not (math.isfinite(mean) and mean > 0.5):
        return np.zeros((2, 2))
    diagonal = max(float(scores.haar_energy) - float(scores.detail_x) - float(scores.detail_y),
                   0.0)  # fmt: skip
    xx = max(float(scores.detail_x) - diagonal, 0.0)
    yy = max(float(scores.detail_y) - diagonal, 0.0)
    xy = float(scores.detail_xy)
    tensor = np.array([[xx, xy], [xy, yy]]) / (mean * mean)
    return np.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0)


#: A blur is motion when the direction that kept the most detail kept more than this many
#: times what the direction that kept the least did.
MOTION_RATIO = 2.0


def blur_kind(now: np.ndarray, normal: np.ndarray) -> tuple[str, float] | None:
    """``("motion", angle)`` or ``("defocus", nan)`` from the detail's structure tensor now
    (`direction_tensor`) and the scene's normal one; None if the normal one says too little
    (a scene without detail in some direction).

    The share of detail kept in direction v is ``v' now v / v' normal v``; its extremes
    are the generalised eigenvalues of the pair. A defocus takes detail from every
    direction alike; a shake or a pan takes it along its motion, and keeps it across. The
    angle (degrees, 0 = horizontal, 90 = vertical, in [0, 180)) is the direction that lost
    the most: the motion's.
    """
    (a, b), (_, c) = normal
    (p, q), (_, r) = now
    det = a * c - b * b
    if not (a > 0 and c > 0 and det > 1e-6 * a * c):
        return None
    # det(now - l normal) = det l² - (p c + r a - 2 q b) l + (p r - q²) = 0
    mid = p * c + r * a - 2 * q * b
    disc = max(mid * mid - 4 * det * (p * r - q * q), 0.0)
    low, high = (mid - math.sqrt(disc)) / (2 * det), (mid + math.sqrt(disc)) / (2 * det)
    if high <= 0 or not math.isfinite(high):
        return None
    if high > MOTION_RATIO * max(low, 0.0):
        # (now - low normal) v = 0: v the direction of least detail kept
        vx, vy = -(q - low * b), p - low * a
        if abs(vx) + abs(vy) < 1e-30:
            vx, vy = r - low * c, -(q - low * b)
        angle = math.degrees(math.atan2(vy, vx)) % 180.0
        return "motion", round(angle, 1) % 180.0
    return "defocus", math.nan
