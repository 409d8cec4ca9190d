"""A short soak that CI runs: bench/soak.py (the real ``focusmon watch`` on looping RTSP, UDP
and demo streams, events and best-frame saving on) for 80 s, judged after a 40 s warm-up.

The 30-minute run (``python bench/soak.py``) is the figure for the README; this one catches a
leak fast enough to show within a minute: a thread or a descriptor per reconnect, scrape or
saved frame, megabytes per minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import soak  # the rig and its verdict, checked here without streams too
from servers import ffmpeg_reason, rtsp_server_reason

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
SECONDS, WARMUP_S = 80, 40
#: RSS may move by allocator noise (a few MB seen between samples); a leak in a path that
#: runs per frame (25 fps x 4 streams) would exceed this within the 40 s judged.
MAX_RSS_GROWTH_MB = 5


def samples(
    n: int = 40,
    *,
    rss_mb_per_s: float = 0.0,
    thread_at: int | None = None,
    stall: tuple[int, int] = (0, 0),
    lost_at: int | None = None,
) -> list[soak.Sample]:
    """A synthetic run: a sample a second, two streams at 25 fps, and the faults asked for
    (RSS growth, a thread more from ``thread_at``, stream b frozen over the ``stall``
    seconds, stream a no_signal from ``lost_at``)."""
    out = []
    for k in range(n):
        frozen = max(0, min(k, stall[1]) - stall[0])
        lost = lost_at is not None and k >= lost_at
        streams = {
            name: {"analysed": frames, "decoded": frames, "dropped": 0, "reconnects": 0,
                   "up": True, "state": state, "nan": []}
            for name, frames, state in (("a", 25 * k, "no_signal" if lost else "ok"),
                                        ("b", 25 * (k - frozen), "ok"))
        }  # fmt: skip
        threads = 20 + (thread_at is not None and k >= thread_at)
        rss_kb = round((300 + rss_mb_per_s * k) * 1e6 / 1024)
        out.append(soak.Sample(float(k), rss_kb, threads, 9, streams, 0, 0))
    return out


def verdict(run: list[soak.Sample], duration_s: float = 39.0) -> dict:
    streams = [soak.StreamInfo(n, "demo", n) for n in ("a", "b")]
    return soak.analyse(
        run, streams, warmup_s=10, duration_s=duration_s, max_rss_growth_mb=10,
        max_thread_growth=0, max_fd_growth=0, min_fps_share=0.8,
    )  # fmt: skip


def test_the_verdict_passes_a_flat_run_and_names_each_miss():
    assert verdict(samples())["passed"]
    assert verdict(samples(thread_at=25))["problems"] == [
        "threads grew by 1 after warm-up (20 -> 21)"
    ]
    # Medians of three samples at each end: 11 s -> 38 s.
    assert "RSS grew +13.5 MB" in verdict(samples(rss_mb_per_s=0.5))["problems"][0]
    assert verdict(samples(rss_mb_per_s=0.3))["passed"]  # +8.1 MB: under 10
    stalled = verdict(samples(stall=(20, 23)))["problems"]
    assert stalled == ["b: frames did not rise in 3 of 29 intervals"]
    lost = verdict(samples(lost_at=30))["problems"]
    assert lost == ["a: down or no_signal in 10 samples"]
    assert verdict(samples(25))["problems"] == ["watch exited after 24 s of 39 s"]


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.timeout(SECONDS + 90)
def test_a_short_soak_holds_threads_descriptors_and_memory(tmp_path):
    for why in (ffmpeg_reason(), rtsp_server_reason()):
        if why:
            pytest.skip(why)
    report = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", str(SECONDS), "--warmup", str(WARMUP_S),
         "--interval", "2", "--rtsp", "2", "--udp", "1",
         "--max-rss-growth-mb", str(MAX_RSS_GROWTH_MB), "--max-thread-growth", "0",
         "--max-fd-growth", "0", "--json", str(report), "--quiet"],
        capture_output=True, text=True, timeout=SECONDS + 75,
    )  # fmt: skip
    print(run.stdout)  # the soak's table, shown by pytest -s or on failure
    assert run.returncode == 0, f"exit {run.returncode}: {run.stdout}\n{run.stderr}"
    result = json.loads(report.read_text())
    assert result["passed"] and not result["problems"], result["problems"]
    assert result["samples"] >= SECONDS // 2 - 2
    assert result["threads"]["growth"] <= 0 and result["fds"]["growth"] <= 0
    assert result["threads"]["max"] - result["threads"]["min"] <= 4, result["threads"]
    assert result["memory"]["rss_growth_mb"] < MAX_RSS_GROWTH_MB, result["memory"]
    assert result["watch_exit_code"] == 0  # it stopped cleanly on SIGTERM
    streams = {s["stream"]: s for s in result["streams"]}
    assert sorted(streams) == ["cam0", "cam1", "demo", "udp0"]
    for name, stream in streams.items():
        series = stream["analysed_series"]  # every 2 s, from the first frame on
        assert all(b > a for a, b in zip(series, series[1:], strict=False)), (name, series)
        assert stream["kept_up"] and stream["reconnects_after_warmup"] == 0, stream["why"]
        assert not stream["nan_series"]
    # The paths soaked beside scoring: the demo's blur, cover and night, and cam1's dark
    # scene, are state changes written as events; a best frame per stream every 2 s.
    assert result["events"] >= 4 and result["saved"] >= len(streams) * SECONDS // 4
