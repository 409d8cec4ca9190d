"""MQTT: each stream's state, attributes and sharpness on a broker, with Home Assistant
discovery, delivered from a queue and a thread of its own.

Topics, under ``PREFIX`` (the URL's path; ``focusmon`` if none)::

    PREFIX/status                   online; offline (the broker's last will)   retained
    PREFIX/STREAM/state             ok, blurred, obstructed, dark, no_signal    retained
    PREFIX/STREAM/attributes        JSON: score, baseline, relative, ...       retained
    PREFIX/STREAM/sharpness         relative sharpness (score / baseline)       at most 1/s

and, for Home Assistant (``DISCOVERY/{binary_sensor,sensor}/NODE/STREAM_*/config``), one
device per stream: a ``problem`` binary sensor (on when the state is not ok), the state
and the relative sharpness, each available while ``PREFIX/status`` is online.

``STREAM`` is the stream's name where it is a safe topic level (letters, digits, ``_``,
``-``); otherwise those characters with the rest as ``_`` and a short hash of the name,
so two names never share a topic.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import logging
import math
import os
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError
from ..scheduler import STATES, AlertState, StateChange
from ._sink import BaseSink, StreamSnapshot, WatchView
from ._url import shown

log = logging.getLogger("focusmon.sinks")

DEFAULT_PREFIX = "focusmon"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
HOMEPAGE = "https://github.com/focusmon/focusmon"
#: Messages handed to the client library at once (sent, not yet acknowledged).
WINDOW = 100
#: How long a reconnect waits for what the library still held to be acknowledged before
#: the current state is published again over it.
SETTLE_S = 5.0
#: How long the sweep for entities of removed streams waits for the broker's retained
#: discovery configs.
SWEEP_S = 5.0

_LEVEL = re.compile(r"[A-Za-z0-9_-]+")
#: Each stream's Home Assistant entities: (component, key of its object id).
ENTITIES = (("binary_sensor", "problem"), ("sensor", "state"), ("sensor", "sharpness"))


@dataclass(frozen=True)
class Broker:
    """Where an ``mqtt://`` or ``mqtts://`` URL points."""

    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    prefix: str


def parse_url(url: str) -> Broker:
    """``mqtt://[user:pass@]host[:port][/prefix]`` or ``mqtts://...`` (TLS; port 8883).

    Raises
    ------
    ConfigError
        Naming what is wrong, the URL shown without its credentials.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        want = "mqtt(s)://[USER:PASSWORD@]HOST[:PORT][/PREFIX]"
        raise ConfigError(f"mqtt: the URL must be {want}, got {shown(url)}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"mqtt: the port must be a number up to 65535 in {shown(url)}") from None
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    levels = prefix.split("/")
    bad = any(not level or set(level) & set("+#\0") for level in levels)
    if parts.query or parts.fragment or bad:
        raise ConfigError(
            f"mqtt: the prefix must be topic levels without +, # or empty levels, got {shown(url)}"
        )
    if prefix.startswith("$"):
        raise ConfigError(f"mqtt: a prefix starting with $ is the broker's own, got {shown(url)}")
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return Broker(parts.scheme == "mqtts", parts.hostname, port, user, password, prefix)


def topic_level(stream: str) -> str:
    """The topic level of a stream's name: the name itself where it is safe (and at most
    64 characters), else a readable form with a hash of the name (so ``door cam`` and
    ``door_cam`` differ)."""
    if _LEVEL.fullmatch(stream) and len(stream) <= 64:
        return stream
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", stream).strip("_")[:48] or "stream"
    return f"{readable}_{hashlib.sha256(stream.encode()).hexdigest()[:8]}"


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Stream:
    """What the sink last knew of one stream (under the sink's lock)."""

    name: str
    level: str
    state: AlertState | None = None  # None: not judged yet (nothing published)
    previous: str | None = None
    since: str | None = None
    score: float | None = None
    baseline: float | None = None
    up: bool = False
    sent_numbers: tuple = ()
    detail: dict[str, Any] = field(default_factory=dict)  # the last change's (StateChange)

    @property
    def relative(self) -> float | None:
        if self.score is None or not self.baseline:
            return None
        return _number(self.score / self.baseline)

    def attributes(self) -> dict[str, Any]:
        return {
            "stream": self.name, "state": str(self.state), "previous": self.previous,
            "since": self.since, "score": self.score, "baseline": self.baseline,
            "relative": self.relative, "up": self.up, "time": _now_iso(), **self.detail,
        }  # fmt: skip


Message = tuple[str, bytes, bool]  # topic, payload, retained


class MqttSink(BaseSink):
    """Publishes each stream's state to an MQTT broker (paho-mqtt 2), QoS 1.

    The streams never wait for the broker: a change goes into a bounded queue (a full
    queue drops it and counts it, `dropped`) and one thread hands the queue to the client,
    at most `WINDOW` messages unacknowledged. paho-mqtt reconnects with backoff (1 s up
    to ``reconnect_max_s``); on each connect the sink publishes ``online``, the changes
    queued while away (in order), then the discovery configs and every stream's state
    and attributes as they are now; and removes the Home Assistant entities of streams
    its broker still holds but the configuration no longer has (``remove_stale``). The
    once-a-second numbers are not queued while away: they count as dropped. When
    Home Assistant announces itself (``online`` on ``DISCOVERY/status``) the discovery
    configs are published again. A refused connection is counted in `failures` and said
    once per outage; credentials are never shown.
    """

    label = "mqtt"

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        discovery: bool = True,
        discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
        remove_stale: bool = True,
        queue_size: int = 1000,
        interval_s: float = 1.0,
        keepalive_s: int = 30,
        reconnect_max_s: float = 60.0,
    ) -> None:
        broker = parse_url(url)
        if not _LEVEL.fullmatch(discovery_prefix.replace("/", "_")):
            why = f"must be topic levels of letters, digits, _ and -, got {discovery_prefix!r}"
            raise ConfigError(f"mqtt: discovery_prefix {why}")
        if not (queue_size > 0 and interval_s > 0 and keepalive_s > 0 and reconnect_max_s >= 1):
            raise ConfigError("mqtt: queue, interval, keepalive and backoff must be positive")
        if ca_file is not None and not broker.tls:
            raise ConfigError("mqtt: a CA file is for mqtts:// URLs")
        if ca_file is not None and not os.access(ca_file, os.R_OK):
            raise ConfigError(f"mqtt: cannot read the CA file {ca_file}")
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise ConfigError("--mqtt needs paho-mqtt: pip install 'focusmon[mqtt]'") from None
        self.name = shown(url)
        self.broker = broker
        self.prefix, self.discovery_prefix = broker.prefix, discovery_prefix.strip("/")
        self.node = re.sub(r"[^A-Za-z0-9_-]", "_", self.prefix)
        self.status_topic = f"{self.prefix}/status"
        self._discovery, self._remove_stale = discovery, remove_stale
        self._interval_s, self._keepalive_s = interval_s, keepalive_s
        self._paho = paho
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"focusmon-{os.urandom(6).hex()}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        client = self._client
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            try:
                client.tls_set(ca_certs=ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"mqtt: the CA file {ca_file}: {exc}") from None
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=int(reconnect_max_s))
        client.max_queued_messages_set(WINDOW * 2)
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_publish = self._on_disconnect, self._on_publish
        client.on_message = self._on_message

        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._version = ""
        self._watch: WatchView | None = None
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=queue_size)
        self._outbox: collections.deque[Message] = collections.deque()  # before the queue
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._fresh = False  # connected, the current state not yet published again
        self._connected_at = 0.0
        self._unacked = 0
        self._outage = False  # said once per outage
        self._sweep: dict[str, bytes] | None = None  # retained configs seen while sweeping
        self._sweep_until = 0.0
        self._sweep_done = threading.Event()
        self._sync_topic = f"{self.prefix}/_sync/{client._client_id.decode()}"
        self._thread: threading.Thread | None = None
        self.delivered = self.failures = self.dropped = self.connects = 0
        self.removed: list[str] = []  # topic levels of removed streams, as swept

    # -- what the watch calls ---------------------------------------------------------------

    def start(self, watch: WatchView) -> None:
        self._watch = watch
        self._version = str(watch.info.get("version", ""))
        with self._lock:
            for snap in watch.snapshot():
                self._streams[snap.name] = _Stream(snap.name, topic_level(snap.name))
        self._client.connect_async(self.broker.host, self.broker.port, self._keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def on_change(self, change: StateChange) -> None:
        with self._lock:
            stream = self._streams.get(change.stream)
            if stream is None:
                return
            stream.state, stream.previous = change.state, str(change.previous)
            stream.since = _now_iso()
            stream.score, stream.baseline = _number(change.score), _number(change.baseline)
            stream.detail = dict(change.detail)  # which tiles, what kind of blur ...
            messages = self._state_messages(stream)
        for message in messages:
            self._put(message)

    def close(self, wait_s: float = 5.0) -> None:
        """Deliver what is queued for at most ``wait_s``, say ``offline``, disconnect."""
        if self._thread is not None:
            deadline = time.monotonic() + wait_s
            while (
                self._connected.is_set()
                and time.monotonic() < deadline
                and (self._unacked or self._outbox or not self._queue.empty() or self._fresh)
            ):
                self._wake.set()
                time.sleep(0.05)
            self._closing.set()
            self._wake.set()
            self._thread.join(wait_s)
            if self._connected.is_set():
                info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(min(wait_s, 2.0))
                except (RuntimeError, ValueError):
                    pass  # not sent: the broker's last will says offline for us
            self._client.disconnect()
            self._client.loop_stop()
        left = self._queue.qsize() + len(self._outbox)
        if left:
            self.dropped += left
            log.warning("mqtt %s: %d message(s) not delivered before exit", self.name, left)

    # -- the messages -------------------------------------------------------------------------

    def _state_messages(self, stream: _Stream) -> list[Message]:
        base = f"{self.prefix}/{stream.level}"
        attributes = json.dumps(stream.attributes(), allow_nan=False).encode()
        stream.sent_numbers = (stream.score, stream.baseline, stream.up)
        return [(f"{base}/state", str(stream.state).encode(), True),
                (f"{base}/attributes", attributes, True)]  # fmt: skip

    def _discovery_messages(self, stream: _Stream) -> list[Message]:
        base = f"{self.prefix}/{stream.level}"
        uid = f"focusmon_{self.node}_{stream.level}"
        common = {
            "availability": [{"topic": self.status_topic}],
            "device": {
                "identifiers": [uid], "name": stream.name, "manufacturer": "focusmon",
                "model": "focus monitor", "sw_version": self._version,
            },
            "origin": {"name": "focusmon", "sw_version": self._version, "support_url": HOMEPAGE},
            "json_attributes_topic": f"{base}/attributes",
            "has_entity_name": True,
            "qos": 1,
        }  # fmt: skip
        entities = {
            "problem": {
                "name": "Problem", "device_class": "problem", "state_topic": f"{base}/state",
                "value_template": "{{ 'OFF' if value == 'ok' else 'ON' }}",
            },
            "state": {
                "name": "State", "device_class": "enum", "state_topic": f"{base}/state",
                "options": [str(s) for s in STATES], "icon": "mdi:cctv",
            },
            "sharpness": {
                "name": "Sharpness", "state_topic": f"{base}/attributes",
                "value_template": "{{ (value_json.relative * 100) | round(1) "
                                  "if value_json.relative is number else None }}",
                "unit_of_measurement": "%", "state_class": "measurement",
                "icon": "mdi:image-filter-center-focus",
            },
        }  # fmt: skip
        return [
            (self._config_topic(component, stream.level, key),
             json.dumps({**common, **entities[key], "unique_id": f"{uid}_{key}"}).encode(),
             True)
            for component, key in ENTITIES
        ]  # fmt: skip

    def _config_topic(self, component: str, level: str, key: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{level}_{key}/config"

    def _current_configs(self) -> set[str]:
        return {
            self._config_topic(c, s.level, k) for s in self._streams.values() for c, k in ENTITIES
        }

    def _put(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1
        self._wake.set()

    # -- the delivering thread ------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._closing.is_set():
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self._interval_s
                self._tick()
            if self._connected.is_set():
                if self._fresh and (not self._unacked or now - self._connected_at > SETTLE_S):
                    self._republish()
                if not self._fresh:
                    self._finish_sweep()
                    self._drain()
            self._wake.wait(max(0.0, min(next_tick - time.monotonic(), 0.5)))
            self._wake.clear()

    def _tick(self) -> None:
        """Once a second: each stream's numbers (attributes and sharpness) where they
        changed, and the state of a stream judged for the first time."""
        if self._watch is None:
            return
        try:
            snapshots: Iterable[StreamSnapshot] = self._watch.snapshot()
        except Exception:  # noqa: BLE001 (a watch closing under us: next time)
            return
        out: list[Message] = []
        numbers: list[Message] = []
        with self._lock:
            for snap in snapshots:
                stream = self._streams.get(snap.name)
                if stream is None:
                    continue
                stream.up = snap.up
                if snap.score is not None:
                    stream.score, stream.baseline = _number(snap.score), _number(snap.baseline)
                if stream.state is None:
                    if snap.score is None and snap.state is AlertState.OK:
                        continue  # no frame judged yet: nothing to say
                    stream.state = snap.state
                    out += self._state_messages(stream)
                elif (stream.score, stream.baseline, stream.up) != stream.sent_numbers:
                    numbers += self._state_messages(stream)[1:]
                    if stream.relative is not None:
                        topic = f"{self.prefix}/{stream.level}/sharpness"
                        numbers.append((topic, f"{stream.relative:.4g}".encode(), False))
        if not self._connected.is_set():  # the next connect publishes the numbers then
            self.dropped += len(numbers)
            numbers = []
        for message in out + numbers:
            self._put(message)

    def _republish(self) -> None:
        """Connected (again): ``online``, what was queued meanwhile (the changes, in
        order), then every stream's discovery configs, state and attributes now."""
        outbox: list[Message] = [(self.status_topic, b"online", True), *self._outbox]
        self._outbox.clear()
        while True:
            try:
                outbox.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for stream in self._streams.values():
                if self._discovery:
                    outbox += self._discovery_messages(stream)
                if stream.state is not None:
                    outbox += self._state_messages(stream)
        self._outbox.extend(outbox)
        self._fresh = False
        if self._discovery and self._remove_stale:
            self._start_sweep()

    def _drain(self) -> None:
        while self._connected.is_set() and self._unacked < WINDOW:
            if self._outbox:
                message = self._outbox.popleft()
            else:
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    return
            if not self._send(message):
                self._outbox.appendleft(message)
                return

    def _send(self, message: Message) -> bool:
        topic, payload, retain = message
        with self._lock:
            self._unacked += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        rc = info.rc
        if rc in (self._paho.MQTT_ERR_SUCCESS, self._paho.MQTT_ERR_NO_CONN):
            return True  # sent, or held by the library until it is connected again
        with self._lock:
            self._unacked -= 1
        if rc == self._paho.MQTT_ERR_QUEUE_SIZE:
            return False  # the library is full: again later
        self.failures += 1
        log.error("mqtt %s: cannot publish to %s: %s", self.name, topic,
                  self._paho.error_string(rc))  # fmt: skip
        return True

    # -- removing the entities of streams no longer watched -------------------------------------

    def _start_sweep(self) -> None:
        """Subscribe to this node's discovery configs: the broker sends those it retains,
        then (in order) the marker published after the subscription."""
        with self._lock:
            self._sweep = {}
        self._sweep_done.clear()
        self._sweep_until = time.monotonic() + SWEEP_S
        wildcard = f"{self.discovery_prefix}/+/{self.node}/+/config"
        self._client.subscribe([(wildcard, 1), (self._sync_topic, 1)])
        self._outbox.append((self._sync_topic, b"sync", False))

    def _finish_sweep(self) -> None:
        if self._sweep is None:
            return
        if not self._sweep_done.is_set() and time.monotonic() < self._sweep_until:
            return
        with self._lock:
            found, self._sweep = self._sweep, None
            current = self._current_configs()
        wildcard = f"{self.discovery_prefix}/+/{self.node}/+/config"
        self._client.unsubscribe([wildcard, self._sync_topic])
        removed: set[str] = set()
        for topic, payload in found.items():
            if topic in current:
                continue
            self._outbox.append((topic, b"", True))
            try:
                state_topic = str(json.loads(payload).get("state_topic", ""))
            except (ValueError, AttributeError):
                continue
            base, _, _ = state_topic.rpartition("/")
            level = base[len(self.prefix) + 1 :]
            if base.startswith(self.prefix + "/") and _LEVEL.fullmatch(level):
                removed.add(level)
        for level in sorted(removed):
            for leaf in ("state", "attributes"):
                self._outbox.append((f"{self.prefix}/{level}/{leaf}", b"", True))
        if removed:
            self.removed.extend(sorted(removed))
            log.info("mqtt %s: removed the entities of %d stream(s) no longer watched: %s",
                     self.name, len(removed), ", ".join(sorted(removed)))  # fmt: skip

    # -- the client library's callbacks (its network thread) ---------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.failures += 1
            if not self._outage:
                log.error("mqtt %s: the broker refused the connection: %s (retrying)",
                          self.name, reason_code)  # fmt: skip
                self._outage = True
            return
        self.connects += 1
        if self._outage or self.connects > 1:
            log.warning("mqtt %s: connected again", self.name)
        else:
            log.info("mqtt %s: connected", self.name)
        self._outage = False
        if self._discovery:
            client.subscribe(f"{self.discovery_prefix}/status", 1)
        self._connected_at = time.monotonic()
        self._fresh = True
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self.failures += 1
        if not self._outage:
            log.warning("mqtt %s: cannot connect (retrying with backoff)", self.name)
            self._outage = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if self._closing.is_set():
            return
        if not self._outage:
            log.warning("mqtt %s: connection lost (%s); reconnecting", self.name, reason_code)
            self._outage = True

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._unacked = max(self._unacked - 1, 0)
        self.delivered += 1
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        topic, payload = message.topic, message.payload
        if topic == self._sync_topic:
            self._sweep_done.set()
        elif topic == f"{self.discovery_prefix}/status":
            if payload == b"online":  # Home Assistant started: it reads the configs again
                self._fresh = True
        elif payload and message.retain:
            with self._lock:
                if self._sweep is not None:
                    self._sweep[topic] = bytes(payload)
        self._wake.set()
