"""Saving chosen frames: PNG for 8-bit, TIFF for 16-bit, each with a JSON sidecar."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from .._errors import ConfigError, check_int
from ..scheduler import BestFrame, KeptFrame, StateChange
from ._sink import BaseSink

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file-name part made from a stream's name: no separators, no ``..``, not empty.

    A name that had to be changed gets a short hash of the original, so that two streams
    whose names clean up alike ("cam/1", "cam 1") never write over each other's frames.

    >>> safe_name("door-1"), safe_name("../../etc/cam 1")
    ('door-1', 'etc_cam_1-7aefd7')
    """
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:100] or "stream"
    if cleaned == name:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{cleaned}-{digest}"


def own_folder(folder: str | Path, flag: str) -> Path:
    """``folder`` resolved and made (ConfigError naming ``flag`` if it cannot be)."""
    path = Path(folder).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {flag} folder {folder}: {exc.strerror}") from None
    return path


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, resolved, so that a symbolic link planted in the folder cannot
    lead a write out of it (belt and braces: `safe_name` already forbids ``..``)."""
    path = (folder / name).resolve()
    if path.parent != folder:
        raise ValueError(f"refusing to write outside {folder}: {path}")
    return path


class FrameSaver(BaseSink):
    """Writes frames under one folder, which nothing a stream is called can escape.

    ``<folder>/<stream>_<index>.png`` (or ``.tif`` for 16-bit frames) and a ``.json``
    sidecar with the stream, index, time and scores. With ``keep``, only the newest
    ``keep`` frames of each stream stay (older ones, with their sidecars, are deleted as
    new ones come, those of an earlier run included): the folder cannot fill the disk.
    """

    wants_best = True

    def __init__(self, folder: str | Path, keep: int | None = None) -> None:
        if keep is not None:
            check_int("best_keep", keep, 1)
        self.keep = keep
        self.folder = own_folder(folder, "--save-best")
        self._lock = threading.Lock()

    def save(
        self, stream: str, index: int, time_s: float | None, luma: np.ndarray,
        scores: Mapping[str, float],
    ) -> Path:  # fmt: skip
        """Write one frame and its sidecar; returns the image's path."""
        suffix = ".tif" if luma.dtype == np.uint16 else ".png"
        stem = f"{safe_name(stream)}_{index:08d}"
        image, sidecar_path = (
            inside(self.folder, stem + suffix),
            inside(self.folder, stem + ".json"),
        )
        sidecar = {"stream": stream, "index": index, "time": time_s, **dict(scores)}
        with self._lock:
            if not cv2.imwrite(str(image), np.ascontiguousarray(luma)):
                raise OSError(f"cannot write {image}")
            sidecar_path.write_text(json.dumps(sidecar) + "\n", encoding="utf-8")
            if self.keep is not None:
                self._prune(safe_name(stream))
        return image

    def on_best(self, best: BestFrame) -> None:
        self.save(best.stream, best.index, best.time, best.luma, best.scores.as_dict())

    def _prune(self, prefix: str) -> None:
        """Delete all but the newest `keep` frames (and sidecars) named for ``prefix``."""
        own = re.compile(rf"{re.escape(prefix)}_\d{{8}}\.(png|tif|json)")
        stems: dict[str, list[Path]] = {}
        for path in self.folder.iterdir():
            if own.fullmatch(path.name):
                stems.setdefault(path.stem, []).append(path)

        def age(stem: str) -> tuple[int, str]:
            newest = max(p.lstat().st_mtime_ns for p in stems[stem])
            return newest, stem

        for stem in sorted(stems, key=age, reverse=True)[self.keep :]:
            for path in stems[stem]:
                path.unlink(missing_ok=True)  # a link is removed, never what it points to


class EventFrameSaver(BaseSink):
    """``--save-events DIR``: at each state change, the sharpest frame kept from before it
    and the frame at it (the stream's small frames, `StreamHistory`), as PNG, with a JSON
    sidecar: the event, and each frame's index, time and score.

    ``<folder>/<stream>_<time in ms>_<state>_before.png``, ``..._at.png`` (none for a
    change without a frame, such as ``no_signal``) and ``..._<state>.json``: the names
    and the path safety of `FrameSaver`.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = own_folder(folder, "--save-events")
        self._lock = threading.Lock()

    def on_evidence(
        self, change: StateChange, before: KeptFrame | None, at: KeptFrame | None
    ) -> None:
        stamp = max(0, round(change.time * 1000))
        stem = f"{safe_name(change.stream)}_{stamp:013d}_{change.state}"
        sidecar: dict[str, object] = change.as_dict()
        with self._lock:
            for name, kept in (("before", before), ("at", at)):
                if kept is None:
                    continue
                image = inside(self.folder, f"{stem}_{name}.png")
                if not cv2.imwrite(str(image), kept.pixels):
                    raise OSError(f"cannot write {image}")
                sidecar[name] = {"index": kept.index, "time": kept.time, "score": kept.score,
                                 "file": image.name}  # fmt: skip
            inside(self.folder, f"{stem}.json").write_text(json.dumps(sidecar) + "\n", "utf-8")
