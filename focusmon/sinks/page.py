"""The live page: a card per stream for the person at the camera, and the JSON and images
behind it, served on the metrics endpoint's server.

Routes (every stream name in a URL is percent-decoded and matched exactly against the
configured names; it is never a path):

* ``/`` — the page (``?stream=NAME``: one stream, full screen, refreshed faster);
  ``/page.js``, ``/page.css`` — its script and style, shipped in the package;
* ``/streams.json`` — every stream now (`~focusmon.pipeline.Watcher.live`);
* ``/streams/NAME/frame.jpg`` — the newest kept small frame, with focus peaking (edges
  above ``PEAKING_LEVEL`` tinted; ``?peaking=0`` for none);
* ``/streams/NAME/best.jpg?seconds=T`` — the sharpest kept frame of the last T seconds;
* ``/streams/NAME/history.json?seconds=T`` — the records of the last T seconds (all
  kept by default): the curve.

Frames are encoded only when asked for, and each encoding is kept until a newer frame
comes, so several pages cost one encoding a frame: a watch that nobody looks at encodes
nothing.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import threading
import urllib.parse
from collections.abc import Callable, Mapping

import cv2
import numpy as np

from ..scheduler import KeptFrame
from ._http import Handler, Reply, Request
from ._sink import WatchView

#: Focus peaking: a pixel whose Sobel gradient magnitude (8-bit grey levels, the 3x3
#: kernel's own scale) is above this is tinted. An edge of 40 grey levels over a pixel or
#: two passes; the same edge blurred over five does not.
PEAKING_LEVEL = 150.0
#: The tint (B, G, R) of peaking pixels.
PEAKING_COLOUR = (40, 40, 255)
JPEG_QUALITY = 80
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/page.js": ("page.js", "text/javascript; charset=utf-8"),
           "/page.css": ("page.css", "text/css; charset=utf-8")}  # fmt: skip
_NO_STORE = {"Cache-Control": "no-store"}
#: The page's own files: only its own scripts, styles, images and requests, never framed
#: by another site (it shows camera images).
_PAGE_HEADERS = {
    "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
}  # fmt: skip


def peaking(pixels: np.ndarray, level: float = PEAKING_LEVEL) -> np.ndarray:
    """A BGR picture of the grey ``pixels`` with the edges above ``level`` tinted."""
    gx = cv2.Sobel(pixels, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(pixels, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    picture = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    picture[cv2.magnitude(gx, gy) > level] = PEAKING_COLOUR
    return picture


def encode_jpeg(picture: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the frame could not be encoded")
    return data.tobytes()


class LivePage:
    """The page's routes over a running watch (`routes`), for `MetricsEndpoint`.

    ``watch`` gives the `WatchView` once the watch has started (None before: 503).
    """

    def __init__(self, watch: Callable[[], WatchView | None]) -> None:
        self._watch = watch
        self._lock = threading.Lock()
        # (stream, kind) -> (the frame's time and index, peaking, the JPEG): one each.
        self._encoded: dict[tuple[str, str], tuple[tuple, bytes]] = {}
        #: JPEG encodings made so far (for tests and the benchmark: none without a page).
        self.encodings = 0

    def routes(self) -> Mapping[str, Handler]:
        routes: dict[str, Handler] = {path: self._static for path in _STATIC}
        routes["/streams.json"] = self._streams
        routes["/streams/"] = self._stream  # a prefix: /streams/NAME/...
        return routes

    # -- handlers -------------------------------------------------------------------------

    def _static(self, request: Request) -> Reply:
        name, content_type = _STATIC[request.path]
        body = importlib.resources.files(__package__).joinpath("page", name).read_bytes()
        return Reply(200, body, content_type, _PAGE_HEADERS)

    def _streams(self, request: Request) -> Reply:
        watch = self._watch()
        if watch is None:
            return Reply(503, b"not started\n")
        body = json.dumps({"streams": list(watch.live())}, allow_nan=False).encode()
        return Reply(200, body, "application/json", _NO_STORE)

    def _stream(self, request: Request) -> Reply:
        watch = self._watch()
        if watch is None:
            return Reply(503, b"not started\n")
        rest = request.path[len("/streams/") :]
        quoted, sep, leaf = rest.rpartition("/")
        try:
            name = urllib.parse.unquote(quoted, errors="strict") if sep else ""
        except UnicodeDecodeError:
            return Reply(400, b"a stream's name in a URL is percent-encoded UTF-8\n")
        query = urllib.parse.parse_qs(request.query, max_num_fields=8)
        try:
            seconds = _seconds(query)
        except ValueError as exc:
            return Reply(400, f"{exc}\n".encode())
        if leaf == "history.json":
            history = watch.history_of(name, seconds)
            if history is None:
                return _no_stream(name)
            return Reply(200, json.dumps(history, allow_nan=False).encode(), "application/json",
                         _NO_STORE)  # fmt: skip
        if leaf not in ("frame.jpg", "best.jpg"):
            return Reply(404, b"a stream has frame.jpg, best.jpg and history.json\n")
        if name not in watch.stream_names():
            return _no_stream(name)
        if leaf == "best.jpg":
            if seconds is None:
                return Reply(400, b"best.jpg needs ?seconds=T (T > 0)\n")
            kept = watch.kept_frame(name, seconds)
        else:
            kept = watch.kept_frame(name)
        if kept is None:
            return Reply(404, b"no frame kept yet\n", headers=_NO_STORE)
        tinted = query.get("peaking", ["1"])[-1] != "0"
        body = self._jpeg(name, leaf, kept, tinted)
        return Reply(200, body, "image/jpeg", {**_NO_STORE, "X-Frame-Time": repr(kept.time),
                                               "X-Frame-Index": str(kept.index)})  # fmt: skip

    def _jpeg(self, name: str, kind: str, kept: KeptFrame, tinted: bool) -> bytes:
        key, stamp = (name, kind), (kept.time, kept.index, tinted)
        with self._lock:
            cached = self._encoded.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        picture = peaking(kept.pixels) if tinted else kept.pixels
        body = encode_jpeg(picture)
        with self._lock:
            self._encoded[key] = (stamp, body)
            self.encodings += 1
        return body


def _seconds(query: Mapping[str, list[str]]) -> float | None:
    values = query.get("seconds")
    if not values:
        return None
    try:
        seconds = float(values[-1])
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a number > 0, got {values[-1][:40]!r}")
    return seconds


def _no_stream(name: str) -> Reply:
    shown = json.dumps(name[:100])
    return Reply(404, f"no stream is called {shown}\n".encode())
