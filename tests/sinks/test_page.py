"""The live page's JSON and images over HTTP: names matched exactly, frames encoded only
when asked for (once for any number of pages), the best frame of a window, focus peaking."""

from __future__ import annotations

import json
import urllib.parse

import cv2
import numpy as np

from focusmon.config import ServiceSettings, StreamSpec, WatchConfig
from focusmon.pipeline import Watcher
from focusmon.sinks import MetricsEndpoint
from focusmon.sinks.page import PEAKING_COLOUR, peaking

from media import write_video

NAMES = ("door cam/1", "../etc", "yard")


def clip_with_a_blur(path):
    """4 s at 10 fps of a photograph, its middle second blurred."""
    import skimage.data

    camera = skimage.data.camera()[100:340, 100:420]
    frames = []
    for i in range(40):
        view = camera if not 15 <= i < 25 else cv2.GaussianBlur(camera, (0, 0), 4.0)
        frames.append(np.ascontiguousarray(view))
    return write_video(path, frames, pix_fmt="gray", rate=10)


def get_bytes(url: str) -> tuple[int, bytes, dict]:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_the_page_serves_each_stream_by_its_exact_name(tmp_path):
    clip = clip_with_a_blur(tmp_path / "c.mkv")
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    config = WatchConfig(ServiceSettings(backend="numba-cpu", frames_s=5.0),
                         [StreamSpec(name, str(clip)) for name in NAMES])  # fmt: skip
    watcher = Watcher(config, [endpoint])
    try:
        watcher.start()
        assert watcher.wait(60)
        assert endpoint.page.encodings == 0  # nobody looked: nothing encoded
        status, html, headers = get_bytes(endpoint.url + "/")
        assert status == 200 and b"page.js" in html
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        status, body, _ = get_bytes(endpoint.url + "/streams.json")
        live = json.loads(body)["streams"]
        assert status == 200 and [s["name"] for s in live] == list(NAMES)
        # The newest kept frame: the sharpest of the last quarter second (3.75 to 4 s).
        assert all(3.75 <= s["frame"] <= 3.9 and s["score"] > 0 for s in live), live
        base = endpoint.url + "/streams/" + urllib.parse.quote("door cam/1", safe="")
        status, jpeg, headers = get_bytes(base + "/frame.jpg")
        assert status == 200 and headers["X-Frame-Index"] in ("38", "39")
        assert get_bytes(base + "/frame.jpg")[1] == jpeg and endpoint.page.encodings == 1
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (240, 320, 3)
        # The best of the last 4 s is a sharp frame (the blur was 1.5 to 2.5 s), and it is
        # the best kept: its index among the kept frames' of the history.
        status, _, headers = get_bytes(base + "/best.jpg?seconds=4&peaking=0")
        history = json.loads(get_bytes(base + "/history.json")[1])
        assert status == 200 and not 15 <= int(headers["X-Frame-Index"]) < 25
        assert len(history["time"]) == 40 and set(history["state"]) <= {"ok", "blurred"}
        blurred = [s for t, s in zip(history["time"], history["score"], strict=True)
                   if 1.6 <= t < 2.5]  # fmt: skip
        assert max(blurred) < 0.5 * max(history["score"])
        # Names are matched exactly, never as paths ("../etc" is a stream's name here);
        # wrong queries are refused.
        for path, code in (
            ("/streams/..%2Fetc/frame.jpg", 200), ("/streams/../etc/frame.jpg", 200),
            ("/streams/door%20cam/frame.jpg", 404), ("/streams/yard/x.png", 404),
            ("/streams/yard/best.jpg", 400), ("/streams/yard/best.jpg?seconds=0", 400),
            ("/streams/yard/best.jpg?seconds=nan", 400), ("/streams/%C0%AF/frame.jpg", 400),
            ("/streams/yard", 404), ("/nope", 404),
        ):  # fmt: skip
            assert get_bytes(endpoint.url + path)[0] == code, path
    finally:
        watcher.close()
        endpoint.close()


def test_peaking_tints_the_sharp_edges_only():
    edge = np.zeros((40, 40), np.uint8)
    edge[:, 20:] = 200
    tinted = peaking(edge)
    hits = np.all(tinted == PEAKING_COLOUR, axis=2)
    assert hits[:, 19:21].all() and hits.sum() == 80  # the edge's two columns, all rows
    soft = cv2.GaussianBlur(edge, (0, 0), 5.0)
    assert not np.all(peaking(soft) == PEAKING_COLOUR, axis=2).any()


def test_no_page_is_served_when_turned_off():
    endpoint = MetricsEndpoint("127.0.0.1", 0, page=False)
    endpoint.server.start()
    try:
        assert endpoint.page is None
        assert [get_bytes(endpoint.url + p)[0] for p in ("/", "/streams.json")] == [404, 404]
    finally:
        endpoint.close()
