"""The metrics sink: the exposition, exactly, from snapshots; the endpoint's own checks."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from focusmon.sinks.metrics import PROCESSING_BUCKETS, FocusCollector, StreamSnapshot


def snapshot(**overrides) -> StreamSnapshot:
    values = dict(
        name="door", state="blurred", up=True, frames_decoded=10, frames_analysed=9,
        frames_dropped=1, frames_corrupt=0, packets_undecodable=0, reconnects=2,
        last_frame_age_s=0.5, scores={"laplacian_var": 1.5, "tenengrad": 2.0,
        "sobel_mean": 3.0, "haar_energy": 4.0, "mean": 100.0, "std": 20.0,
        "saturated": 0.125},
        score=0.25, baseline=1.0, signal_valid=True,
        processing_buckets=[0, 3] + [9] * (len(PROCESSING_BUCKETS) - 2),
        processing_count=9, processing_sum_s=0.0125,
    )  # fmt: skip
    values.update(overrides)
    return StreamSnapshot(**values)


def exposition(*snapshots: StreamSnapshot) -> str:
    registry = CollectorRegistry()
    registry.register(FocusCollector(lambda: snapshots, {"version": "9.9", "backend": "numpy"}))
    return generate_latest(registry).decode()


def test_exposition_text():
    text = exposition(snapshot(), snapshot(name="yard", state="ok", scores=None, score=None,
                                           baseline=None, signal_valid=False),
                      snapshot(name="night", state="dark", signal_valid=False))  # fmt: skip
    lines = set(text.splitlines())
    for expected in [
        'focusmon_info{backend="numpy",version="9.9"} 1.0',
        'focusmon_state{state="blurred",stream="door"} 1.0',
        'focusmon_state{state="ok",stream="door"} 0.0',
        'focusmon_state{state="ok",stream="yard"} 1.0',
        'focusmon_reconnects_total{stream="door"} 2.0',
        'focusmon_frames_dropped_total{stream="door"} 1.0',
        'focusmon_sharpness_relative{stream="door"} 0.25',
        'focusmon_sharpness_baseline{stream="night"} 1.0',
        'focusmon_laplacian_variance{stream="door"} 1.5',
        'focusmon_saturated_ratio{stream="door"} 0.125',
        'focusmon_signal_valid{stream="yard"} 0.0',
        'focusmon_processing_seconds_bucket{le="0.001",stream="door"} 3.0',
        'focusmon_processing_seconds_bucket{le="+Inf",stream="door"} 9.0',
        'focusmon_processing_seconds_sum{stream="door"} 0.0125',
        "# TYPE focusmon_frames_analysed_total counter",
    ]:
        assert expected in lines, expected
    # a stream with no scored frame has no measure samples at all: never NaN
    assert 'focusmon_laplacian_variance{stream="yard"}' not in text
    assert 'focusmon_sharpness_relative{stream="night"}' not in text  # not against the day's
    assert "NaN" not in text and "Inf " not in text.replace('le="+Inf"', "")


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus"
)
def test_tile_metrics_only_where_asked_for_and_judged():
    tiles = [[1.0, 0.25], [0.875, 1.5]]
    text = exposition(snapshot(name="porch", state="partial", tiles=tiles), snapshot(),
                      snapshot(name="night", state="dark", tiles=tiles))  # fmt: skip
    lines = [line for line in text.splitlines() if line.startswith("focusmon_tile_")]
    assert sorted(lines) == sorted(
        f'focusmon_tile_sharpness_relative{{col="{c}",row="{r}",stream="porch"}} {v}'
        for r, row in enumerate(tiles) for c, v in enumerate(row)
    )  # fmt: skip
    assert "focusmon_tile" not in exposition(snapshot())  # none asked for: no family at all


def test_backend_and_its_fallbacks_are_read_at_each_scrape():
    """After a GPU fault the streams move to the CPU: ``focusmon_info`` names the backend
    in use now, and ``focusmon_backend_fallbacks_total`` counts the moves."""
    now = {"backend": "numba-cuda", "fallbacks": 0}
    registry = CollectorRegistry()
    registry.register(FocusCollector(
        lambda: [snapshot()], lambda: {"version": "9.9", "backend": now["backend"]},
        backend_fallbacks=lambda: now["fallbacks"],
    ))  # fmt: skip
    before = generate_latest(registry).decode()
    now.update(backend="numba-cpu", fallbacks=1)
    after = generate_latest(registry).decode()
    assert 'focusmon_info{backend="numba-cuda",version="9.9"} 1.0' in before
    assert "focusmon_backend_fallbacks_total 0.0" in before
    assert 'focusmon_info{backend="numba-cpu",version="9.9"} 1.0' in after
    assert "focusmon_backend_fallbacks_total 1.0" in after


def test_promtool_accepts_the_exposition():
    text = exposition(snapshot(), snapshot(name="yard"))
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
