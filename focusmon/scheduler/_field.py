"""The focus across the field: each tile's peak in a focus sweep, and the plane (tilt) and
bowl (curvature) through them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..kernels import FocusMap
from ._peak import AUTO, find_peak
from ._tiles import SATURATED_TILE

#: Distances are in units of this many pixels: a tilt is per 100 px, a curvature per
#: (100 px)^2.
SPAN = 100.0


@dataclass(frozen=True)
class FieldFit:
    """Where each tile of a focus sweep is sharpest, and the surface through those places.

    Attributes
    ----------
    positions : list of list of float or None
        Each tile's peak position, in frames of the sweep (as `Peak.position`); rows of
        tiles. None for a tile more than half saturated in some frame (`SATURATED_TILE`):
        clipped highlights skew a focus curve, so such a tile is left out of the fit.
    centres : list of list of (float, float)
        Each tile's centre, (x, y) in pixels of the frame (or ROI).
    tilt_x, tilt_y : float or None
        The plane's slope: frames of focus per 100 px to the right and downward (None
        along an axis with one tile, or with fewer than three tiles).
    curvature : float or None
        The bowl's: frames of focus per (100 px)^2 of distance from the centre of the
        field, positive where the edges focus later in the sweep than the middle (None
        with fewer than four tiles, or tiles all in one row or column).
    residual : float
        The fit's root mean square residual, in frames.
    measure : str
        The measure the tiles' peaks were found with.
    """

    positions: list[list[float | None]]
    centres: list[list[tuple[float, float]]]
    tilt_x: float | None
    tilt_y: float | None
    curvature: float | None
    residual: float
    measure: str

    @property
    def tilt(self) -> float | None:
        """The steepest slope: frames of focus per 100 px (along the one axis the grid
        has more than one tile on, for a single row or column)."""
        if self.tilt_x is None and self.tilt_y is None:
            return None
        return math.hypot(self.tilt_x or 0.0, self.tilt_y or 0.0)

    def as_dict(self, z_step: float | None = None) -> dict[str, object]:
        """JSON-ready; with ``z_step`` (focus units, e.g. µm, per frame of the sweep) the
        tilt and curvature are also given in those units, the tilt across the field."""
        out: dict[str, object] = {
            "measure": self.measure, "positions": self.positions,
            "tilt_x_per_100px": self.tilt_x, "tilt_y_per_100px": self.tilt_y,
            "tilt_per_100px": self.tilt, "curvature_per_100px2": self.curvature,
            "residual": self.residual,
        }  # fmt: skip
        if z_step is not None:
            xs = [x for row in self.centres for x, _ in row]
            ys = [y for row in self.centres for _, y in row]
            width, height = max(xs) - min(xs), max(ys) - min(ys)
            out["z_step"] = z_step
            # From the first tile centre to the last, along each axis.
            if self.tilt_x is not None:
                out["tilt_x_across"] = self.tilt_x * width / SPAN * z_step
            if self.tilt_y is not None:
                out["tilt_y_across"] = self.tilt_y * height / SPAN * z_step
            if self.curvature is not None:
                corner = ((width / 2) ** 2 + (height / 2) ** 2) / SPAN**2
                out["curvature_corner"] = self.curvature * corner * z_step
        return out


def fit_field(maps: Sequence[FocusMap], *, measure: str = AUTO) -> FieldFit:
    """Each tile's peak over a focus sweep of focus maps (one per frame, in sweep order,
    all on the same grid), and the least-squares plane and bowl through them:
    ``position = p0 + tilt_x * dx + tilt_y * dy + curvature * (dx^2 + dy^2)``, dx and dy
    in units of 100 px from the field's centre.

    ``measure`` is as for `find_peak`; ``auto`` is resolved once, on the whole frames, so
    every tile is judged by the same measure.

    Raises
    ------
    ValueError
        If ``maps`` is empty or its grids differ.
    """
    if not maps:
        raise ValueError("`maps` is empty: a sweep needs at least one frame")
    ys, xs = maps[0].ys, maps[0].xs
    if any((m.ys, m.xs) != (ys, xs) for m in maps):
        raise ValueError("every focus map of a sweep must have the same grid")
    measure = find_peak([m.frame for m in maps], measure=measure).measure
    rows, cols = len(ys) - 1, len(xs) - 1
    positions: list[list[float | None]] = [
        [
            None
            if max(float(m.tiles[r][c].saturated) for m in maps) > SATURATED_TILE
            else find_peak([m.tiles[r][c] for m in maps], measure=measure).position
            for c in range(cols)
        ]
        for r in range(rows)
    ]
    centres = [
        [((xs[c] + xs[c + 1]) / 2, (ys[r] + ys[r + 1]) / 2) for c in range(cols)]
        for r in range(rows)
    ]
    tilt_x, tilt_y, curvature, residual = _surface(positions, centres, xs[-1], ys[-1])
    return FieldFit(positions, centres, tilt_x, tilt_y, curvature, residual, measure)


def _surface(positions, centres, width: float, height: float):
    """(tilt_x, tilt_y, curvature, rms residual) of the least-squares fit, over the tiles
    with a position."""
    pairs = [(v, c) for prow, crow in zip(positions, centres, strict=True)
             for v, c in zip(prow, crow, strict=True) if v is not None]  # fmt: skip
    p = np.array([v for v, _ in pairs], np.float64)
    dx = np.array([x for _, (x, _) in pairs], np.float64) - width / 2
    dy = np.array([y for _, (_, y) in pairs], np.float64) - height / 2
    if p.size == 0:  # every tile saturated
        return None, None, None, 0.0
    dx, dy = dx / SPAN, dy / SPAN
    columns = [np.ones_like(p)]
    varies_x, varies_y = np.ptp(dx) > 0, np.ptp(dy) > 0
    if varies_x:
        columns.append(dx)
    if varies_y:
        columns.append(dy)
    bowl = p.size >= 4 and varies_x and varies_y
    if bowl:
        columns.append(dx * dx + dy * dy)
    a = np.stack(columns, axis=1)
    if p.size < 3 or p.size < a.shape[1]:
        return None, None, None, 0.0
    coef, *_ = np.linalg.lstsq(a, p, rcond=None)
    residual = float(np.sqrt(np.mean((a @ coef - p) ** 2)))
    rest = iter(coef[1:].tolist())
    tilt_x = next(rest) if varies_x else None
    tilt_y = next(rest) if varies_y else None
    curvature = next(rest) if bowl else None
    return tilt_x, tilt_y, curvature, residual
