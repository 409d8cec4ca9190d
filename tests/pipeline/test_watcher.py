"""The Watcher with its sinks: the endpoint serving a watch, and a stream's health."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from focusmon import ConfigError
from focusmon.config import ServiceSettings, StreamSpec, WatchConfig
from focusmon.pipeline import Watcher
from focusmon.sinks import BaseSink, MetricsEndpoint

from media import h264_clip
from servers import fetch


def test_endpoint_serves_metrics_and_health_over_http_and_https(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    server = MetricsEndpoint("127.0.0.1", 0)
    config = WatchConfig(ServiceSettings(backend="numpy"), [StreamSpec("clip", str(clip))])
    watcher = Watcher(config, [server])
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
    secure = MetricsEndpoint("127.0.0.1", 0, certfile=str(cert), keyfile=str(key))
    secure.start(watcher)  # the same (ended) watch, read by a second endpoint
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
        MetricsEndpoint("127.0.0.1", 0, certfile=str(cert))


def test_health_names_a_stream_that_stopped_and_why(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 1.0)
    specs = [StreamSpec("demo", "demo"), StreamSpec("bad", str(clip), roi=(0, 0, 9999, 9999))]
    server = MetricsEndpoint("127.0.0.1", 0)
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numpy"), specs), [server])
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
        watcher.close()  # and the endpoint


class Recorder(BaseSink):
    """A sink that keeps what it is told, and when."""

    def __init__(self, *, wants_best: bool = False, fail: bool = False) -> None:
        self.wants_best, self.fail = wants_best, fail
        self.calls: list[str] = []
        self.changes: list = []
        self.best: list = []
        self.lock = threading.Lock()

    def start(self, watch) -> None:
        self.calls.append("start")
        self.streams_at_start = [s.name for s in watch.snapshot()]
        self.info = dict(watch.info)

    def on_change(self, change) -> None:
        with self.lock:
            self.changes.append(change)
        if self.fail:
            raise OSError("disk full")

    def on_best(self, best) -> None:
        with self.lock:
            self.best.append(best)
        if self.fail:
            raise OSError("disk full")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture(scope="module")
def defocus_clip(tmp_path_factory, camera):
    """10 fps, 8 s: sharp, blurred from 4 s to 6 s, sharp again; lossless gray."""
    import cv2
    import numpy as np

    from media import write_video

    frames = []
    for i in range(80):
        view = camera[100:260, 100 + i % 10 : 300 + i % 10].astype(float)
        if 40 <= i < 60:
            view = cv2.GaussianBlur(view, (0, 0), 3.0)
        frames.append(np.clip(view, 0, 255).astype(np.uint8))
    return write_video(tmp_path_factory.mktemp("w") / "d.mkv", frames, pix_fmt="gray", rate=10)


def test_the_watcher_hands_changes_and_best_frames_to_its_sinks(defocus_clip, caplog):
    """Every sink hears every change, even after another sink failed; best frames are
    picked only for the sinks that want them; every sink is started before the streams and
    closed at the end."""
    service = ServiceSettings(backend="numpy", best_every=20)
    config = WatchConfig(service, [StreamSpec("a", str(defocus_clip))])
    failing, keeper, plain = Recorder(fail=True), Recorder(wants_best=True), Recorder()
    watcher = Watcher(config, [failing, keeper, plain])
    assert [s.calls for s in (failing, keeper, plain)] == [["start"]] * 3
    assert keeper.streams_at_start == ["a"] and keeper.info["backend"] == "numpy"
    watcher.start()
    assert watcher.wait(60)
    watcher.close()
    status = watcher.streams[0]
    assert status.error is None and status.source.stats.analysed == 80  # the stream went on
    states = [(c.previous, c.state) for c in plain.changes]
    assert states == [("ok", "blurred"), ("blurred", "ok")]
    assert failing.changes == plain.changes == keeper.changes
    assert len(keeper.best) == 4  # one per window of 20 frames
    assert all(b.stream == "a" and not 40 <= b.index < 60 for b in keeper.best[:2])
    assert plain.best == [] and failing.best == []  # they did not ask
    assert [s.calls for s in (failing, keeper, plain)] == [["start", "close"]] * 3
    failures = [r.getMessage() for r in caplog.records if "failed: disk full" in r.getMessage()]
    assert failures == [  # once for the burst of two, not once each
        "Recorder: on_change failed: disk full (counted, and not said again until it works)"
    ]
    assert watcher.sink_failures() == {"Recorder": 2}  # what focusmon_sink_failures_total says
    assert "works again" not in caplog.text  # on_change never did
    watcher.close()  # twice is harmless
    assert plain.calls == ["start", "close"]


def test_a_sink_that_cannot_start_leaves_nothing_open(defocus_clip):
    class Broken(BaseSink):
        def start(self, watch):
            raise RuntimeError("cannot start")

    config = WatchConfig(ServiceSettings(backend="numpy"), [StreamSpec("a", str(defocus_clip))])
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="cannot start"):
        Watcher(config, [Broken()])
    assert threading.active_count() == before


def test_frames_the_roi_does_not_fit_are_skipped_and_scoring_resumes(tmp_path, caplog):
    """A camera whose resolution drops below the ROI, then comes back (320x240, 160x120,
    320x240 with ROI 300x200): the small frames are counted and skipped, once said; the
    stream goes on and scores the large ones again. It used to stop for good."""
    parts = [h264_clip(tmp_path / f"{k}.ts", 0.8, size=size)
             for k, size in enumerate(("320x240", "160x120", "320x240"))]  # fmt: skip
    both = tmp_path / "switching.ts"
    both.write_bytes(b"".join(p.read_bytes() for p in parts))  # MPEG-TS concatenates
    spec = StreamSpec("cam", str(both), roi=(0, 0, 300, 200))
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numpy"), [spec]))
    watcher.start()
    assert watcher.wait(60)
    status = watcher.streams[0]
    assert status.error is None  # it never stopped
    assert status.unfit == 20 and status.source.stats.analysed == 40  # 20 small, 40 large
    snapshot = watcher.snapshot()[0]
    assert snapshot.frames_unfit == 20  # focusmon_frames_unfit_total
    said = [r.getMessage() for r in caplog.records if "cannot be scored" in r.getMessage()]
    assert len(said) == 1 and "`roi` must lie inside the 160x120 frame" in said[0]
    assert "cam: frames can be scored again" in caplog.text
    watcher.close()


def test_a_file_whose_frames_the_roi_never_fits_stops_with_the_reason(tmp_path):
    clip = h264_clip(tmp_path / "c.mp4", 0.4)
    spec = StreamSpec("bad", str(clip), roi=(0, 0, 9999, 9999))
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numpy"), [spec]))
    watcher.start()
    assert watcher.wait(30)
    status = watcher.streams[0]
    assert status.error is not None and "`roi` must lie inside the 320x240" in status.error
    assert status.unfit == 10 and status.source.stats.analysed == 0


def test_tile_metrics_are_served_when_asked_for(tmp_path):
    """--tile-metrics: each tile of the 4x4 focus map, its sharpness over its own
    baseline, once the tiles have learned; never NaN."""
    from focusmon.scheduler import AlertSettings

    clip = h264_clip(tmp_path / "c.mp4", 6.0)
    alerts = AlertSettings(learn_s=1.0, partial_s=1.0)
    server = MetricsEndpoint("127.0.0.1", 0)
    config = WatchConfig(ServiceSettings(backend="numba-cpu", tile_metrics=True),
                         [StreamSpec("clip", str(clip), alerts=alerts)])  # fmt: skip
    watcher = Watcher(config, [server])
    try:
        watcher.start()
        assert watcher.wait(60)
        status, text = fetch(f"{server.url}/metrics")
    finally:
        server.close()
    assert status == 200
    tiles = [line for line in text.splitlines()
             if line.startswith('focusmon_tile_sharpness_relative{')]  # fmt: skip
    assert len(tiles) == 16, text
    values = [float(line.rsplit(" ", 1)[1]) for line in tiles]
    assert all(0.2 < v < 5.0 for v in values), values  # a steady clip: near 1, finite
    assert 'row="3",stream="clip"' in tiles[-1] or any('row="3"' in t for t in tiles)
