"""A real MQTT broker on 127.0.0.1 for tests: Debian's mosquitto, started and stopped by the
test (../shared/TESTING.md), and a subscriber that reads back what was published.

The broker keeps nothing on disk (``persistence false``): a restart forgets its retained
messages, so what a client has after one is what it published again.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from servers import Process, free_port, poll


def mosquitto_reason() -> str | None:
    missing = [t for t in ("mosquitto", "mosquitto_passwd") if shutil.which(t) is None]
    return f"{', '.join(missing)} missing: apt-get install mosquitto" if missing else None


class Mosquitto:
    """One broker: anonymous, or with ``users`` (a password file), over TLS with
    ``tls`` (``{"cert": ..., "key": ...}``, PEM files). `start`, `stop`, `restart`."""

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        tls: dict[str, Path] | None = None,
    ) -> None:
        self.root, self.port = root, free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 f"user {getpass.getuser()}", "log_dest stderr"]  # fmt: skip
        if users:
            passwords = root / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password],
                               check=True, capture_output=True, timeout=30)  # fmt: skip
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        self.config = root / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: Process | None = None

    def start(self) -> Mosquitto:
        self.process = Process(["mosquitto", "-c", str(self.config)])
        if poll(lambda: self._listening() or self.process.proc.poll() is not None, 15) is None:
            self.stop()
            raise RuntimeError("mosquitto did not start listening within 15 s")
        if self.process.proc.poll() is not None:
            err = self.process.proc.stderr.read()
            self.stop()
            raise RuntimeError(f"mosquitto exited: {err}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.proc.wait(timeout=10)
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False


class Subscriber:
    """A paho client subscribed to ``topics``, keeping every message and the newest
    payload of each topic (an empty payload clears the topic). A broker sends a retained
    message as retained only to a new subscription: a live one sees it plain."""

    def __init__(
        self,
        broker: Mosquitto,
        topics: str | list[str] = "#",
        *,
        auth: tuple[str, str] | None = None,
        ca: Path | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}  # the newest payload of each topic
        self.retained: dict[str, bytes] = {}  # of those, the ones sent as retained
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if auth:
            self.client.username_pw_set(*auth)
        if ca:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        names = [topics] if isinstance(topics, str) else topics
        self.client.subscribe([(t, 1) for t in names])
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("the subscriber's subscription was not acknowledged in 10 s")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            topic, payload = message.topic, bytes(message.payload)
            self.messages.append((topic, payload, bool(message.retain)))
            for table, keep in ((self.latest, True), (self.retained, message.retain)):
                if payload and keep:
                    table[topic] = payload
                elif not payload:
                    table.pop(topic, None)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last(self, topic: str) -> bytes | None:
        with self._lock:
            return self.latest.get(topic)

    def json(self, topic: str) -> dict | None:
        payload = self.last(topic)
        return None if payload is None else json.loads(payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(broker: Mosquitto, topics: str = "#", settle_s: float = 1.0, **kwargs) -> dict:
    """What the broker retains under ``topics`` now: a new subscriber's view, read for
    ``settle_s``."""
    subscriber = Subscriber(broker, topics, **kwargs)
    try:
        time.sleep(settle_s)
        return dict(subscriber.retained)
    finally:
        subscriber.close()
