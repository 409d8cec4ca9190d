"""Focus measures and the backends that compute them.

Importing this package is light: NumPy only. Numba, CuPy and the CUDA toolchain are loaded
when a backend that needs them is asked for.

>>> from focusmon import kernels
>>> backend = kernels.get("numpy")
>>> backend.scores(frame).laplacian_var  # doctest: +SKIP

Backends: ``numba-cuda`` (GPU), ``numba-cpu`` (fused CPU kernel) and ``numpy`` (the
reference). `available()` says which can run here and why not.
"""

from __future__ import annotations

from ._backend import Backend, BackendError
from ._frame import MIN_SIDE, check_roi
from ._reference import reference_scores
from ._registry import available, get, names, resolve
from ._scores import (
    DIRECTIONS,
    MEASURE_TABLE,
    MEASURES,
    FocusMap,
    FocusScores,
    Measure,
    RawSums,
    finish,
    rescale,
)

__all__ = [
    "DIRECTIONS",
    "MEASURES",
    "MEASURE_TABLE",
    "MIN_SIDE",
    "Backend",
    "BackendError",
    "FocusMap",
    "FocusScores",
    "Measure",
    "RawSums",
    "available",
    "check_roi",
    "finish",
    "get",
    "names",
    "reference_scores",
    "rescale",
    "resolve",
]
