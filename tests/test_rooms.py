"""The rooms of ../shared/DESIGN.md: what each part of the code may import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# room (path glob relative to the repo) -> top-level modules and focusmon parts it must not import
FORBIDDEN = {
    "kernels/*.py": {"av", "prometheus_client", "threading", "concurrent", "focusmon.source",
                     "focusmon.scheduler", "focusmon.sinks", "focusmon.pipeline", "focusmon.cli",
                     "focusmon.measures"},
    "focusmon/source*/*.py": {"focusmon.kernels", "focusmon.scheduler", "focusmon.sinks",
                            "prometheus_client", "numba", "cupy"},
    "focusmon/measure*.py": {"av", "prometheus_client"},
    "focusmon/scheduler*/*.py": {"av", "focusmon.kernels", "prometheus_client", "time",
                                 "focusmon.source", "focusmon.sinks", "focusmon.pipeline"},
    "focusmon/sinks/*.py": {"focusmon.kernels", "focusmon.scheduler", "focusmon.measures",
                            "av"},
    "focusmon/cli*.py": {"av", "numba", "cupy"},
}  # fmt: skip
# numba and cupy only inside the backend modules that need them
LAZY = {"numba": "kernels/_numba_*.py", "cupy": "kernels/_numba_cuda.py"}


def imports_of(path: Path) -> set[str]:
    """Absolute names imported by a module, relative imports resolved within focusmon."""
    tree = ast.parse(path.read_text())
    package = {"kernels": "focusmon.kernels", "focusmon": "focusmon"}.get(
        path.parent.name, f"focusmon.{path.parent.name}"
    )
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def banned(name: str, rule: str) -> bool:
    return name == rule or name.startswith(rule + ".")


def test_each_room_imports_only_what_it_may():
    checked = 0
    for pattern, rules in FORBIDDEN.items():
        for path in ROOT.glob(pattern):
            for name in imports_of(path):
                bad = [r for r in rules if banned(name, r)]
                assert not bad, f"{path.relative_to(ROOT)} imports {name}"
            checked += 1
    assert checked >= 8


def test_heavy_libraries_only_in_their_backend_modules():
    for path in [*ROOT.glob("kernels/*.py"), *ROOT.glob("focusmon/**/*.py")]:
        rel = path.relative_to(ROOT)
        for name in imports_of(path):
            for lib, allowed in LAZY.items():
                if banned(name, lib):
                    assert rel.match(allowed), f"{rel} imports {name}"
