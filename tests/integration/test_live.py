"""Live sources against real servers on 127.0.0.1: RTSP (gst-rtsp-server), UDP and HTTP
(ffmpeg), HLS (a static HTTP server). Each test is bounded in time and stops its servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from focusmon import SourceError, SourceTimeout
from focusmon.cli import main
from focusmon.pipeline import iter_frames
from focusmon.source import SourceOptions, SourceState, open_source

from media import h264_clip
from servers import (
    ffmpeg_reason,
    ffmpeg_sender,
    free_port,
    http_folder,
    rtsp_camera,
    rtsp_server_reason,
    vlc_reason,
    vlc_rtsp_server,
    wait_until,
)

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]
_no_rtsp = rtsp_server_reason()
needs_rtsp = pytest.mark.skipif(_no_rtsp is not None, reason=_no_rtsp or "")
needs_ffmpeg = pytest.mark.skipif(ffmpeg_reason() is not None, reason=ffmpeg_reason() or "")

# Short timeouts so that faults show within seconds.
FAST = SourceOptions(timeout_s=2.0, reconnect_initial_s=0.2, reconnect_max_s=1.0)


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory):
    return h264_clip(tmp_path_factory.mktemp("live") / "clip.ts", 2.0, gop=10)


def take(frames, n):
    return [next(frames) for _ in range(n)]


@needs_rtsp
def test_rtsp_camera_killed_and_restarted_is_reconnected():
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/cam"
    with rtsp_camera(port):
        source = open_source(url, FAST)
        frames = iter_frames(source)
        first = take(frames, 10)
        assert source.state is SourceState.UP and source.live
        assert first[0].luma.shape == (240, 320)
    killed = time.monotonic()
    wait_until(lambda: source.state is SourceState.RECONNECTING, 10, "the disconnect")
    noticed = time.monotonic() - killed
    with rtsp_camera(port):  # the same port, at once
        restarted = time.monotonic()
        again = take(frames, 5)
        recovered = time.monotonic() - restarted
    frames.close()
    assert source.stats.reconnects >= 1
    times = [f.pts for f in first + again]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))  # never backwards
    assert again[-1].index > first[-1].index
    assert noticed < FAST.timeout_s + 1 and recovered < 10
    print(f"killed camera noticed in {noticed:.2f} s, recovered in {recovered:.2f} s")


@needs_rtsp
def test_rtsp_camera_stalled_is_seen_within_the_timeout_and_resumes():
    port = free_port()
    with rtsp_camera(port) as camera:
        source = open_source(f"rtsp://127.0.0.1:{port}/cam", FAST)
        frames = iter_frames(source)
        take(frames, 5)
        camera.signal(__import__("signal").SIGSTOP)
        stopped = time.monotonic()
        wait_until(lambda: source.state is SourceState.STALLED, 5, "stalled")
        stalled_after = time.monotonic() - stopped
        wait_until(lambda: source.state is SourceState.RECONNECTING, 10, "the read timeout")
        camera.signal(__import__("signal").SIGCONT)
        take(frames, 5)
        assert source.state is SourceState.UP
        frames.close()
    assert stalled_after <= FAST.timeout_s
    assert source.stats.reconnects >= 1


@needs_rtsp
def test_a_slow_consumer_gets_the_newest_frame_and_drops_are_counted():
    port = free_port()
    with rtsp_camera(port):
        source = open_source(f"rtsp://127.0.0.1:{port}/cam", FAST)
        frames = iter_frames(source)
        take(frames, 3)
        ages, pts, walls = [], [], []
        for frame in frames:
            walls.append(time.monotonic())
            ages.append(walls[-1] - frame.arrival)
            pts.append(frame.pts)
            time.sleep(0.2)  # a scorer five times slower than the camera
            if len(ages) == 12:
                break
        frames.close()
    assert source.stats.dropped > 20
    assert max(ages) < 0.5  # never more than about one slow step behind
    # Past the start-up burst, stream time advances with the wall clock: nothing queues up.
    assert pts[-1] - pts[5] == pytest.approx(walls[-1] - walls[5], abs=0.3)


@needs_rtsp
def test_credentials_never_appear_in_output_logs_or_errors(tmp_path):
    port = free_port()
    secret = "hunter2"
    with rtsp_camera(port, auth=f"admin:{secret}"):
        good = subprocess.run(
            [sys.executable, "-m", "focusmon", "--debug", "score", "--frames", "3",
             f"rtsp://admin:{secret}@127.0.0.1:{port}/cam?token={secret}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        bad = subprocess.run(
            [sys.executable, "-m", "focusmon", "--debug", "score",
             f"rtsp://admin:wrong{secret}@127.0.0.1:{port}/cam"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert len(good.stdout.splitlines()) == 3
    assert bad.returncode == 2 and "401" in bad.stderr
    assert "rtsp://***@127.0.0.1" in bad.stderr
    for run in (good, bad):
        assert secret not in run.stdout + run.stderr


@needs_rtsp
def test_nothing_listening_fails_fast_with_one_line(capsys):
    port = free_port()
    started = time.monotonic()
    assert main(["score", f"rtsp://127.0.0.1:{port}/cam"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Connection refused" in err
    assert time.monotonic() - started < 5


def test_a_udp_url_nothing_sends_to_times_out(capsys):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="no answer within 1 s"):
        open_source(f"udp://127.0.0.1:{port}", SourceOptions(timeout_s=1.0))
    assert time.monotonic() - started < 4
    assert main(["score", "--timeout", "1", f"udp://127.0.0.1:{port}"]) == 2
    assert "no answer" in capsys.readouterr().err


@needs_ffmpeg
def test_udp_mpegts_stream_and_its_sender_stopping(ts_clip):
    port = free_port()
    url = f"udp://127.0.0.1:{port}"
    with ffmpeg_sender("-i", str(ts_clip), "-c", "copy", "-f", "mpegts", f"{url}?pkt_size=1316"):
        source = open_source(url, FAST)
        frames = iter_frames(source)
        got = take(frames, 10)
        assert source.state is SourceState.UP
    stopped = time.monotonic()
    wait_until(lambda: source.state is SourceState.STALLED, 5, "stalled")
    assert time.monotonic() - stopped <= FAST.timeout_s
    wait_until(lambda: source.stats.reconnects >= 1, 10, "a reconnect")
    frames.close()
    assert all(f.luma.shape == (240, 320) for f in got)


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["mpegts", "mjpeg"])
def test_http_streams(ts_clip, kind):
    port = free_port()
    if kind == "mpegts":
        url = f"http://127.0.0.1:{port}/s.ts"
        args = ["-i", str(ts_clip), "-c", "copy", "-f", "mpegts", "-listen", "1", url]
    else:  # an MJPEG camera: multipart JPEGs, found by the .mjpg suffix
        url = f"http://127.0.0.1:{port}/cam.mjpg"
        args = ["-i", str(ts_clip), "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg",
                "-listen", "1", url]  # fmt: skip
    options = SourceOptions(timeout_s=5.0, reconnect_initial_s=0.1, retry_first_connect=True)
    with ffmpeg_sender(*args):
        source = open_source(url, options)  # the sender may not listen yet: retried
        frames = iter_frames(source)
        got = take(frames, 10)
        frames.close()
    assert [f.luma.shape for f in got] == [(240, 320)] * 10
    assert all(np.isfinite(f.pts) for f in got)


@needs_ffmpeg
def test_hls_playlist_over_http(tmp_path, ts_clip):
    hls = tmp_path / "hls"
    hls.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(ts_clip), "-c", "copy", "-f", "hls",
         "-hls_time", "0.5", "-hls_list_size", "0", str(hls / "index.m3u8")],
        check=True, timeout=60,
    )  # fmt: skip
    with http_folder(hls) as base:
        source = open_source(f"{base}/index.m3u8", FAST)
        frames = iter_frames(source)
        got = take(frames, 20)
        frames.close()
        with pytest.raises(SourceError, match="404"):
            open_source(f"{base}/missing.ts", FAST)
    assert got[-1].pts > got[0].pts


@needs_ffmpeg
def test_an_http_file_is_read_whole_without_drops(tmp_path):
    h264_clip(tmp_path / "c.mp4", 1.0, "-movflags", "+faststart")  # no Range requests here
    with http_folder(tmp_path) as base:
        source = open_source(f"{base}/c.mp4", FAST)
        assert not source.live
        frames = list(iter_frames(source))
    assert len(frames) == 25 and source.stats.dropped == 0


def test_v4l2_device_errors_are_clean(tmp_path):
    with pytest.raises(SourceError, match="/dev/video99"):
        open_source("/dev/video99", FAST)


@pytest.mark.skipif(vlc_reason() is not None, reason=vlc_reason() or "")
def test_a_camera_that_refuses_rtp_over_tcp_is_read_over_udp(tmp_path, capsys, caplog):
    """VLC's RTSP server answers TCP with 461, as some cameras do: ``auto`` (the default)
    takes UDP and says so once; forcing TCP fails in one line that says why."""
    clip = h264_clip(tmp_path / "clip.mp4", 20.0)  # long: VLC's loop restarts its stream
    with vlc_rtsp_server(free_port(), clip) as url:
        wait_until(lambda: main(["score", url, "--frames", "1"]) == 0, 20, "VLC streaming")
        capsys.readouterr()
        caplog.clear()
        assert main(["score", url, "--frames", "10"]) == 0
        out, _ = capsys.readouterr()
        assert len(out.splitlines()) == 10
        said = [r.getMessage() for r in caplog.records if "RTP over TCP" in r.getMessage()]
        assert len(said) == 1 and "taking UDP" in said[0]
        assert main(["score", url, "--frames", "10", "--rtsp-transport", "tcp"]) == 2
        err = capsys.readouterr().err
        assert "focusmon: error: cannot open" in err and "Protocol not supported" in err


@needs_ffmpeg
def test_an_http_file_cut_half_way_is_a_warning(tmp_path, capsys):
    """The connection reset half-way, reconnecting refused: FFmpeg ends the file as if it
    were whole, and ``score`` used to exit 0 without a word after half the frames."""
    clip = h264_clip(tmp_path / "c.mp4", 2.0, "-movflags", "+faststart")
    data = clip.read_bytes()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_half() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n"
            conn.sendall(head % len(data) + data[: len(data) // 2])
        listener.close()  # no second chance: reconnecting is refused

    server = threading.Thread(target=serve_half, daemon=True)
    server.start()
    code = main(["score", f"http://127.0.0.1:{port}/c.mp4", "--timeout-s", "2"])
    server.join(10)
    out, err = capsys.readouterr()
    assert 0 < len(out.splitlines()) < 50  # the frames that came were scored
    said = [line for line in err.splitlines() if line.startswith("focusmon: ")]
    # FFmpeg ends such a file either as if it were whole (then a warning says it is not)
    # or with its reconnection's failure (then the error says how far it got): never
    # silently.
    if code == 0:
        assert len(said) == 1 and "of the 50 frames its container declares" in said[0], err
    else:
        assert code == 1 and len(said) == 1, err
        assert said[0].startswith("focusmon: error: ") and "stopped at frame" in said[0]
        assert "of 50" in said[0]


@needs_rtsp
def test_score_on_a_live_source_writes_each_line_as_it_comes(tmp_path):
    """Piped, each frame's line leaves at once, not in bursts of a full buffer (up to
    1.4 s late before)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as users run it
    with rtsp_camera(port):
        proc = subprocess.Popen(
            [sys.executable, "-m", "focusmon", "score", f"rtsp://127.0.0.1:{port}/cam",
             "--frames", "20"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env,
        )  # fmt: skip
        try:
            arrivals = []
            for line in proc.stdout:
                arrivals.append(time.monotonic())
                assert json.loads(line)["index"] >= 0
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    assert len(arrivals) == 20
    # 20 frames of a 25 fps camera take ~0.8 s to come: written as they come, the lines
    # arrive spread over that time; held in a buffer, they would arrive at once.
    assert arrivals[-1] - arrivals[0] > 0.3, arrivals
