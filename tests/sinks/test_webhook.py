"""Webhooks against a real HTTP receiver on 127.0.0.1 that answers 200, then 500s, then
stalls: signed JSON, retries, counted failures and drops, and streams that never wait."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from focusmon import ConfigError
from focusmon.cli import main
from focusmon.scheduler import AlertState, StateChange
from focusmon.sinks import WebhookSink

from servers import poll

SECRET = "w3bh00k-s3cret"


class Receiver:
    """An HTTP server whose answer the test sets: 200, an error code, or a stall."""

    def __init__(self) -> None:
        self.mode: int | str = 200
        self.bodies: list[tuple[bytes, dict]] = []
        self.attempts = 0
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.mode == "stall":
                    receiver.release.wait(30)
                    return
                if receiver.mode == 200:
                    receiver.bodies.append((body, dict(self.headers)))
                self.send_response(int(receiver.mode))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc123"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def change(k: int, state: AlertState = AlertState.BLURRED) -> StateChange:
    return StateChange(f"cam{k}", float(k), state, AlertState.OK, 0.25, 1.0, True)


def test_events_arrive_signed_then_fail_counted_after_retries_then_stall(receiver):
    sink = WebhookSink(receiver.url, secret=SECRET, timeout_s=0.5, retries=2,
                       backoff_max_s=0.05)  # fmt: skip
    try:
        sink.on_change(change(1))
        assert poll(lambda: sink.delivered == 1, 10) is not None
        body, headers = receiver.bodies[0]
        event = json.loads(body)
        assert event["stream"] == "cam1" and event["state"] == "blurred"
        assert event["relative"] == pytest.approx(0.25)
        want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Focusmon-Signature"] == f"sha256={want}"

        receiver.mode, receiver.attempts = 500, 0
        sink.on_change(change(2))
        assert poll(lambda: sink.failures == 1, 10) is not None
        assert receiver.attempts == 3  # the first try and two retries

        receiver.mode, receiver.attempts = 404, 0  # refused: not retried
        sink.on_change(change(3))
        assert poll(lambda: sink.failures == 2, 10) is not None
        assert receiver.attempts == 1

        receiver.mode = "stall"
        sink.on_change(change(4))
        assert poll(lambda: sink.failures == 3, 15) is not None  # timeouts, then counted
        receiver.mode = 200
        sink.on_change(change(5))
        assert poll(lambda: sink.delivered == 2, 15) is not None  # and it delivers again
    finally:
        sink.close()


def test_a_stalled_receiver_never_holds_up_the_streams(receiver):
    receiver.mode = "stall"
    sink = WebhookSink(receiver.url, timeout_s=2.0, retries=0, queue_size=8)
    try:
        for k in range(500):  # from the streams' threads: returns at once, queue or drop
            sink.on_change(change(k))
        assert sink.dropped >= 500 - 8 - 1
    finally:
        receiver.release.set()
        sink.close(wait_s=1.0)


@pytest.mark.parametrize("url", ["ftp://host/x", "not a url", "http:///path"])
def test_bad_webhook_urls_are_refused(url):
    with pytest.raises(ConfigError, match="webhook"):
        WebhookSink(url)


def test_watch_posts_each_change_and_a_dead_receiver_costs_nothing(
    tmp_path, capsys, caplog, receiver, defocus_clip
):
    clip = defocus_clip
    events_file = str(tmp_path / "e.jsonl")
    code = main(["watch", str(clip), "--name", "clip", "--no-metrics", "--webhook",
                 receiver.url, "--webhook-secret", SECRET, "--events", events_file])  # fmt: skip
    assert code == 0
    events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert events, "the clip must change state"
    assert poll(lambda: len(receiver.bodies) == len(events), 10) is not None
    posted = [json.loads(b) for b, _ in receiver.bodies]
    assert [(e["stream"], e["state"]) for e in posted] == [
        (e["stream"], e["state"]) for e in events
    ]
    err = capsys.readouterr().err
    assert "abc123" not in err and SECRET not in err

    receiver.close()  # nobody listens any more
    start = time.monotonic()
    code = main(["watch", str(clip), "--name", "clip", "--no-metrics", "--webhook",
                 receiver.url])  # fmt: skip
    assert code == 0 and time.monotonic() - start < 60  # bounded: close gives up
    said = capsys.readouterr().err + caplog.text
    assert "could not be delivered" in said or "not delivered before exit" in said, said
    assert "abc123" not in said and "hook?***" in said
