"""MQTT against a real mosquitto on 127.0.0.1 (with a password file, and over TLS): each
stream's retained state, attributes and Home Assistant discovery read back by a subscriber;
a broker restarted (republished) or gone for good (streams unhindered, drops counted);
entities of removed streams cleared; secrets in no output."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from focusmon import ConfigError
from focusmon.cli import main
from focusmon.config import add_flags, from_args, load, parse, to_toml
from focusmon.pipeline import Watcher
from focusmon.scheduler import STATES
from focusmon.sinks import MetricsEndpoint
from focusmon.sinks.mqtt import MqttSink, parse_url, topic_level

from mqtt_broker import Mosquitto, Subscriber, mosquitto_reason, retained
from servers import free_port, wait_until

USER, PASSWORD = "focusmon", "p@ss:w/rd $ecret"
QUOTED = urllib.parse.quote(PASSWORD, safe="")

needs_broker = pytest.mark.skipif(mosquitto_reason() is not None, reason=mosquitto_reason() or "")


# -- URLs, names and settings -------------------------------------------------------------------


def test_urls_are_read_and_bad_ones_refused_without_their_password():
    broker = parse_url(f"mqtts://{USER}:{QUOTED}@broker.lan/site/a")
    assert (broker.tls, broker.host, broker.port) == (True, "broker.lan", 8883)
    assert (broker.username, broker.password, broker.prefix) == (USER, PASSWORD, "site/a")
    plain = parse_url("mqtt://127.0.0.1:1884")
    assert (plain.tls, plain.port, plain.prefix, plain.username) == (False, 1884, "focusmon", None)
    for bad in ("http://host/x", "mqtt:///x", "mqtt://host/a/+/b", "mqtt://host/a//b",
                "mqtt://host/$SYS", "mqtt://host:99999", "mqtt://host/x?y=1"):  # fmt: skip
        url = bad.replace("://", f"://{USER}:{QUOTED}@", 1)
        with pytest.raises(ConfigError, match="mqtt") as caught:
            parse_url(url)
        assert QUOTED not in str(caught.value) and PASSWORD not in str(caught.value)


def test_every_stream_gets_a_safe_topic_level_of_its_own():
    names = ["door", "Door-2_b", "door cam/1", "door_cam_1", "a+b#", "#", "ünï côdé", "x" * 300]
    levels = [topic_level(n) for n in names]
    assert len(set(levels)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", level) for level in levels), levels
    assert levels[:2] == ["door", "Door-2_b"]  # a safe name is its own level
    assert levels[2].startswith("door_cam_1_") and levels[3] == "door_cam_1"


def test_the_file_takes_a_table_or_flat_keys_and_check_config_hides_the_password(tmp_path):
    url = f"mqtts://{USER}:{QUOTED}@broker.lan/site"
    table = parse({"mqtt": {"url": url, "ca_file": "/etc/ca.pem", "discovery_prefix": "ha",
                            "remove_stale": False},
                   "streams": [{"source": "demo"}]})  # fmt: skip
    flat = parse({"mqtt": url, "mqtt_ca_file": "/etc/ca.pem", "mqtt_discovery_prefix": "ha",
                  "mqtt_remove_stale": False, "streams": [{"source": "demo"}]})  # fmt: skip
    assert table.service == flat.service
    assert (table.service.mqtt, table.service.mqtt_discovery) == (url, True)
    text = to_toml(table)
    assert PASSWORD not in text and QUOTED not in text and "mqtts://***@broker.lan/site" in text
    (tmp_path / "back.toml").write_text(text)
    assert load(tmp_path / "back.toml").service.mqtt_discovery_prefix == "ha"

    streams = [{"source": "demo"}]
    with pytest.raises(ConfigError, match="mqtt: unknown key 'discovery_prefx'; did you mean"):
        parse({"mqtt": {"url": url, "discovery_prefx": "x"}, "streams": streams})
    with pytest.raises(ConfigError, match="mqtt: url is missing"):
        parse({"mqtt": {"ca_file": "x"}, "streams": streams})
    with pytest.raises(ConfigError, match="also given as mqtt_ca_file"):
        parse({"mqtt": {"url": url, "ca_file": "x"}, "mqtt_ca_file": "y", "streams": streams})
    with pytest.raises(ConfigError, match=r"mqtt\.discovery must be true or false"):
        parse({"mqtt": {"url": url, "discovery": "yes"}, "streams": streams})
    with pytest.raises(ConfigError, match="mqtt must be mqtt") as caught:
        parse({"mqtt": f"https://{USER}:{QUOTED}@host/", "streams": streams})
    assert QUOTED not in str(caught.value)


def test_the_flags_make_the_same_settings():
    parser = argparse.ArgumentParser()
    parser.add_argument("sources", nargs="*")
    add_flags(parser, "watch")
    args = parser.parse_args(["demo", "--mqtt", "mqtt://h/x", "--no-mqtt-discovery",
                              "--mqtt-discovery-prefix", "ha/test"])  # fmt: skip
    service = from_args(args).service
    assert (service.mqtt, service.mqtt_discovery, service.mqtt_discovery_prefix) == (
        "mqtt://h/x", False, "ha/test")  # fmt: skip


def test_a_ca_file_that_cannot_be_read_or_is_no_certificate_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the CA file"):
        MqttSink("mqtts://127.0.0.1/x", ca_file=str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="CA file"):
        MqttSink("mqtts://127.0.0.1/x", ca_file=str(tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match="for mqtts"):
        MqttSink("mqtt://127.0.0.1/x", ca_file=str(tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match="discovery_prefix"):
        MqttSink("mqtt://127.0.0.1:1/x", discovery_prefix="a/+/b")


# -- a real broker ------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path):
    if mosquitto_reason():
        pytest.skip(mosquitto_reason())
    broker = Mosquitto(tmp_path, users={USER: PASSWORD}).start()
    yield broker
    broker.stop()


def url_of(broker: Mosquitto, prefix: str = "fm", password: str = QUOTED) -> str:
    return f"mqtt://{USER}:{password}@127.0.0.1:{broker.port}/{prefix}"


def demo_watch(url: str, names: list[str], **sink_options) -> tuple[Watcher, MqttSink]:
    config = parse({"streams": [{"name": n, "source": "demo"} for n in names]})
    sink = MqttSink(url, **sink_options)
    return Watcher(config, [sink]), sink


def deduplicated(items: list) -> list:
    return [x for k, x in enumerate(items) if k == 0 or items[k - 1] != x]


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(120)
def test_watch_publishes_states_attributes_and_discovery_and_says_offline_at_exit(
    tmp_path, broker, defocus_clip, capsys, caplog
):
    live = Subscriber(broker, "#", auth=(USER, PASSWORD))
    events_file = tmp_path / "events.jsonl"
    try:
        code = main(["watch", str(defocus_clip), "--name", "door cam", "--no-metrics",
                     "--mqtt", url_of(broker), "--events", str(events_file)])  # fmt: skip
        assert code == 0
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
        assert [e["state"] for e in events][:2] == ["blurred", "ok"], events
        level = topic_level("door cam")
        state_topic = f"fm/{level}/state"
        wait_until(lambda: live.last("fm/status") == b"offline", 10, "offline at exit")
        states = [p.decode() for p in live.payloads(state_topic)]
        # Every change, in order, then the state at the end (published again on connect).
        assert deduplicated(states)[-len(events) :] == [e["state"] for e in events], states
        # While blurred, the attributes also say what the event said: the kind of blur.
        seen = [json.loads(p) for p in live.payloads(f"fm/{level}/attributes")]
        blurred = [a for a in seen if a["state"] == "blurred"]
        assert blurred and all(a["blur"] == "defocus" for a in blurred), seen
        assert all("blur" not in a for a in seen if a["state"] == "ok")
    finally:
        live.close()

    held = retained(broker, "#", auth=(USER, PASSWORD))
    assert held["fm/status"] == b"offline" and held[state_topic] == b"ok"
    attributes = json.loads(held[f"fm/{level}/attributes"])
    assert attributes["stream"] == "door cam" and attributes["state"] == "ok"
    assert attributes["previous"] == "blurred"
    assert attributes["relative"] == pytest.approx(attributes["score"] / attributes["baseline"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", attributes["time"])

    configs = {t: json.loads(p) for t, p in held.items() if t.startswith("homeassistant/")}
    assert sorted(configs) == sorted(
        f"homeassistant/{c}/fm/{level}_{k}/config"
        for c, k in (("binary_sensor", "problem"), ("sensor", "state"), ("sensor", "sharpness"))
    )
    problem = configs[f"homeassistant/binary_sensor/fm/{level}_problem/config"]
    assert problem["device_class"] == "problem" and problem["state_topic"] == state_topic
    assert problem["availability"] == [{"topic": "fm/status"}]
    assert problem["device"]["name"] == "door cam"
    assert len({c["unique_id"] for c in configs.values()}) == 3
    assert len({json.dumps(c["device"]) for c in configs.values()}) == 1  # one device
    state = configs[f"homeassistant/sensor/fm/{level}_state/config"]
    assert set(state["options"]) == {str(s) for s in STATES} and "partial" in state["options"]

    said = capsys.readouterr().err + caplog.text + "".join(held.keys())
    payloads = b"".join(held.values()).decode()
    for secret in (PASSWORD, QUOTED, "w/rd"):
        assert secret not in said and secret not in payloads
    assert f"mqtt://***@127.0.0.1:{broker.port}/fm: connected" in said


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(120)
def test_a_wrong_password_is_said_and_counted_and_the_stream_runs_on(broker, caplog):
    watcher, sink = demo_watch(url_of(broker, password="wrong%20one"), ["demo"])
    watcher.start()
    try:
        wait_until(lambda: sink.failures >= 1, 20, "the refusal counted")
        frames = watcher.snapshot()[0].frames_analysed
        wait_until(lambda: watcher.snapshot()[0].frames_analysed > frames + 10, 20, "frames")
        assert watcher.sink_failures()["mqtt"] >= 1 and sink.connects == 0
    finally:
        watcher.stop()
        watcher.close()
    assert "refused the connection: Not authorized" in caplog.text
    assert "wrong" not in caplog.text


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(150)
def test_a_restarted_broker_gets_everything_again_and_one_gone_costs_the_streams_nothing(
    broker, caplog
):
    watcher, sink = demo_watch(url_of(broker), ["one", "two"], queue_size=5, interval_s=0.2)
    port = free_port()
    endpoint = MetricsEndpoint("127.0.0.1", port)
    endpoint.start(watcher)
    watcher.start()
    try:
        wanted = {"fm/status", "fm/one/state", "fm/two/attributes",
                  "homeassistant/sensor/fm/two_sharpness/config"}  # fmt: skip

        def has_all() -> bool:
            return wanted <= set(retained(broker, "#", settle_s=0.3, auth=(USER, PASSWORD)))

        wait_until(has_all, 30, "the state, attributes and configs retained")
        broker.restart()  # no persistence: the broker forgets every retained message
        assert not retained(broker, "#", settle_s=0.3, auth=(USER, PASSWORD))
        wait_until(has_all, 40, "everything published again after the restart")
        assert sink.connects == 2
        assert retained(broker, "fm/status", auth=(USER, PASSWORD)) == {"fm/status": b"online"}

        before = [s.frames_analysed for s in watcher.snapshot()]
        started = time.monotonic()
        time.sleep(3)
        rate_up = (sum(s.frames_analysed for s in watcher.snapshot()) - sum(before)) / (
            time.monotonic() - started
        )
        broker.stop(signal.SIGKILL)  # gone for good, without a word
        dropped = sink.dropped
        before = [s.frames_analysed for s in watcher.snapshot()]
        started = time.monotonic()
        time.sleep(6)
        rate_down = (sum(s.frames_analysed for s in watcher.snapshot()) - sum(before)) / (
            time.monotonic() - started
        )
        assert rate_up > 0 and rate_down > 0.7 * rate_up, (rate_up, rate_down)
        wait_until(lambda: sink.dropped > dropped + 10, 20, "drops counted")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        found = re.search(rb'focusmon_sink_dropped_total\{sink="mqtt"\} (\d+)', text)
        assert found and int(found.group(1)) > dropped, text[-2000:]
    finally:
        watcher.stop()
        watcher.close()
        endpoint.close()
    assert "connection lost" in caplog.text and "connected again" in caplog.text


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(120)
def test_streams_removed_from_the_config_lose_their_entities_and_others_are_kept(broker):
    auth = (USER, PASSWORD)
    for names in (["one", "two"], ["two"]):
        watcher, sink = demo_watch(url_of(broker), names)
        watcher.start()
        try:
            topics = {f"fm/{name}/state" for name in names}
            wait_until(lambda t=topics: t <= set(retained(broker, "fm/+/state", settle_s=0.3,
                                                          auth=auth)), 30, "states")  # fmt: skip
            if names == ["two"]:
                wait_until(lambda s=sink: s.removed == ["one"], 20, "one's entities removed")
        finally:
            watcher.stop()
            watcher.close()
    held = retained(broker, "#", auth=auth)
    assert not [t for t in held if "/one" in t], sorted(held)
    assert len([t for t in held if t.startswith("homeassistant/") and "/two_" in t]) == 3
    # Another focusmon's entities (another prefix) are not this one's to remove.
    other = Subscriber(broker, "x", auth=auth)
    other.client.publish("homeassistant/sensor/elsewhere/one_state/config", b"{}", 1, True)
    other.close()
    watcher, sink = demo_watch(url_of(broker), ["two"])
    watcher.start()
    try:
        wait_until(lambda: sink.connects == 1 and sink._sweep is None, 20, "a sweep")
    finally:
        watcher.stop()
        watcher.close()
    assert sink.removed == []
    assert "homeassistant/sensor/elsewhere/one_state/config" in retained(broker, "#", auth=auth)


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(120)
def test_home_assistant_starting_again_gets_the_configs_again(broker):
    watcher, sink = demo_watch(url_of(broker), ["one"])
    watcher.start()
    auth = (USER, PASSWORD)
    topic = "homeassistant/binary_sensor/fm/one_problem/config"
    live = Subscriber(broker, topic, auth=auth)
    try:
        wait_until(lambda: live.last(topic), 30, "the discovery config")
        count = len(live.payloads(topic))
        live.client.publish("homeassistant/status", b"online", qos=1)
        wait_until(lambda: len(live.payloads(topic)) > count, 20, "the config again")
    finally:
        live.close()
        watcher.stop()
        watcher.close()


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing: cannot make test certificates")
    d = tmp_path_factory.mktemp("mqtt-tls")
    for name in ("cert", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(d / f"{name}-key.pem"), "-out", str(d / f"{name}.pem")],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    return d


@needs_broker
@pytest.mark.network
@pytest.mark.timeout(120)
# paho-mqtt 2.2 leaves the socket of a failed TLS handshake for the collector to close
# (Client._ssl_wrap_socket): a ResourceWarning of the library's, not of focusmon's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mqtts_with_a_ca_file_and_a_broker_it_does_not_trust(tmp_path, certs, caplog):
    tls = {"cert": certs / "cert.pem", "key": certs / "cert-key.pem"}
    broker = Mosquitto(tmp_path, users={USER: PASSWORD}, tls=tls).start()
    try:
        url = f"mqtts://{USER}:{QUOTED}@127.0.0.1:{broker.port}/secure"
        watcher, sink = demo_watch(url, ["cam"], ca_file=str(certs / "cert.pem"))
        watcher.start()
        try:
            wait_until(lambda: sink.connects == 1, 30, "connected over TLS")
            held = lambda: retained(broker, "secure/#", settle_s=0.3, auth=(USER, PASSWORD),  # noqa: E731
                                    ca=certs / "cert.pem")  # fmt: skip
            wait_until(lambda: "secure/cam/state" in held(), 30, "the state over TLS")
        finally:
            watcher.stop()
            watcher.close()

        watcher, sink = demo_watch(url, ["cam"], ca_file=str(certs / "other.pem"))
        watcher.start()
        try:
            wait_until(lambda: sink.failures >= 1, 30, "the untrusted broker counted")
            frames = watcher.snapshot()[0].frames_analysed
            wait_until(lambda: watcher.snapshot()[0].frames_analysed > frames + 10, 20, "frames")
            assert sink.connects == 0
        finally:
            watcher.stop()
            watcher.close()
        assert "cannot connect" in caplog.text
    finally:
        broker.stop()
