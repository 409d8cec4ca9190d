"""Still images: one file, a multi-page TIFF stack (8 or 16 bit), or a folder of them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .._errors import SourceError
from ._base import Source, SourceOptions, SourceState, too_large
from ._frame import LumaFrame, range_mapping
from ._headers import image_sizes
from ._stack import stack_layout

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".webp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
STILL_SUFFIXES = IMAGE_SUFFIXES | TIFF_SUFFIXES

log = logging.getLogger("focusmon.source")

#: Bytes of decoded TIFF pages read in one call: OpenCV finds a page by walking the page
#: list from the start, so pages read one call each cost a stack of n pages n**2 / 2 steps
#: (4,000 pages of 8x8 did not finish in ten minutes); a call per this many bytes of pages
#: makes it nearly linear without holding a large stack in memory twice.
TIFF_CHUNK_BYTES = 64 * 2**20
#: Too large: a page over `SourceOptions.max_pixels`, refused before decoding.
_TOO_LARGE = object()


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
        # Declared sizes, read once from the headers (None: unknown, the decoder decides).
        self._sizes = [image_sizes(p) for p in self._files]
        self._pages = [len(sizes) if sizes else 1 for sizes in self._sizes]
        self.total = sum(self._pages)
        if len(self._files) == 1 and self._files[0].suffix.lower() in TIFF_SUFFIXES:
            if self._pages[0] > 1:  # a stack: what its pages are, from ImageJ or OME
                self.layout = stack_layout(self._files[0])
        limit = self.options.max_pixels
        if len(self._files) == 1 and self._sizes[0]:
            if all(w * h > limit for w, h in self._sizes[0]):
                raise SourceError(too_large(path, *max(self._sizes[0]), limit))

    def __iter__(self) -> Iterator[LumaFrame]:
        self._enter(SourceState.UP)
        index = 0
        try:
            limit = self.options.max_pixels
            for path, sizes in zip(self._files, self._sizes, strict=True):
                for page, size in _pages(path, sizes, limit):
                    if self.stopping:
                        return
                    self.stats.decoded += 1
                    self.stats.last_frame_at = self._clock()
                    if page is _TOO_LARGE:
                        self.stats.corrupt += 1
                        said = f"{too_large(path.name, *size, limit)}; skipped"
                        log.warning("%s", self._said(said))
                    elif page is None:
                        if len(self._files) == 1 and self.total == 1:
                            raise SourceError(f"cannot read {path} as an image")
                        self.stats.corrupt += 1
                        said = f"{self.name}: cannot read {path.name} as an image; skipped"
                        log.warning("%s", self._said(said))
                    elif self._keep(index, None):
                        luma = _gray_of(page, path)  # type: ignore[arg-type]
                        yield LumaFrame(luma, index, None, *range_mapping(8 * luma.itemsize, True))
                    index += 1
            if self.stats.corrupt == self.stats.decoded:  # not one page: an error, not 0 frames
                raise SourceError(f"{self.name}: none of its {index} images could be read")
        finally:
            self._enter(SourceState.ENDED)


def _pages(
    path: Path, sizes: list[tuple[int, int]] | None, limit: int
) -> Iterator[tuple[np.ndarray | object | None, tuple[int, int]]]:
    """Each page of the file and its declared size: the decoded image, None if it cannot
    be read, or `_TOO_LARGE` (not decoded) if it declares more than ``limit`` pixels."""
    # OpenCV raises (cv2.error) on some damaged files and returns nothing on others: both
    # are an unreadable page.
    if path.suffix.lower() not in TIFF_SUFFIXES or not sizes or len(sizes) == 1:
        size = sizes[0] if sizes else (0, 0)
        if size[0] * size[1] > limit:
            yield _TOO_LARGE, size
            return
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            image = None
        yield image, size
        return
    start = 0
    while start < len(sizes):
        if sizes[start][0] * sizes[start][1] > limit:
            yield _TOO_LARGE, sizes[start]
            start += 1
            continue
        # The pages from here that fit, as many as make TIFF_CHUNK_BYTES (8 bytes a pixel:
        # four 16-bit channels, the most OpenCV returns).
        end, size = start, 0
        while end < len(sizes) and 0 < sizes[end][0] * sizes[end][1] <= limit:
            size += 8 * sizes[end][0] * sizes[end][1]
            end += 1
            if size >= TIFF_CHUNK_BYTES:
                break
        end = max(end, start + 1)
        yield from zip(_tiff_pages(path, start, end - start), sizes[start:end], strict=True)
        start = end


def _tiff_pages(path: Path, start: int, count: int) -> list[np.ndarray | None]:
    """Pages ``start`` to ``start + count`` of a TIFF; one by one if they cannot all be
    read at once (so that a damaged page costs only itself)."""
    try:
        ok, pages = cv2.imreadmulti(str(path), start, count, flags=cv2.IMREAD_UNCHANGED)
    except cv2.error:
        ok, pages = False, []
    if ok and len(pages) == count:
        return list(pages)
    if count == 1:
        return [None]
    return [page for k in range(count) for page in _tiff_pages(path, start + k, 1)]


def _gray_of(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"{path}: samples must be 8 or 16 bit integers, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return image
