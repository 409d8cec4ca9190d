"""What the pages of a TIFF stack are: their axes (z, channels, time) and the z spacing, from
ImageJ or OME metadata, read by tifffile."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("focusmon.source")

#: The axes a page of a stack can lie along (tifffile's letters): time, z, channel; other
#: letters (a position, an angle) are kept as they come.
_IMAGE_AXES = frozenset("YXS")
_MICRONS = {"micron", "microns", "um", "µm", "micrometer", "micrometre"}
_SCALE_TO_UM = {"nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4}


@dataclass(frozen=True)
class StackLayout:
    """The axes of a stack's pages, in the order the pages are stored (the last changing
    fastest), their sizes, and the z spacing in µm where the metadata says it.

    An ImageJ hyperstack of 11 planes and 2 channels is ``axes="ZC"``, ``shape=(11, 2)``:
    page 1 is z 0 of channel 1, page 2 z 1 of channel 0.
    """

    axes: str
    shape: tuple[int, ...]
    z_step_um: float | None
    source: str  # "imagej" or "ome"

    @property
    def pages(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    def coords(self, page: int) -> dict[str, int]:
        """The page's index along each axis (``{"Z": 3, "C": 1}``)."""
        return dict(zip(self.axes, map(int, np.unravel_index(page, self.shape)), strict=True))


def stack_layout(path: str | Path) -> StackLayout | None:
    """The layout of a multi-page TIFF with ImageJ or OME metadata, or None (no such
    metadata, a single page, not a TIFF, or metadata that does not describe the pages)."""
    try:
        import tifffile
    except ImportError:  # pragma: no cover (a runtime dependency)
        return None
    try:
        with tifffile.TiffFile(str(path)) as tif:
            if not (tif.is_imagej or tif.is_ome):
                return None
            series = tif.series[0]
            pages = len(tif.pages)
            kind = "imagej" if tif.is_imagej else "ome"
            z_step = (
                _imagej_z_um(tif.imagej_metadata) if tif.is_imagej else _ome_z_um(tif.ome_metadata)
            )
            axes, shape = series.axes, tuple(series.shape)
    except Exception as exc:  # a damaged file: its pages are still read as they come
        log.debug("%s: no stack layout: %s", path, exc)
        return None
    page_axes = "".join(a for a in axes if a not in _IMAGE_AXES)
    page_shape = tuple(n for a, n in zip(axes, shape, strict=True) if a not in _IMAGE_AXES)
    layout = StackLayout(page_axes, page_shape, z_step, kind)
    if layout.pages != pages or len(page_axes) == 0:
        log.debug("%s: its %s metadata does not describe its %d pages", path, kind, pages)
        return None
    return layout


def _imagej_z_um(metadata: dict | None) -> float | None:
    if not metadata:
        return None
    spacing, unit = metadata.get("spacing"), str(metadata.get("unit", "micron")).strip()
    return _in_um(spacing, unit)


def _ome_z_um(xml: str | None) -> float | None:
    if not xml:
        return None
    found = re.search(r'PhysicalSizeZ="([^"]+)"', xml)
    if found is None:
        return None
    unit = re.search(r'PhysicalSizeZUnit="([^"]+)"', xml)
    return _in_um(found.group(1), unit.group(1) if unit else "µm")


def _in_um(value: object, unit: str) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(number) and number > 0):
        return None
    unit = unit.strip().lower().replace("\\u00b5", "µ")
    if unit in _MICRONS:
        return number
    factor = _SCALE_TO_UM.get(unit)
    return None if factor is None else number * factor
