"""The public surface: `focusmon.measure`, the records, the errors and `__all__`."""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest

import focusmon
from focusmon import kernels

#: The packages whose public names are their private modules' exports (httpx's habit).
PACKAGES = [
    "focusmon", "focusmon.kernels", "focusmon.scheduler", "focusmon.sinks", "focusmon.source",
    "focusmon.pipeline", "focusmon.testing",
]  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_what_the_package_really_exports(name):
    """Every public name a package has is in its ``__all__``, and nothing else is: a name
    added to the namespace is exported on purpose, or made private."""
    import focusmon.cli  # noqa: F401 (every package imported: submodules are attributes too)

    module = importlib.import_module(name)
    public = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_") and key != "annotations"
        and not isinstance(value, types.ModuleType)
    }  # fmt: skip
    assert sorted(set(module.__all__) - {"__version__"}) == sorted(public)
    for key in module.__all__:
        assert hasattr(module, key), key


def test_the_config_module_exports_what_it_defines():
    from focusmon import config

    defined = {
        key for key, value in vars(config).items()
        if not key.startswith("_") and getattr(value, "__module__", None) == config.__name__
    }  # fmt: skip
    assert defined <= set(config.__all__), sorted(defined - set(config.__all__))
    assert all(hasattr(config, key) for key in config.__all__)


def test_the_top_level_names_stay_small():
    assert sorted(focusmon.__all__) == sorted([
        "MEASURES", "ConfigError", "FocusRecord", "FocusScores", "FocusmonError",
        "SourceError", "SourceTimeout", "__version__", "measure",
    ])  # fmt: skip


def test_measure_returns_a_frozen_record_equal_to_the_reference(camera):
    s = focusmon.measure(camera)
    want = kernels.reference_scores(camera)
    assert s.as_dict() == pytest.approx(want.as_dict(), rel=1e-9)
    assert list(s.as_dict()) == [*focusmon.MEASURES, *kernels.DIRECTIONS]
    with pytest.raises(AttributeError):
        s.mean = 0  # type: ignore[misc]


def test_measure_with_roi_scale_and_backend_instance(camera):
    with kernels.get("numpy") as b:
        s = focusmon.measure(camera, backend=b, roi=(10, 20, 100, 50), scale=2.0)
    crop = kernels.reference_scores(camera[20:70, 10:110])
    assert s.laplacian_var == pytest.approx(crop.laplacian_var * 4, rel=1e-12)


def test_errors_inherit_the_builtin_they_mean():
    assert issubclass(focusmon.ConfigError, ValueError)
    assert issubclass(focusmon.SourceError, OSError)
    assert issubclass(focusmon.SourceTimeout, TimeoutError)
    assert issubclass(focusmon.SourceTimeout, focusmon.SourceError)
    for cls in (focusmon.ConfigError, focusmon.SourceError, focusmon.SourceTimeout):
        assert issubclass(cls, focusmon.FocusmonError)


def test_bad_arguments_are_config_errors(camera):
    with pytest.raises(focusmon.ConfigError, match="unknown backend 'gpu'"):
        focusmon.measure(camera, backend="gpu")
    with pytest.raises(focusmon.ConfigError, match="roi"):
        focusmon.measure(camera, roi=(500, 500, 100, 100))
    with pytest.raises(focusmon.ConfigError, match="at least 3x3"):
        focusmon.measure(np.zeros((1, 1), np.uint8))


def test_every_subpackage_is_installed():
    """A wheel holds only the packages pyproject lists: a new subpackage must be listed."""
    from pathlib import Path

    from focusmon.config import tomllib  # the standard one, or tomli on Python 3.10

    root = Path(__file__).resolve().parents[1]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(("focusmon", *p.parent.relative_to(root / "focusmon").parts))
        for p in (root / "focusmon").rglob("__init__.py")
    } | {"focusmon.kernels"}  # kernels/ is mapped to focusmon.kernels
    assert found == listed
