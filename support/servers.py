"""Real servers on 127.0.0.1 that tests start, bound in time and always clean up.

See ../shared/TESTING.md: the RTSP camera is Debian's gst-rtsp-server run by the system
Python (gi is not in a virtual environment); UDP and HTTP senders are the ffmpeg CLI.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

SYSTEM_PYTHON = "/usr/bin/python3"
CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(condition: Callable[[], T], timeout_s: float, step_s: float = 0.05) -> T | None:
    """``condition()`` once it is truthy, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(step_s)


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail the test after ``timeout_s``."""
    if poll(condition, timeout_s) is None:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def fetch(url: str, context: ssl.SSLContext | None = None, timeout: float = 10) -> tuple[int, str]:
    """``(status, body)`` of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def rtsp_server_reason() -> str | None:
    """Why the RTSP camera cannot run here, or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
         "from gi.repository import GstRtspServer"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    if probe.returncode:
        return "gst-rtsp-server missing: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0"
    return None


def vlc_reason() -> str | None:
    """Why VLC's RTSP server cannot run here, or None."""
    if not shutil.which("cvlc"):
        return "VLC is missing: apt-get install vlc-bin vlc-plugin-base"
    if not shutil.which("setpriv"):
        return "setpriv is missing (util-linux): VLC refuses to run as root"
    return None


@contextmanager
def vlc_rtsp_server(port: int, clip: Path) -> Iterator[str]:
    """VLC 3's RTSP server streaming ``clip`` in a loop; yields its URL. It offers RTP over
    UDP only, and answers a request for TCP with ``461 Unsupported transport``, as some
    real cameras do. VLC will not run as root: it runs as ``nobody``, on a copy of the clip
    in a folder that user can read."""
    folder = Path(tempfile.mkdtemp(prefix="focusmon-vlc-"))
    folder.chmod(0o755)
    shutil.copy(clip, folder / clip.name)
    (folder / clip.name).chmod(0o644)
    user = (
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if os.geteuid() == 0
        else []
    )
    server = Process([*user, "cvlc", "-q", str(folder / clip.name), "--loop", "--sout-keep",
                      "--sout", f"#rtp{{sdp=rtsp://127.0.0.1:{port}/stream}}"])  # fmt: skip
    url = f"rtsp://127.0.0.1:{port}/stream"
    try:
        if poll(lambda: _listening(port), 15) is None:
            pytest.fail(f"VLC's RTSP server did not start: {server.proc.stderr.read()[-500:]!r}")
        yield url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def ffmpeg_reason() -> str | None:
    return None if shutil.which("ffmpeg") else "the ffmpeg CLI is missing: apt-get install ffmpeg"


class Process:
    """A child in its own session, so a signal reaches it and everything it started."""

    def __init__(
        self, args: list[str], *, ready_line: str | None = None, env: dict | None = None
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        if ready_line is not None:
            line = _readline(self.proc, timeout_s=15)
            if line.strip() != ready_line:
                self.stop()
                pytest.fail(f"{args[:3]} did not start: {line!r} {self.proc.stderr.read()!r}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped process cannot die of SIGTERM
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        finally:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe:
                    pipe.close()


def _readline(proc: subprocess.Popen, timeout_s: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return result[0] if result else ""


def camera_launch(pattern: str = "ball", size: str = "320x240", fps: int = 25) -> str:
    """A gst-rtsp-server launch line: a live ``videotestsrc`` pattern in H.264."""
    width, height = size.split("x")
    return (
        f"( videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={width},"
        f"height={height},framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
        "key-int-max=25 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


@contextmanager
def rtsp_camera(port: int, launch: str = "", auth: str | None = None) -> Iterator[Process]:
    """An RTSP camera at ``rtsp://127.0.0.1:{port}/cam`` (``auth`` is ``user:password``)."""
    args = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), str(port), launch]
    if auth:
        args.append(auth)
    camera = Process(args, ready_line="READY")
    try:
        yield camera
    finally:
        camera.stop()


@contextmanager
def ffmpeg_sender(*args: str) -> Iterator[Process]:
    """``ffmpeg -re -stream_loop -1`` with ``args``: a live sender until the block ends."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
               "-stream_loop", "-1", *args]  # fmt: skip
    sender = Process(command)
    try:
        yield sender
    finally:
        sender.stop()


@contextmanager
def http_folder(root: Path) -> Iterator[str]:
    """A static HTTP server for ``root`` (HLS playlists, 404s); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass
