"""The size an image file declares, read from its header before anything is decoded.

A small file may declare a huge picture (a 2.7 MB PNG of 30000 x 30000 pixels took
``score`` to 5.3 GB), so the declared size is checked against `SourceOptions.max_pixels`
first. OpenCV has no header-only read; these few formats' headers are simple, and each
reader here is bounded (it reads at most a few kB, and walks a TIFF's page list once,
stopping at a loop or the file's end). A header that cannot be read gives None: the
decoder then says what is wrong.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

#: Pages a TIFF may have before the rest are not looked at (a stack of 8x8 pages of that
#: many would still take ten minutes to score).
MAX_TIFF_PAGES = 1_000_000
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_sizes(path: Path) -> list[tuple[int, int]] | None:
    """``(width, height)`` of each page of the image at ``path`` (one, but for a TIFF
    stack), or None if its header cannot be read."""
    try:
        with path.open("rb") as f:
            head = f.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                return [struct.unpack(">II", head[16:24])]
            if head.startswith(b"\xff\xd8"):
                size = _jpeg(f)
                return None if size is None else [size]
            if head[:2] in (b"II", b"MM"):
                return _tiff(f, head[:2])
            if head.startswith(b"BM") and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])  # height < 0: top-down
                return [(abs(width), abs(height))]
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                size = _webp(head)
                return None if size is None else [size]
            if head[:1] == b"P" and head[1:2] in b"123456":
                size = _pnm(f)
                return None if size is None else [size]
    except (OSError, struct.error, ValueError):
        return None
    return None


def _jpeg(f: BinaryIO) -> tuple[int, int] | None:
    """The first start-of-frame marker's size (the markers before it are skipped)."""
    f.seek(2)
    for _ in range(10_000):  # markers, each with its length: a loop cannot run away
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            f.seek(-1, 1)
            continue
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if kind in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return width, height
        if length < 2:
            return None
        f.seek(length - 2, 1)
    return None


def _tiff(f: BinaryIO, order: bytes) -> list[tuple[int, int]] | None:
    """Every page's ImageWidth and ImageLength, walking the page list once."""
    e = "<" if order == b"II" else ">"
    f.seek(2)
    (magic,) = struct.unpack(e + "H", f.read(2))
    if magic == 42:
        (offset,) = struct.unpack(e + "I", f.read(4))
        count_fmt, entry_size, value_fmt, next_fmt = "H", 12, "I", "I"
    elif magic == 43:  # BigTIFF
        f.read(4)
        (offset,) = struct.unpack(e + "Q", f.read(8))
        count_fmt, entry_size, value_fmt, next_fmt = "Q", 20, "Q", "Q"
    else:
        return None
    sizes: list[tuple[int, int]] = []
    seen: set[int] = set()
    while offset and offset not in seen and len(sizes) < MAX_TIFF_PAGES:
        seen.add(offset)
        f.seek(offset)
        (count,) = struct.unpack(e + count_fmt, f.read(struct.calcsize(count_fmt)))
        entries = f.read(count * entry_size)
        if len(entries) < count * entry_size:
            break  # a cut file: the pages read so far
        width = height = 0
        for k in range(count):
            entry = entries[k * entry_size : (k + 1) * entry_size]
            tag, kind = struct.unpack(e + "HH", entry[:4])
            if tag not in (256, 257):
                continue
            value = entry[4 + struct.calcsize(value_fmt) :]  # after the count
            short = kind == 3
            number = struct.unpack(e + ("H" if short else "I"), value[: 2 if short else 4])[0]
            if tag == 256:
                width = number
            else:
                height = number
        sizes.append((width, height))
        link = f.read(struct.calcsize(next_fmt))
        if len(link) < struct.calcsize(next_fmt):
            break
        (offset,) = struct.unpack(e + next_fmt, link)
    return sizes or None


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def _pnm(f: BinaryIO) -> tuple[int, int] | None:
    """Width and height, the first two numbers after the magic (comments skipped)."""
    f.seek(2)
    text = f.read(1024).decode("ascii", "replace")
    numbers: list[int] = []
    for line in text.splitlines():
        for word in line.split("#", 1)[0].split():
            if not word.isdigit():
                return None
            numbers.append(int(word))
            if len(numbers) == 2:
                return numbers[0], numbers[1]
    return None
