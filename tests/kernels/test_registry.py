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
