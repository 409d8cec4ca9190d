"""The Prometheus endpoint: exposition, config files, the demo camera, and a real Prometheus
scraping ``focusmon watch`` on real streams."""

from __future__ import annotations

import json
import math
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from focusmon import ConfigError
from focusmon.cli import main
from focusmon.config import load_config, parse_config
from focusmon.kernels import get as get_backend
from focusmon.pipeline import StreamSpec, Watcher
from focusmon.scheduler import AlertTracker
from focusmon.sinks.metrics import (
    PROCESSING_BUCKETS,
    FocusCollector,
    StreamSnapshot,
    parse_address,
)
from focusmon.source import DemoCamera

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


def snapshot(**overrides) -> StreamSnapshot:
    values = dict(
        name="door", state="blurred", up=True, frames_decoded=10, frames_analysed=9,
        frames_dropped=1, frames_corrupt=0, packets_undecodable=0, reconnects=2,
        last_frame_age_s=0.5, scores={"laplacian_var": 1.5, "tenengrad": 2.0,
        "sobel_mean": 3.0, "haar_energy": 4.0, "mean": 100.0, "std": 20.0},
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
def test_promtool_accepts_the_exposition():
    text = exposition(snapshot(), snapshot(name="yard"))
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_addresses():
    assert parse_address("0.0.0.0:9713") == ("0.0.0.0", 9713)
    assert parse_address(":9713") == ("127.0.0.1", 9713)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("9713", "host:", "host:99999", "host:x"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


# -- the demo camera ----------------------------------------------------------------------


def test_the_demo_camera_shows_every_state_within_a_minute():
    now = [0.0]
    camera = DemoCamera(size=(160, 96), fps=8.0, clock=lambda: now[0],
                        sleep=lambda s: now.__setitem__(0, now[0] + s))  # fmt: skip
    tracker = AlertTracker("demo")
    backend = get_backend("numba-cpu")
    states = []
    for frame in camera:
        change = tracker.update(backend.scores(frame.luma), frame.pts)
        if change:
            states.append(change.state)
        if frame.pts >= 60:
            break
    assert states == ["blurred", "ok", "obstructed", "ok", "dark", "ok"]
    assert now[0] == pytest.approx(60, abs=0.2)  # delivered in (simulated) real time


# -- config files -------------------------------------------------------------------------


def test_a_config_file_is_checked_key_by_key(tmp_path):
    good = tmp_path / "streams.toml"
    good.write_text(
        'metrics_addr = ":9999"\n'
        "[defaults]\ntimeout_s = 4\nalerts = { min_dwell_s = 2 }\n"
        '[[streams]]\nname = "door"\nsource = "rtsp://u:p@cam/1"\nroi = [0, 0, 64, 48]\n'
        '[[streams]]\nsource = "demo"\nmax_fps = 5\n[streams.alerts]\nenter_ratio = 0.4\n'
    )
    config = load_config(good)
    door, demo = config.streams
    assert config.service == {"metrics_addr": ":9999"}
    assert door.name == "door" and door.roi == (0, 0, 64, 48) and door.options.timeout_s == 4
    assert door.alerts.min_dwell_s == 2 and demo.alerts.enter_ratio == 0.4
    assert demo.alerts.min_dwell_s == 2 and demo.name == "demo" and demo.options.max_fps == 5

    def error(data):
        with pytest.raises(ConfigError) as info:
            parse_config(data, "f.toml")
        return str(info.value)

    stream = {"source": "demo"}
    assert "unknown key 'sourse'" in error({"streams": [{"sourse": "x"}]})
    assert "streams[0]: source is missing" in error({"streams": [{"name": "x"}]})
    assert "streams[0].roi must be [x, y, w, h]" in error({"streams": [{**stream, "roi": [1]}]})
    assert "`every` must be an integer >= 1" in error({"streams": [{**stream, "every": 0}]})
    assert "streams[0].alerts" in error({"streams": [{**stream, "alerts": {"enter_ratio": -1}}]})
    rtsp = {"source": "rtsp://cam/1", "ffmpeg_options": {"stimeout": "5"}}
    assert "unknown FFmpeg option 'stimeout'" in error({"streams": [rtsp]})
    assert "metrics_addr must be HOST:PORT" in error({"metrics_addr": 9, "streams": [stream]})
    assert "used twice" in error({"streams": [stream, stream]})
    assert "non-empty array" in error({"streams": []})
    bad = tmp_path / "bad.toml"
    bad.write_text("streams = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_watch_config_errors_exit_2_before_starting(capsys, tmp_path):
    config = tmp_path / "s.toml"
    config.write_text('[[streams]]\nsource = "demo"\ncolour = "red"\n')
    assert main(["watch", "--config", str(config)]) == 2
    assert "streams[0]: unknown key 'colour'" in capsys.readouterr().err
    config.write_text('[[streams]]\nsource = "demo"\n')
    assert main(["watch", "--config", str(config), "--every", "2"]) == 2
    assert "--every is a stream setting" in capsys.readouterr().err
    assert main(["watch", "--config", str(config), "demo"]) == 2
    assert main(["watch"]) == 2
    assert "at least one SOURCE" in capsys.readouterr().err


# -- the endpoint ---------------------------------------------------------------------------


def test_endpoint_serves_metrics_and_health_over_http_and_https(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    watcher = Watcher([StreamSpec("clip", str(clip))], backend="numpy", on_change=lambda c: None)
    server = watcher.serve_metrics("127.0.0.1", 0)
    try:
        watcher.start()
        assert watcher.wait(30)
        status, text = fetch(f"{server.url}/metrics")
        assert status == 200
        assert 'focusmon_frames_analysed_total{stream="clip"} 25.0' in text
        assert 'focusmon_source_up{stream="clip"} 0.0' in text  # a file that ended
        assert fetch(f"{server.url}/healthz") == (200, "ok\nclip: ended\n")
        assert "process_start_time_seconds" in text  # what exporters are expected to have
        assert fetch(f"{server.url}/other")[0] == 404
    finally:
        server.close()
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    secure = watcher.serve_metrics("127.0.0.1", 0, certfile=str(cert), keyfile=str(key))
    try:
        assert secure.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        status, text = fetch(f"{secure.url}/metrics", context)
        assert status == 200 and "focusmon_state" in text
        with pytest.raises(OSError):  # plain HTTP is refused, not served
            urllib.request.urlopen(secure.url.replace("https", "http") + "/metrics", timeout=5)
    finally:
        secure.close()
    with pytest.raises(ConfigError, match="go together"):
        watcher.serve_metrics("127.0.0.1", 0, certfile=str(cert))


# -- a real Prometheus ------------------------------------------------------------------------

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


def test_health_names_a_stream_that_stopped_and_why(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    specs = [StreamSpec("demo", "demo"), StreamSpec("bad", str(clip), roi=(0, 0, 9999, 9999))]
    watcher = Watcher(specs, backend="numpy", on_change=lambda c: None)
    server = watcher.serve_metrics("127.0.0.1", 0)
    try:
        watcher.start()
        deadline = time.monotonic() + 30
        while not watcher.streams[1].done and time.monotonic() < deadline:
            time.sleep(0.05)
        status, text = fetch(f"{server.url}/healthz")
        lines = text.splitlines()
        assert status == 200 and lines[0] == "ok"  # the demo still runs
        assert lines[1].startswith("demo: running, ")
        assert lines[2].startswith("bad: stopped: ") and "roi" in lines[2]
        watcher.stop()
        assert watcher.wait(30)
        status, text = fetch(f"{server.url}/healthz")
        assert status == 503 and text.splitlines()[0] == "no stream is running"
    finally:
        watcher.close()
        server.close()
