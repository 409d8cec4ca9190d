"""Which backends exist, which can run here, and picking one."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable

from ._backend import Backend

log = logging.getLogger("focusmon.kernels")

# name -> module holding the backend class and `unavailable_reason()`. Order is `auto`'s
# preference, fastest first, as measured by bench/bench_kernels.py.
_MODULES = {
    "numba-cuda": ("._numba_cuda", "NumbaCudaBackend"),
    "numba-cpu": ("._numba_cpu", "NumbaCpuBackend"),
    "numpy": ("._reference", "NumpyBackend"),
}


def names() -> tuple[str, ...]:
    """Every backend name, in `auto`'s order of preference."""
    return tuple(_MODULES)


def _load(name: str) -> tuple[type[Backend], Callable[[], str | None]]:
    module_name, class_name = _MODULES[name]
    module = importlib.import_module(module_name, __package__)
    reason = getattr(module, "unavailable_reason", lambda: None)
    return getattr(module, class_name), reason


def _reason(name: str) -> str | None:
    try:
        _, reason = _load(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = "pip install 'focusmon[gpu]'" if name == "numba-cuda" else "pip install focusmon"
        return f"needs {missing!r}: {hint}"
    return reason()


def available() -> dict[str, str | None]:
    """Map each backend name to None if it can run here, or one line saying why not."""
    return {name: _reason(name) for name in _MODULES}


def get(name: str = "auto", **options: object) -> Backend:
    """A ready backend.

    Parameters
    ----------
    name : str
        ``"auto"`` (the fastest that can run here: CUDA, then Numba on the CPU, then
        NumPy), or one of `names()`.
    **options
        Passed to the backend, e.g. ``threads=2`` for ``numba-cpu``.

    Raises
    ------
    ValueError
        For an unknown name, or a known backend that cannot run here (the reason is given).
    """
    if name == "auto":
        for candidate in _MODULES:
            why = _reason(candidate)
            if why is None:
                backend_cls, _ = _load(candidate)
                accepted = {k: v for k, v in options.items() if k in _options_of(backend_cls)}
                return backend_cls(**accepted)
            # One line saying why. A warning only where a GPU was clearly wanted (CuPy is
            # installed but unusable); on a CPU-only install it is the expected path.
            wanted = candidate == "numba-cuda" and importlib.util.find_spec("cupy") is not None
            level = logging.WARNING if wanted else logging.INFO
            log.log(level, "backend %s not used (%s); trying the next", candidate, why)
        raise AssertionError("the numpy backend is always available")  # pragma: no cover
    if name not in _MODULES:
        known = ", ".join(("auto", *_MODULES))
        raise ValueError(f"unknown backend {name!r}; known: {known}")
    why = _reason(name)
    if why is not None:
        raise ValueError(f"backend {name!r} cannot run here: {why}")
    backend_cls, _ = _load(name)
    return backend_cls(**options)


def _options_of(backend_cls: type[Backend]) -> set[str]:
    import inspect

    params = inspect.signature(backend_cls.__init__).parameters
    return {p for p in params if p != "self"}
