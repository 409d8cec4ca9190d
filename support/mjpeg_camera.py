"""Live MJPEG cameras over HTTP on 127.0.0.1, whose lens a test can knock out of focus.

Each camera serves ``multipart/x-mixed-replace`` JPEG frames (what MJPEG IP cameras send;
focusmon reads it with ``format = "mpjpeg"``) of a photograph at a small size, a few a
second, to any number of clients at once; ``camera.blurred = True`` blurs what every
client sees from the next frame on, ``camera.frozen = True`` resends the last picture.
Cheap enough for a dozen streams on a 2-core machine.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import skimage.data

BOUNDARY = "focusmonframe"


class Camera:
    """One camera: its scene (a photograph crop, shifted per seed), its lens, and its
    sensor's noise (each frame a new draw, as a live camera's: the picture is never
    quite the same). ``frozen = True`` resends the last picture, byte for byte."""

    def __init__(self, seed: int, size: tuple[int, int] = (160, 120), fps: float = 5.0):
        width, height = size
        photo = skimage.data.camera()
        y, x = (37 * seed) % (photo.shape[0] - height), (53 * seed) % (photo.shape[1] - width)
        self.sharp = np.ascontiguousarray(photo[y : y + height, x : x + width])
        self.soft = cv2.GaussianBlur(self.sharp, (0, 0), 4.0)
        self.fps = fps
        self.blurred = False
        self.frozen = False
        self.clients = 0
        self._rng = np.random.default_rng(seed)
        self._last: bytes | None = None

    def jpeg(self, k: int) -> bytes:
        if self.frozen and self._last is not None:
            return self._last
        frame = (self.soft if self.blurred else self.sharp).astype(np.int16)
        frame += self._rng.integers(-3, 4, frame.shape, dtype=np.int16)  # sensor noise
        ok, data = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8),
                                [cv2.IMWRITE_JPEG_QUALITY, 92])  # fmt: skip
        assert ok
        self._last = data.tobytes()
        return self._last


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CameraServer:
    """Several cameras on one port: ``/cam/N`` is camera N."""

    def __init__(self, n: int, **kwargs) -> None:
        self.cameras = [Camera(k, **kwargs) for k in range(n)]
        self._stop = threading.Event()
        cameras, stop = self.cameras, self._stop

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                try:
                    camera = cameras[int(self.path.rsplit("/", 1)[-1])]
                except (ValueError, IndexError):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.end_headers()
                camera.clients += 1
                k = 0
                try:
                    while not stop.is_set():
                        data = camera.jpeg(k)
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        k += 1
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    camera.clients -= 1

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, k: int) -> str:
        return f"http://127.0.0.1:{self.port}/cam/{k}"

    def start(self) -> CameraServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def mjpeg_cameras(n: int, **kwargs) -> Iterator[CameraServer]:
    server = CameraServer(n, **kwargs).start()
    try:
        yield server
    finally:
        server.close()
