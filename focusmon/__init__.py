"""focusmon: a streaming video focus monitor.

>>> import focusmon
>>> scores = focusmon.measure(luma)  # doctest: +SKIP
>>> scores.laplacian_var, scores.as_dict()  # doctest: +SKIP

``focusmon.kernels`` holds the measures and their backends; ``focusmon score`` and
``focusmon backends`` are the command line.
"""

from __future__ import annotations

from ._errors import ConfigError, FocusmonError, SourceError, SourceTimeout
from .kernels import MEASURES, FocusScores
from .measures import FocusRecord, measure

__version__ = "0.1.0"

__all__ = [
    "MEASURES",
    "ConfigError",
    "FocusRecord",
    "FocusScores",
    "FocusmonError",
    "SourceError",
    "SourceTimeout",
    "__version__",
    "measure",
]
