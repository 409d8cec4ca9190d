"""From a luma frame to a scored record: the backend call and its timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels
from ._errors import ConfigError
from .kernels import Backend, FocusMap, FocusScores

_per_thread = threading.local()  # backends by name; a backend belongs to one thread


def resolve_backend(backend: str | Backend, **options: object) -> Backend:
    """A backend instance for a name (``auto``, ``numba-cpu``, ...), or the instance given.

    Raises
    ------
    ConfigError
        For an unknown backend or one that cannot run here; the message says why.
    """
    if isinstance(backend, Backend):
        return backend
    try:
        return kernels.get(backend, **options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def measure(
    luma: np.ndarray,
    *,
    backend: str | Backend = "auto",
    roi: Sequence[int] | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
) -> FocusScores:
    """The focus measures of one luma frame.

    Parameters
    ----------
    luma : ndarray, (H, W), uint8 or uint16
        The frame (a view of a padded plane is scored in place), at least 3x3.
    backend : str or Backend
        A backend name (see ``focusmon backends``) or an instance. Named backends are made
        once per thread and reused.
    roi : (x, y, w, h), optional
        Score only this rectangle, which must lie inside the frame.
    scale, offset : float
        Report in units of ``(sample - offset) * scale``: 1 and 0 for 8-bit full range.

    Returns
    -------
    FocusScores
        ``laplacian_var``, ``tenengrad``, ``sobel_mean``, ``haar_energy``, ``mean`` and
        ``std``; see ../shared/DESIGN.md for the exact definitions.

    Examples
    --------
    >>> import numpy as np, focusmon
    >>> focusmon.measure(np.full((8, 8), 100, np.uint8), backend="numpy").laplacian_var
    0.0
    """
    if isinstance(backend, str):
        cache = _per_thread.__dict__.setdefault("backends", {})
        if backend not in cache:
            cache[backend] = resolve_backend(backend)
        backend = cache[backend]
    try:
        return backend.scores(luma, roi=roi, scale=scale, offset=offset)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class FocusRecord:
    """A frame's scores with its place in the stream and the kernel time."""

    index: int
    pts: float | None
    scores: FocusScores
    kernel_ms: float
    tiles: FocusMap | None = None  # the focus map, when a grid was asked for
    qp: float | None = None  # the encoder's quantiser, where asked for and told
    pict_type: str | None = None  # and how it coded the frame (I, P, B, ...)

    def as_dict(self) -> dict[str, object]:
        """``{"index", "pts", <the measures>}``, ``"tiles"`` (`FocusMap.as_dict`) with a
        grid, and ``"qp"`` and ``"pict_type"`` where the decoder told them: one line of
        ``focusmon score``."""
        out = {"index": self.index, "pts": self.pts, **self.scores.as_dict()}
        if self.tiles is not None:
            out["tiles"] = self.tiles.as_dict()
        if self.qp is not None:
            out["qp"] = self.qp
        if self.pict_type is not None:
            out["pict_type"] = self.pict_type
        return out


def score_frame(
    backend: Backend,
    luma: np.ndarray,
    index: int,
    pts: float | None,
    *,
    roi: Sequence[int] | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
    tiles: Sequence[int] | None = None,
) -> FocusRecord:
    """Score one frame with ``backend`` (and each tile of a ``tiles = (rows, cols)`` grid,
    in the same pass) and time the call."""
    start = time.perf_counter()
    if tiles is None:
        scores, focus_map = backend.scores(luma, roi=roi, scale=scale, offset=offset), None
    else:
        focus_map = backend.focus_map(luma, tiles, roi=roi, scale=scale, offset=offset)
        scores = focus_map.frame
    return FocusRecord(index, pts, scores, (time.perf_counter() - start) * 1e3, focus_map)
