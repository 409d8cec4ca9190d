"""Choosing a backend: names, reasons, `auto`, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from focusmon import kernels


def test_available_names_every_backend_with_a_reason_or_none():
    avail = kernels.available()
    assert tuple(avail) == kernels.names() == ("numba-cuda", "numba-cpu", "numpy")
    assert avail["numpy"] is None and avail["numba-cpu"] is None
    for why in avail.values():
        assert why is None or (why and "\n" not in why)


def test_cuda_unavailable_here_says_why():
    why = kernels.available()["numba-cuda"]
    if why is None:
        pytest.skip("a CUDA backend can run here")
    assert "cupy" in why or "CUDA" in why


def test_auto_prefers_numba_cpu_without_a_gpu():
    if kernels.available()["numba-cuda"] is None:
        pytest.skip("a GPU is usable here: auto picks CUDA")
    with kernels.get() as b:
        assert b.name == "numba-cpu"
    with kernels.get("auto", threads=2) as b:
        assert b.threads == 2


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        kernels.get("opencl")
    message = str(info.value)
    assert "'opencl'" in message
    for name in ("auto", "numba-cuda", "numba-cpu", "numpy"):
        assert name in message


def test_unavailable_backend_is_a_clear_error():
    if kernels.available()["numba-cuda"] is None:
        pytest.skip("CUDA can run here")
    with pytest.raises(ValueError, match="cannot run here"):
        kernels.get("numba-cuda")


def test_importing_kernels_stays_light():
    code = (
        "import sys, focusmon.kernels, focusmon;"
        "heavy = ('numba', 'av', 'prometheus_client', 'cupy', 'cv2');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_says_in_one_line_why_it_fell_back(caplog):
    why = kernels.available()["numba-cuda"]
    if why is None:
        pytest.skip("CUDA can run here")
    with caplog.at_level("INFO", logger="focusmon.kernels"):
        kernels.get("auto").close()
    lines = [r.getMessage() for r in caplog.records if "numba-cuda" in r.getMessage()]
    assert len(lines) == 1 and why in lines[0]


def test_options_a_named_backend_does_not_take_are_refused_and_auto_drops_them():
    with pytest.raises(ValueError, match="backend 'numpy' takes no option 'threads'"):
        kernels.get("numpy", threads=2)
    assert kernels.resolve("numba-cpu", threads=2) == ("numba-cpu", {"threads": 2})
    if kernels.available()["numba-cuda"] is None:
        pytest.skip("a GPU is usable here: auto picks CUDA")
    assert kernels.resolve("auto", threads=2, colour="red") == ("numba-cpu", {"threads": 2})


def test_the_measure_table_names_every_field_of_the_scores_once():
    import dataclasses

    fields = [f.name for f in dataclasses.fields(kernels.FocusScores)]
    assert (
        [*kernels.MEASURE_TABLE, *kernels.DIRECTIONS]
        == [*kernels.MEASURES, *kernels.DIRECTIONS]
        == fields
    )
    metrics = [m.metric for m in kernels.MEASURE_TABLE.values()]
    assert len(set(metrics)) == len(metrics) and all(m.startswith("focusmon_") for m in metrics)
    assert {m.name: m.power for m in kernels.MEASURE_TABLE.values()} == {
        "laplacian_var": 2, "tenengrad": 2, "sobel_mean": 1, "haar_energy": 2, "mean": 1,
        "std": 1, "saturated": 0,
    }  # fmt: skip


@pytest.mark.slow
def test_compiled_kernels_are_kept_in_the_users_cache_never_beside_the_package(tmp_path):
    """Numba's default would write them into site-packages, where they outlive the package
    and shadow an editable install (the README's two commands, in that order)."""
    import os
    from pathlib import Path

    package = Path(kernels.__file__).parent
    before = set(package.rglob("*.nb[ic]"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    probe = (
        "import numpy as np; from focusmon import kernels; "
        "kernels.get('numba-cpu').scores(np.zeros((8, 8), np.uint8)); "
        "from focusmon.kernels._numba_cpu import cache_folder; print(cache_folder())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300,
        check=True,
    ).stdout.strip()  # fmt: skip
    assert out == str(tmp_path / "focusmon" / "numba")
    assert list((tmp_path / "focusmon" / "numba").rglob("*.nbi"))  # cached there ...
    assert set(package.rglob("*.nb[ic]")) == before  # ... and nothing new beside the code
