"""A real Prometheus scraping ``focusmon watch`` on real streams, and an alert firing."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import urllib.parse

import pytest

from media import h264_clip
from servers import (
    Process,
    camera_launch,
    fetch,
    free_port,
    rtsp_camera,
    rtsp_server_reason,
    wait_until,
)

RULES = """
groups:
- name: focusmon-test
  rules:
  - alert: FocusmonNoSignal
    expr: focusmon_state{state="no_signal"} == 1
    for: 2s
"""


def prometheus_query(base: str, query: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, text = fetch(url)
    assert status == 200, text
    return json.loads(text)["data"]["result"]


def values_by_stream(result: list) -> dict[str, float]:
    return {r["metric"]["stream"]: float(r["value"][1]) for r in result}


@pytest.mark.network
@pytest.mark.timeout(180)
@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus missing: apt-get install prometheus"
)
@pytest.mark.skipif(rtsp_server_reason() is not None, reason=rtsp_server_reason() or "")
def test_a_real_prometheus_scrapes_watch_and_a_killed_camera_fires_an_alert(tmp_path):
    clip = h264_clip(tmp_path / "clip.mp4", 2.0)
    metrics_port, prom_port, cam_a, cam_b = free_port(), free_port(), free_port(), free_port()
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n- job_name: focusmon\n"
        f"  static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    base = f"http://127.0.0.1:{prom_port}"
    with (
        rtsp_camera(cam_a, camera_launch("smpte")),
        rtsp_camera(cam_b, camera_launch("smpte")) as b,
    ):
        watch = Process([sys.executable, "-m", "focusmon", "watch",
                         f"rtsp://127.0.0.1:{cam_a}/cam", f"rtsp://127.0.0.1:{cam_b}/cam",
                         str(clip), "demo", "--name", "a", "--name", "b", "--name", "file",
                         "--name", "demo", "--timeout", "2",
                         "--metrics-addr", f"127.0.0.1:{metrics_port}"])  # fmt: skip
        prometheus = Process(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                              f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{prom_port}"])  # fmt: skip
        try:
            wait_until(lambda: fetch(f"{base}/-/ready")[0] == 200 if _up(base) else False, 30,
                       "prometheus ready")  # fmt: skip

            def frames():
                return values_by_stream(prometheus_query(base, "focusmon_frames_analysed_total"))

            wait_until(lambda: len(frames()) == 4 and min(frames().values()) > 0, 40,
                       "all four streams scraped with frames")  # fmt: skip
            assert frames()["file"] == 50  # the whole file, nothing dropped
            b.stop()  # camera b dies
            wait_until(
                lambda: (
                    values_by_stream(
                        prometheus_query(base, 'focusmon_state{state="no_signal"}')
                    ).get("b")
                    == 1
                ),
                30,
                "b no_signal",
            )
            wait_until(lambda: _firing(base, "FocusmonNoSignal"), 30, "the alert firing")
            alerts = _firing(base, "FocusmonNoSignal")
            assert [a["labels"]["stream"] for a in alerts] == ["b"]
            before = frames()
            time.sleep(3)
            after = frames()
            assert after["a"] > before["a"] and after["demo"] > before["demo"]  # carry on
            up = values_by_stream(prometheus_query(base, "focusmon_source_up"))
            assert up["a"] == 1 and up["b"] == 0
            valid = values_by_stream(prometheus_query(base, "focusmon_signal_valid"))
            assert valid["a"] == 1 and valid["b"] == 0
            for r in prometheus_query(base, '{__name__=~"focusmon_.*"}'):
                assert math.isfinite(float(r["value"][1])), r
        finally:
            prometheus.stop()
            watch.signal(__import__("signal").SIGTERM)
            try:
                watch.proc.wait(timeout=20)
            finally:
                watch.stop()
    assert watch.proc.returncode == 0


def _up(base: str) -> bool:
    try:
        fetch(f"{base}/-/ready")
        return True
    except OSError:
        return False


def _firing(base: str, name: str) -> list:
    status, text = fetch(f"{base}/api/v1/alerts")
    assert status == 200
    alerts = json.loads(text)["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]
