"""Still images: one file, a multi-page TIFF stack (8 or 16 bit), or a folder of them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .._errors import SourceError
from ._base import Source, SourceOptions, SourceState
from ._frame import LumaFrame, range_mapping

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".webp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
STILL_SUFFIXES = IMAGE_SUFFIXES | TIFF_SUFFIXES

log = logging.getLogger("focusmon.source")


def _natural_key(path: Path) -> list[object]:
    """``img2`` before ``img10``, as a file manager sorts."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


class ImageSource(Source):
    """Image files read by OpenCV, samples kept as they are (16-bit stays 16-bit).

    One file, or a folder whose image files are taken in natural name order. Every page
    of a multi-page TIFF is a frame. A file that cannot be read is counted as corrupt and
    skipped, unless it is the only one.
    """

    def __init__(self, path: str, options: SourceOptions | None = None) -> None:
        super().__init__(options)
        self.name = path
        root = Path(path)
        if root.is_dir():
            self._files = sorted(
                (p for p in root.iterdir() if p.suffix.lower() in STILL_SUFFIXES and p.is_file()),
                key=_natural_key,
            )
            if not self._files:
                raise SourceError(f"{path}: no image files in the folder")
        elif root.is_file():
            self._files = [root]
        else:
            raise SourceError(f"no such file: {path}")
        self._pages = [_page_count(p) for p in self._files]  # parsed once per file
        self.total = sum(self._pages)

    def __iter__(self) -> Iterator[LumaFrame]:
        self._enter(SourceState.UP)
        index = 0
        try:
            for path, count in zip(self._files, self._pages, strict=True):
                for page in _pages(path, count):
                    if self.stopping:
                        return
                    self.stats.decoded += 1
                    self.stats.last_frame_at = self._clock()
                    if page is None:
                        if len(self._files) == 1 and self.total == 1:
                            raise SourceError(f"cannot read {path} as an image")
                        self.stats.corrupt += 1
                        said = f"{self.name}: cannot read {path.name} as an image; skipped"
                        log.warning("%s", self._said(said))
                    elif self._keep(index, None):
                        luma = _gray_of(page, path)
                        yield LumaFrame(luma, index, None, *range_mapping(8 * luma.itemsize, True))
                    index += 1
            if self.stats.corrupt == self.stats.decoded:  # not one page: an error, not 0 frames
                raise SourceError(f"{self.name}: none of its {index} images could be read")
        finally:
            self._enter(SourceState.ENDED)


def _page_count(path: Path) -> int:
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            return max(cv2.imcount(str(path)), 1)
        except cv2.error:  # a damaged header: read as one page, which then fails cleanly
            return 1
    return 1


def _pages(path: Path, count: int) -> Iterator[np.ndarray | None]:
    """Each of the ``count`` pages of the file, read one at a time (a stack may not fit in
    memory twice)."""
    # OpenCV raises (cv2.error) on some damaged files and returns nothing on others: both
    # are an unreadable page.
    if path.suffix.lower() not in TIFF_SUFFIXES:
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            image = None
        yield image
        return
    for start in range(count):
        try:
            ok, pages = cv2.imreadmulti(str(path), start, 1, flags=cv2.IMREAD_UNCHANGED)
        except cv2.error:
            ok, pages = False, []
        yield pages[0] if ok and pages else None


def _gray_of(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"{path}: samples must be 8 or 16 bit integers, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return image
