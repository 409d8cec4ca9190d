"""A webhook: one JSON POST per state change, delivered from a thread of its own."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request

from .._errors import ConfigError
from ..scheduler import StateChange
from ._sink import BaseSink
from ._url import shown

log = logging.getLogger("focusmon.sinks")

SIGNATURE_HEADER = "X-Focusmon-Signature"


class WebhookSink(BaseSink):
    """POSTs each state change to ``url`` as JSON: the event as ``--events`` writes it, plus
    the stream's ``relative`` sharpness (score over baseline, when there is a baseline).

    The streams never wait for the receiver: changes go into a bounded queue (a full
    queue drops the change and counts it, `dropped`), and one thread delivers them in
    order, each within ``timeout_s``, retried with capped exponential backoff on a
    connection error, a timeout, a 5xx, 408 or 429, up to ``retries`` times; then it is
    counted as failed (`failures`) and logged once per run of failures. With ``secret``,
    each request carries ``X-Focusmon-Signature: sha256=<hex HMAC-SHA256 of the body>``.
    """

    label = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 4,
        backoff_max_s: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook: the URL must be http(s)://HOST/..., got {shown(url)}")
        if not (timeout_s > 0 and retries >= 0 and backoff_max_s > 0 and queue_size > 0):
            raise ConfigError("webhook: timeout, backoff and queue must be positive")
        self.url, self.name = url, shown(url)
        self._secret = secret.encode() if secret else None
        self._timeout_s, self._retries, self._backoff_max_s = timeout_s, retries, backoff_max_s
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._failing = False
        self.delivered = self.failures = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def on_change(self, change: StateChange) -> None:
        event = change.as_dict()
        score, baseline = change.score, change.baseline
        if baseline and math.isfinite(score) and math.isfinite(baseline):
            event["relative"] = score / baseline
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self, wait_s: float = 5.0) -> None:
        """Deliver what is queued for at most ``wait_s``, then stop; what is left is counted
        as failed and said in one line."""
        try:
            self._queue.put(None, timeout=wait_s)
        except queue.Full:
            pass
        self._thread.join(wait_s)
        self._closing.set()  # a retry still waiting gives up (and counts its event)
        self._thread.join(1.0)
        left = sum(1 for item in list(self._queue.queue) if item is not None)
        if left:
            self.failures += left
            log.error("webhook %s: %d event(s) not delivered before exit", self.name, left)

    # -- the delivering thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            self._deliver(json.dumps(event, allow_nan=False).encode())

    def _deliver(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "focusmon"}
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        why = ""
        for attempt in range(self._retries + 1):
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
                    reply.read(65536)
                self.delivered += 1
                if self._failing:
                    log.warning("webhook %s: delivers again", self.name)
                    self._failing = False
                return
            except urllib.error.HTTPError as exc:
                why = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses it: asking again will not help
            except (OSError, ValueError) as exc:  # refused, reset, timed out
                why = str(getattr(exc, "reason", exc)) or type(exc).__name__
            if attempt < self._retries and not self._closing.wait(self._backoff(attempt)):
                continue
            break
        self.failures += 1
        if not self._failing:
            log.error("webhook %s: an event could not be delivered (%s)", self.name, why)
            self._failing = True

    def _backoff(self, attempt: int) -> float:
        return min(0.5 * 2**attempt, self._backoff_max_s)
