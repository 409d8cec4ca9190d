"""The score record and the one place where raw sums become scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Measure:
    """What every room needs to know of one measure of `FocusScores`.

    Attributes
    ----------
    name : str
        The field of `FocusScores` (and the key of ``focusmon score``'s JSON lines).
    power : int
        How the value scales with the light: a lamp k times brighter multiplies it by
        ``k**power`` (2 for energies and variances, 1 for magnitudes and the mean). The
        scheduler divides a sharpness measure by ``mean**power`` to cancel the light.
    sharpness : bool
        A focus measure that decisions compare; False for the light statistics.
    metric : str
        Its Prometheus gauge.
    help : str
        One line for the gauge's HELP and the docs.
    """

    name: str
    power: int
    sharpness: bool
    metric: str
    help: str


#: Every measure the kernels compute, in `FocusScores`' order: the one table the scheduler,
#: the metrics and the ring read. Values are in 8-bit full-range grey levels (squared for
#: variances and energies) whatever the source.
MEASURE_TABLE: Mapping[str, Measure] = MappingProxyType({
    m.name: m
    for m in (
        Measure("laplacian_var", 2, True, "focusmon_laplacian_variance",
                "Variance of the 4-neighbour Laplacian"),
        Measure("tenengrad", 2, True, "focusmon_tenengrad",
                "Mean squared Sobel gradient magnitude"),
        Measure("sobel_mean", 1, True, "focusmon_sobel_magnitude_mean",
                "Mean Sobel gradient magnitude"),
        Measure("haar_energy", 2, True, "focusmon_haar_energy",
                "Haar wavelet detail energy per coefficient"),
        Measure("mean", 1, False, "focusmon_luma_mean", "Mean luma"),
        Measure("std", 1, False, "focusmon_luma_std",
                "Standard deviation of the luma (contrast)"),
        Measure("saturated", 0, False, "focusmon_saturated_ratio",
                "Share of the samples at the top of the range (saturated)"),
    )
})  # fmt: skip
#: The measures' names, in `FocusScores`' order.
MEASURES = tuple(MEASURE_TABLE)
#: The fields of `FocusScores` after the measures: the finest detail's energy by direction,
#: which the scheduler reads (a blur's kind) but no gauge shows.
DIRECTIONS = ("detail_x", "detail_y", "detail_xy")


@dataclass(frozen=True, slots=True)
class FocusScores:
    """The focus measures of one luma frame, in 8-bit full-range grey levels.

    Attributes
    ----------
    laplacian_var : float
        Population variance of the 4-neighbour Laplacian (OpenCV's default border).
    tenengrad : float
        Mean of ``gx**2 + gy**2`` of the 3x3 Sobel gradients.
    sobel_mean : float
        Mean of ``sqrt(gx**2 + gy**2)``.
    haar_energy : float
        One-level Haar DWT detail energy per LL coefficient.
    mean, std : float
        Mean and population standard deviation of the luma.
    saturated : float
        Share of the samples at the top of the range (`saturation_level`): clipped
        highlights, which carry no focus information.
    detail_x, detail_y, detail_xy : float
        The finest gradients' energy by direction, per LL coefficient: of the Haar
        coefficients ``dx = (a + c - b - d) / 2`` (left minus right of each 2x2 block)
        and ``dy = (a + b - c - d) / 2`` (top minus bottom), ``mean(dx**2)``,
        ``mean(dy**2)`` and ``mean(dx * dy)``: the structure tensor of the finest detail.
        A blur along one direction takes the detail across it; a defocus takes it all.
    """

    laplacian_var: float
    tenengrad: float
    sobel_mean: float
    haar_energy: float
    mean: float
    std: float
    saturated: float = 0.0
    detail_x: float = 0.0
    detail_y: float = 0.0
    detail_xy: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The measures by name, in the order of `MEASURES`, then the direction energies."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RawSums:
    """What a fused kernel accumulates in its one pass over a frame.

    All sums are exact integers (the stencils are integer for integer input), except
    ``sum_mag``, the sum of the gradient magnitudes. A kernel's integer outputs are, in
    this order, `INT_SUMS`.
    """

    n_px: int
    sum_g: int
    sum_g2: int
    sum_lap: int
    sum_lap2: int
    sum_grad2: int
    sum_mag: float
    n_ll: int
    sum_haar4: int  # 4 x the summed detail energy: (a+b-c-d)^2 + (a-b+c-d)^2 + (a-b-c+d)^2
    sum_dx4: int = 0  # sum of (a-b+c-d)^2: 4 x dx^2 (a, b the block's top row, c, d below)
    sum_dy4: int = 0  # sum of (a+b-c-d)^2: 4 x dy^2
    sum_dxdy4: int = 0  # sum of (a-b+c-d) * (a+b-c-d): 4 x dx * dy
    n_sat: int = 0  # samples >= the saturation level

    @classmethod
    def of_kernel(cls, shape: tuple[int, int], ints: list[int], sum_mag: float) -> RawSums:
        """From a kernel's output: the int sums in the order of `INT_SUMS`, and the
        magnitude sum, for a frame of ``shape``."""
        h, w = shape
        g, g2, lap, lap2, grad2, haar4, dx4, dy4, dxdy4, sat = (int(v) for v in ints)
        return cls(
            h * w, g, g2, lap, lap2, grad2, float(sum_mag), ((h + 1) // 2) * ((w + 1) // 2),
            haar4, dx4, dy4, dxdy4, sat,
        )  # fmt: skip

    @classmethod
    def total(cls, parts: Sequence[RawSums]) -> RawSums:
        """The sums of a frame from those of the parts it is cut into (its tiles)."""
        fields = tuple(cls.__dataclass_fields__)
        return cls(*map(sum, zip(*(tuple(map(p.__getattribute__, fields)) for p in parts),
                                 strict=True)))  # fmt: skip


#: A kernel's integer sums, in the order it outputs them (`RawSums.of_kernel`).
INT_SUMS = ("sum_g", "sum_g2", "sum_lap", "sum_lap2", "sum_grad2", "sum_haar4", "sum_dx4",
            "sum_dy4", "sum_dxdy4", "n_sat")  # fmt: skip


@dataclass(frozen=True)
class FocusMap:
    """A frame's measures and those of each tile of a grid over it, from the same pass.

    A tile's measures are those of its pixels' stencils in the whole frame (the frame's
    borders as for `FocusScores`; a tile's edge pixels see their neighbours across it), so
    the tiles' exact sums add up to the frame's. The edges are even, so each Haar 2x2
    block lies in one tile.

    Attributes
    ----------
    frame : FocusScores
        The whole frame (or ROI): what `Backend.scores` returns.
    tiles : tuple of tuple of FocusScores
        ``tiles[r][c]``: the tile of rows ``ys[r]:ys[r+1]``, columns ``xs[c]:xs[c+1]``.
    ys, xs : tuple of int
        The tiles' edges, in pixels of the frame (or ROI): ``rows + 1`` and ``cols + 1``.
    """

    frame: FocusScores
    tiles: tuple[tuple[FocusScores, ...], ...]
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return len(self.ys) - 1, len(self.xs) - 1

    def values(self, measure: str) -> list[list[float]]:
        """One measure of every tile, ``rows`` lists of ``cols`` values."""
        return [[getattr(tile, measure) for tile in row] for row in self.tiles]

    def as_dict(self) -> dict[str, object]:
        """``{"grid": [rows, cols], "ys": [...], "xs": [...], MEASURE: [[...], ...], ...}``."""
        out: dict[str, object] = {"grid": list(self.grid), "ys": list(self.ys),
                                  "xs": list(self.xs)}  # fmt: skip
        for name in MEASURES:
            out[name] = self.values(name)
        return out

    @classmethod
    def of_sums(cls, parts: Sequence[Sequence[RawSums]], ys: Sequence[int],
                xs: Sequence[int]) -> FocusMap:  # fmt: skip
        """From the exact sums of each tile (rows of tiles)."""
        flat = [p for row in parts for p in row]
        tiles = tuple(tuple(finish(p) for p in row) for row in parts)
        return cls(finish(RawSums.total(flat)), tiles, tuple(map(int, ys)), tuple(map(int, xs)))

    def rescaled(self, scale: float, offset: float) -> FocusMap:
        """In units of ``(v - offset) * scale`` (see `rescale`)."""
        if scale == 1.0 and offset == 0.0:
            return self
        tiles = tuple(tuple(rescale(t, scale, offset) for t in row) for row in self.tiles)
        return FocusMap(rescale(self.frame, scale, offset), tiles, self.ys, self.xs)


def finish(sums: RawSums) -> FocusScores:
    """Turn a frame's raw sums into scores, in the frame's own sample units.

    Variances are formed from the exact integer sums with Python integers, so there is no
    cancellation: a flat frame gives exactly 0.
    """
    n = sums.n_px
    return FocusScores(
        laplacian_var=(n * sums.sum_lap2 - sums.sum_lap**2) / (n * n),
        tenengrad=sums.sum_grad2 / n,
        sobel_mean=sums.sum_mag / n,
        haar_energy=sums.sum_haar4 / (4 * sums.n_ll),
        mean=sums.sum_g / n,
        std=math.sqrt((n * sums.sum_g2 - sums.sum_g**2) / (n * n)),
        saturated=sums.n_sat / n,
        detail_x=sums.sum_dx4 / (4 * sums.n_ll),
        detail_y=sums.sum_dy4 / (4 * sums.n_ll),
        detail_xy=sums.sum_dxdy4 / (4 * sums.n_ll),
    )


def rescale(scores: FocusScores, scale: float, offset: float) -> FocusScores:
    """Express scores of samples ``v`` in units of ``(v - offset) * scale``.

    Variances and energies scale by ``scale**2``, magnitudes by ``scale``; only the mean
    moves with ``offset``. This is how limited-range and 10/12/16-bit frames are reported
    in 8-bit full-range grey levels.
    """
    if scale == 1.0 and offset == 0.0:
        return scores
    s2 = scale * scale
    return FocusScores(
        laplacian_var=scores.laplacian_var * s2,
        tenengrad=scores.tenengrad * s2,
        sobel_mean=scores.sobel_mean * scale,
        haar_energy=scores.haar_energy * s2,
        mean=(scores.mean - offset) * scale,
        std=scores.std * scale,
        saturated=scores.saturated,
        detail_x=scores.detail_x * s2,
        detail_y=scores.detail_y * s2,
        detail_xy=scores.detail_xy * s2,
    )
