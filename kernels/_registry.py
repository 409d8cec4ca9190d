"""Which backends exist, which can run here, and picking one."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
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


def resolve(name: str = "auto", **options: object) -> tuple[str, dict[str, object]]:
    """The backend `get` would make, and the options it would take, without making it.

    ``auto`` becomes the fastest backend that can run here (CUDA, then Numba on the CPU,
    then NumPy), saying in one log line why each one before it was passed over; options
    that the chosen backend does not take are dropped there, since ``auto`` may choose
    any (``threads=`` means nothing to a GPU). A backend named outright must take every
    option given.

    Raises
    ------
    ValueError
        For an unknown name, a known backend that cannot run here (the reason is given),
        or an option the named backend does not take.
    """
    if name == "auto":
        for candidate in _MODULES:
            why = _reason(candidate)
            if why is None:
                takes = _options_of(_load(candidate)[0])
                return candidate, {k: v for k, v in options.items() if k in takes}
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
    takes = _options_of(_load(name)[0])
    unknown = sorted(set(options) - takes)
    if unknown:
        raise ValueError(
            f"backend {name!r} takes no option {unknown[0]!r} "
            f"(it takes: {', '.join(sorted(takes)) or 'none'})"
        )
    return name, dict(options)


def get(name: str = "auto", **options: object) -> Backend:
    """A ready backend.

    Parameters
    ----------
    name : str
        ``"auto"`` (the fastest that can run here: CUDA, then Numba on the CPU, then
        NumPy), or one of `names()`.
    **options
        Passed to the backend, e.g. ``threads=2`` for ``numba-cpu`` (see `resolve` for
        which are taken).

    Raises
    ------
    ValueError
        As `resolve`, or for an option's value the backend refuses.
    """
    chosen, accepted = resolve(name, **options)
    backend_cls, _ = _load(chosen)
    return backend_cls(**accepted)


def _options_of(backend_cls: type[Backend]) -> set[str]:
    params = inspect.signature(backend_cls.__init__).parameters
    return {
        p.name for p in params.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }  # fmt: skip
