"""The rooms of ../shared/DESIGN.md: what each part of the code may import.

The table below is DESIGN.md's, every row: a room, what it must not import (libraries and
other rooms), and for the scheduler and the sinks the kernels' names they may use (value
types and the measure table, never a backend). Imports are read with `ast`, so an import
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ("focusmon.kernels._numba", "focusmon.kernels._registry", "focusmon.kernels._backend")
#: What of focusmon.kernels the scheduler and the sinks may import: its value types.
KERNEL_VALUES = {"FocusMap", "FocusScores", "MEASURES", "MEASURE_TABLE", "Measure", "MIN_SIDE"}

# room -> (its files, what it must not import)
ROOMS = {
    "kernels": (
        ["kernels/*.py"],
        {"av", "prometheus_client", "threading", "concurrent", "focusmon.source",
         "focusmon.scheduler", "focusmon.sinks", "focusmon.pipeline", "focusmon.cli",
         "focusmon.measures", "focusmon.config", "focusmon.fleet", "focusmon.testing"},
    ),
    "source": (
        ["focusmon/source/*.py"],
        {*BACKENDS, "focusmon.scheduler", "focusmon.sinks", "focusmon.pipeline",
         "focusmon.config", "focusmon.cli", "focusmon.fleet", "prometheus_client", "numba",
         "cupy"},
    ),
    "measures": (
        ["focusmon/measures.py"],
        {"av", "prometheus_client", "focusmon.source", "focusmon.scheduler", "focusmon.sinks",
         "focusmon.pipeline", "focusmon.cli"},
    ),
    "scheduler": (
        ["focusmon/scheduler/*.py"],
        {"av", *BACKENDS, "prometheus_client", "time", "datetime", "focusmon.source",
         "focusmon.sinks", "focusmon.pipeline", "focusmon.config", "focusmon.cli",
         "focusmon.measures", "numba", "cupy"},
    ),
    "sinks": (
        ["focusmon/sinks/*.py"],
        {"av", *BACKENDS, "focusmon.measures", "focusmon.source", "focusmon.pipeline",
         "focusmon.config", "focusmon.cli", "focusmon.fleet", "numba", "cupy"},
    ),
    "config": (
        ["focusmon/config.py"],
        {"focusmon.pipeline", "focusmon.sinks", "focusmon.cli", "focusmon.fleet",
         "prometheus_client"},
    ),
    "pipeline": (
        ["focusmon/pipeline/*.py"],
        {"argparse", "focusmon.cli", "focusmon.fleet", "builtins.print", "sys"},
    ),
    "cli": (
        ["focusmon/cli/*.py"],
        {"av", "numba", "cupy", "prometheus_client", "focusmon.kernels._numba",
         "focusmon.source._live", "focusmon.scheduler._alerts"},
    ),
    "fleet": (
        ["focusmon/fleet/*.py"],
        {"argparse", "focusmon.cli", "builtins.print", "sys", "focusmon.sinks",
         "focusmon.kernels._numba", "av", "numba", "cupy"},
    ),
    "mm": (
        ["focusmon/mm.py"],
        {"argparse", "av", "builtins.print", "sys", "focusmon.cli", "focusmon.fleet",
         "focusmon.sinks", "focusmon.pipeline", "focusmon.source", "prometheus_client"},
    ),
    "testing": (
        ["focusmon/testing/*.py"],
        {"av", "prometheus_client", "focusmon.kernels", "focusmon.source", "focusmon.pipeline",
         "focusmon.sinks", "focusmon.cli", "focusmon.config"},
    ),
}  # fmt: skip
#: numba and cupy only inside the backend modules that need them.
LAZY = {"numba": "kernels/_numba_*.py", "cupy": "kernels/_numba_cuda.py"}
#: The fleet's, MQTT's and Micro-Manager's extras and the page's browser driver: never
#: imported by ``import focusmon``.
OPTIONAL = ("ray", "paho", "selenium", "playwright", "pymmcore_plus", "useq")


def imports_of(path: Path) -> set[str]:
    """Absolute names imported by a module (``module`` and ``module.name`` for each name
    taken from it), relative imports resolved within focusmon."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["focusmon", "kernels", *rel.parts[1:]] if rel.parts[0] == "kernels" else [*rel.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            names.add("builtins.print")
    return names


def banned(name: str, rule: str) -> bool:
    return name == rule or name.startswith(rule + ".") or name.startswith(rule + "_")


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_imports_only_what_it_may(room):
    patterns, rules = ROOMS[room]
    paths = [p for pattern in patterns for p in ROOT.glob(pattern)]
    assert paths, f"no files for the room {room}"
    for path in paths:
        for name in imports_of(path):
            bad = [r for r in rules if banned(name, r)]
            assert not bad, f"{path.relative_to(ROOT)} imports {name}"


@pytest.mark.parametrize("room", ["scheduler", "sinks"])
def test_the_scheduler_and_the_sinks_use_only_the_kernels_value_types(room):
    for path in ROOT.glob(f"focusmon/{room}/*.py"):
        for name in imports_of(path):
            if name.startswith("focusmon.kernels."):
                taken = name.removeprefix("focusmon.kernels.")
                assert taken in KERNEL_VALUES, f"{path.relative_to(ROOT)} imports {name}"


def test_heavy_libraries_only_in_their_backend_modules():
    for path in [*ROOT.glob("kernels/*.py"), *ROOT.glob("focusmon/**/*.py")]:
        rel = path.relative_to(ROOT)
        for name in imports_of(path):
            for lib, allowed in LAZY.items():
                if banned(name, lib):
                    assert rel.match(allowed), f"{rel} imports {name}"


def test_the_rooms_table_covers_every_module():
    """A new module belongs to a room: it cannot slip past the table."""
    covered = {p for patterns, _ in ROOMS.values() for g in patterns for p in ROOT.glob(g)}
    top = {"__init__.py", "__main__.py", "_errors.py", "_text.py", "autofocus.py"}
    for path in [*ROOT.glob("kernels/*.py"), *ROOT.glob("focusmon/**/*.py")]:
        assert path in covered or path.name in top and path.parent.name == "focusmon", path


def test_importing_focusmon_stays_light():
    """``import focusmon.kernels`` loads NumPy only; ``import focusmon`` no optional extra
    (Ray, MQTT, a browser driver) and no Numba until a backend is asked for."""
    probe = (
        "import sys, focusmon.kernels; light = sorted(m for m in ('av', 'numba', "
        "'prometheus_client', 'cupy') if m in sys.modules); import focusmon, focusmon.cli; "
        f"heavy = sorted(m for m in {OPTIONAL + ('numba',)!r} if m in sys.modules); "
        "print(light, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert out == "[] []", out
