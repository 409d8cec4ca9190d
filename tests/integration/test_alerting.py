"""End to end with a real Prometheus and a real Alertmanager, on the deploy files' own alert
rules (deploy/prometheus/rules.yml) and route and inhibit rules
(deploy/alertmanager/alertmanager.yml): a defocus in a live MJPEG stream reaches a webhook
receiver and resolves when focus returns; a killed camera shows only ``no_signal``, with its
``blurred`` inhibited.

Only what a test must change is changed: every ``for:`` is divided by 30 (1m -> 2s, 2m -> 4s,
10m -> 20s, so the rules keep their order), the route's group_wait/group_interval/
repeat_interval are 1s/1s/1h and the webhook's URL points at the test's own receiver. The
routes and inhibit rules are the deploy file's.

Why the inhibition is shown with a posted alert: focusmon_state is one-hot per stream, so a
stream's ``blurred`` series is 0 from the moment it is ``no_signal`` and its real
FocusmonStreamBlurred resolves at once; the other half of FocusmonNoSignal
(``focusmon_source_up == 0``) overlaps ``blurred`` for at most focusmon's idle check (0.5 s),
far less than its ``for``. The real alerts never overlap, so the test shows that (no
``blurred`` firing for the dead camera, only ``no_signal``) and then posts a
FocusmonStreamBlurred for the same stream to Alertmanager while the real FocusmonNoSignal
fires: Alertmanager must suppress it (``inhibitedBy`` the real alert) and never notify it,
while an identical alert for another stream, and one for another instance's camera of the
same name (names are unique per instance only), posted with it, are notified.
"""

from __future__ import annotations

import datetime
import http.server
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from mjpeg_camera import CameraServer
from servers import Process, fetch, free_port, poll, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

#: Each rule's `for:` is divided by this: 1m -> 2s, 2m -> 4s, 10m -> 20s.
FOR_SCALE = 30
GROUP_INTERVAL_S = 1
_FOR = re.compile(r"^(?P<key>[ \t]+for:[ \t]*)(?P<n>\d+)(?P<unit>[smh])[ \t]*$", re.MULTILINE)
_SECONDS = {"s": 1, "m": 60, "h": 3600}

TOOLS = ("prometheus", "prometheus-alertmanager", "amtool")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]


def shortened_rules(text: str) -> str:
    """The rules file with every alert's `for:` divided by FOR_SCALE, nothing else changed."""

    def shorten(match: re.Match) -> str:
        seconds = int(match["n"]) * _SECONDS[match["unit"]]
        return f"{match['key']}{max(seconds // FOR_SCALE, 1)}s"

    short, count = _FOR.subn(shorten, text)
    before, after = yaml.safe_load(text), yaml.safe_load(short)
    rules = [r for g in before["groups"] for r in g["rules"]]
    assert count == sum("for" in r for r in rules) > 0, "a `for:` the rewrite did not match"
    for old, new in zip(rules, [r for g in after["groups"] for r in g["rules"]], strict=True):
        assert {**old, "for": None} == {**new, "for": None}, old.get("alert")
    return short


def short_alertmanager_config(receiver_url: str) -> str:
    """The deploy file's Alertmanager config with short group timings and our receiver."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    interval = f"{GROUP_INTERVAL_S}s"
    config["route"].update(group_wait=interval, group_interval=interval, repeat_interval="1h")
    hooks = [hook for r in config["receivers"] for hook in r.get("webhook_configs", [])]
    assert len(hooks) == 1, "one webhook receiver expected in the deploy file"
    path = urllib.parse.urlsplit(hooks[0]["url"]).path
    hooks[0]["url"] = receiver_url + path
    return yaml.safe_dump(config, sort_keys=False)


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.notifications.append(json.loads(body))
                    receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def count(self) -> int:
        with self._lock:
            return len(self.notifications)

    def seen(self) -> list[tuple[str, str, str]]:
        """``(alertname, stream, status)`` of every alert in every notification so far."""
        with self._lock:
            return [(a["labels"].get("alertname"), a["labels"].get("stream"), a["status"])
                    for n in self.notifications for a in n["alerts"]]  # fmt: skip

    def alerts(self, alertname: str, stream: str, status: str, start: int = 0) -> list:
        """``(index, notification, alert)`` of each alert with these labels and status in
        the notifications from index ``start`` on."""
        with self._lock:
            notifications = list(enumerate(self.notifications))[start:]
        return [
            (i, n, a)
            for i, n in notifications
            for a in n["alerts"]
            if a["labels"].get("alertname") == alertname
            and a["labels"].get("stream") == stream
            and a["status"] == status
        ]

    def wait(self, alertname: str, stream: str, status: str, timeout_s: float) -> tuple:
        """The first such alert received; fails the test after ``timeout_s``."""
        found = poll(lambda: self.alerts(alertname, stream, status), timeout_s, step_s=0.1)
        if not found:
            pytest.fail(f"no {status} {alertname} for stream {stream!r} reached the receiver "
                        f"within {timeout_s} s; it got {self.seen()}")  # fmt: skip
        return found[0]


def get_json(url: str) -> dict | list:
    status, text = fetch(url)
    assert status == 200, f"{url}: {status} {text[:500]}"
    return json.loads(text)


def post_json(url: str, payload: object) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.read()


def query(prometheus: str, promql: str) -> list:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    return get_json(url)["data"]["result"]


def streams_where(prometheus: str, promql: str) -> set[str]:
    return {r["metric"]["stream"] for r in query(prometheus, promql)}


def prometheus_alerts(prometheus: str) -> list:
    return get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]


def alertmanager_alerts(alertmanager: str, *matchers: str) -> list:
    params = urllib.parse.urlencode([("filter", m) for m in matchers])
    return get_json(f"{alertmanager}/api/v2/alerts?{params}")


def metrics_text(port: int) -> str:
    try:
        return fetch(f"http://127.0.0.1:{port}/metrics", timeout=2)[1]
    except OSError:
        return ""


def wait_ready(base: str, process: Process, what: str, timeout_s: float = 30) -> None:
    def ready() -> bool:
        if process.proc.poll() is not None:
            pytest.fail(f"{what} exited ({process.proc.returncode}): "
                        f"{process.proc.stderr.read()[-2000:]}")  # fmt: skip
        try:
            return fetch(f"{base}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(ready, timeout_s, f"{what} ready at {base}")


def stop_watch(watch: Process) -> None:
    watch.signal(signal.SIGTERM)
    try:
        watch.proc.wait(timeout=20)
    finally:
        watch.stop()


@pytest.mark.network
@pytest.mark.timeout(240)
@pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} missing: apt-get install prometheus prometheus-alertmanager",
)
def test_defocus_reaches_the_receiver_and_a_dead_camera_shows_only_no_signal(tmp_path):
    metrics_port, prom_port, am_port = free_port(), free_port(), free_port()
    instance = f"127.0.0.1:{metrics_port}"
    prometheus_url = f"http://127.0.0.1:{prom_port}"
    alertmanager_url = f"http://127.0.0.1:{am_port}"
    (tmp_path / "rules.yml").write_text(shortened_rules(RULES.read_text()))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "alerting:\n  alertmanagers:\n"
        f"  - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n"
        "scrape_configs:\n- job_name: focusmon\n"
        f"  static_configs: [{{targets: ['{instance}']}}]\n"
    )
    deploy_rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    deploy_alerts = {r["alert"] for r in deploy_rules if "alert" in r}

    receiver = Receiver()
    camera_a, camera_b = CameraServer(1).start(), CameraServer(1).start()
    processes: list[Process] = []
    watch = None
    try:
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(short_alertmanager_config(receiver.url))
        check = subprocess.run(["amtool", "check-config", str(am_config)], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr

        # focusmon first, both cameras connected and their baselines learned, so that
        # Prometheus never sees a stream still connecting (source_up 0: FocusmonNoSignal)
        # nor an exporter not yet listening (FocusmonExporterDown).
        watch = Process([sys.executable, "-m", "focusmon", "watch",
                         camera_a.url(0), camera_b.url(0), "--name", "a", "--name", "b",
                         "--format", "mpjpeg", "--timeout-s", "2",
                         "--metrics-addr", instance])  # fmt: skip

        def learned() -> bool:
            text = metrics_text(metrics_port)
            return all(
                f'focusmon_source_up{{stream="{s}"}} 1.0' in text
                and f'focusmon_sharpness_relative{{stream="{s}"}}' in text
                for s in "ab"
            )

        wait_until(learned, 90, "focusmon connected to both cameras with baselines learned")

        processes.append(Process(["prometheus-alertmanager", f"--config.file={am_config}",
                                  f"--storage.path={tmp_path / 'am'}",
                                  f"--web.listen-address=127.0.0.1:{am_port}",
                                  "--cluster.listen-address=", "--log.level=warn"]))  # fmt: skip
        wait_ready(alertmanager_url, processes[-1], "Alertmanager")
        processes.append(Process(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{prom_port}",
                                  "--log.level=warn"]))  # fmt: skip
        wait_ready(prometheus_url, processes[-1], "Prometheus")

        # The deploy file's rules are what Prometheus evaluates, with the short `for`s.
        groups = get_json(f"{prometheus_url}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
        assert set(loaded) == deploy_alerts
        assert loaded["FocusmonStreamBlurred"]["duration"] == 2
        assert loaded["FocusmonNoSignal"]["duration"] == 4
        wait_until(
            lambda: get_json(f"{prometheus_url}/api/v1/alertmanagers")["data"][
                "activeAlertmanagers"
            ],
            30,
            "Prometheus to find its Alertmanager",
        )
        wait_until(lambda: streams_where(prometheus_url, 'focusmon_state{job="focusmon",'
                                         'state="ok"} == 1') == {"a", "b"}, 30,
                   "Prometheus to scrape both streams ok")  # fmt: skip

        # -- a defocus reaches the receiver ---------------------------------------------------
        camera_a.cameras[0].blurred = True
        camera_b.cameras[0].blurred = True
        blurred = 'focusmon_state{job="focusmon", state="blurred"} == 1'
        wait_until(lambda: streams_where(prometheus_url, blurred) == {"a", "b"}, 30,
                   "focusmon's state blurred for both streams, in Prometheus")  # fmt: skip
        _, note, alert = receiver.wait("FocusmonStreamBlurred", "a", "firing", 60)
        receiver.wait("FocusmonStreamBlurred", "b", "firing", 60)
        assert note["status"] == "firing" and note["receiver"] == "camera-owners"
        assert note["groupLabels"] == {"alertname": "FocusmonStreamBlurred",
                                       "instance": instance, "stream": "a"}  # fmt: skip
        assert len(note["alerts"]) == 1, note  # one group per camera
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels["job"] == "focusmon" and labels["instance"] == instance, labels
        assert labels["severity"] == "warning", labels
        assert annotations["summary"] == "Camera a is out of focus", annotations
        assert annotations["runbook_url"].endswith("/deploy/README.md#runbook-blurred")
        # The description's query of focusmon_sharpness_relative found the stream's value.
        assert re.fullmatch(
            rf"Stream a on {re.escape(instance)} has been blurred for more than 1 minute: its "
            r"sharpness is \d+(\.\d+)?% of its baseline\.",
            annotations["description"],
        ), annotations["description"]
        assert receiver.paths[0] == "/focusmon"

        # -- focus returns on a; b's camera dies ----------------------------------------------
        camera_a.cameras[0].blurred = False
        camera_b.close()  # its clients cut off, its port closed: the camera is gone
        wait_until(lambda: "a" in streams_where(prometheus_url, 'focusmon_state{state="ok"} == 1'),
                   30, "focusmon's state ok again for a, in Prometheus")  # fmt: skip
        _, note, _ = receiver.wait("FocusmonStreamBlurred", "a", "resolved", 60)
        assert note["status"] == "resolved", note
        wait_until(lambda: "b" in streams_where(prometheus_url,
                                                'focusmon_state{state="no_signal"} == 1'),
                   30, "focusmon's state no_signal for b, in Prometheus")  # fmt: skip
        no_signal_at, note, alert = receiver.wait("FocusmonNoSignal", "b", "firing", 60)
        assert note["status"] == "firing", note
        assert note["groupLabels"] == {"alertname": "FocusmonNoSignal", "instance": instance,
                                       "stream": "b"}  # fmt: skip
        assert alert["labels"]["severity"] == "critical", alert
        assert alert["annotations"]["summary"] == "Camera b delivers no video"
        assert alert["annotations"]["runbook_url"].endswith("#runbook-no-signal")
        description = alert["annotations"]["description"]
        assert re.search(r"; the last frame came .+ ago\.$", description), description

        # -- the dead camera shows only no_signal; its blurred is inhibited ------------------
        # An alert like b's FocusmonStreamBlurred (a label of its own keeps Prometheus'
        # resends of the real, resolved one from overwriting it), and the same for a stream
        # "c" without a signal problem, and for another instance's camera also named "b"
        # (a stream's name is unique per instance only), as the controls.
        now = datetime.datetime.now(datetime.timezone.utc)
        elsewhere = "gw2.example:9713"
        posted = [
            {
                "labels": {**alert["labels"], "alertname": "FocusmonStreamBlurred",
                           "severity": "warning", "state": "blurred", "stream": stream,
                           "instance": where or alert["labels"]["instance"],
                           "posted_by": "test"},
                "annotations": {"summary": f"Camera {stream} is out of focus"},
                "startsAt": now.isoformat(),
                "endsAt": (now + datetime.timedelta(minutes=5)).isoformat(),
            }
            for stream, where in (("b", None), ("c", None), ("b", elsewhere))
        ]  # fmt: skip
        post_json(f"{alertmanager_url}/api/v2/alerts", posted)
        receiver.wait("FocusmonStreamBlurred", "c", "firing", 60)  # notifications flow
        time.sleep(3 * GROUP_INTERVAL_S)  # and b's group has had its turns too

        ours = alertmanager_alerts(alertmanager_url, 'alertname="FocusmonStreamBlurred"',
                                   'posted_by="test"')  # fmt: skip
        by_camera = {(a["labels"]["stream"], a["labels"]["instance"] == elsewhere): a
                     for a in ours}  # fmt: skip
        (real_no_signal,) = alertmanager_alerts(alertmanager_url, 'alertname="FocusmonNoSignal"',
                                                'stream="b"')  # fmt: skip
        b, c, other_b = by_camera["b", False], by_camera["c", False], by_camera["b", True]
        assert b["status"]["state"] == "suppressed", b
        assert b["status"]["inhibitedBy"] == [real_no_signal["fingerprint"]]
        for control in (c, other_b):
            assert control["status"]["state"] == "active", control
            assert not control["status"]["inhibitedBy"], control
        late = receiver.alerts("FocusmonStreamBlurred", "b", "firing", start=no_signal_at)
        ours_late = [x for x in late if x[2]["labels"]["instance"] != elsewhere]
        assert not ours_late, f"blurred notified for b while it had no signal: {ours_late}"
        assert len(late) > len(ours_late), "the other instance's b must be notified"

        # Prometheus and Alertmanager both show b as no_signal only.
        b_state = query(prometheus_url, 'focusmon_state{stream="b"} == 1')
        assert [r["metric"]["state"] for r in b_state] == ["no_signal"], b_state
        b_alerts = [a for a in prometheus_alerts(prometheus_url) if a["labels"]["stream"] == "b"]
        assert [(a["labels"]["alertname"], a["state"]) for a in b_alerts] == [
            ("FocusmonNoSignal", "firing")
        ], b_alerts
        b_active = alertmanager_alerts(alertmanager_url, 'stream="b"', f'instance="{instance}"')
        assert [a["labels"]["alertname"] for a in b_active
                if a["status"]["state"] == "active"] == ["FocusmonNoSignal"], b_active  # fmt: skip

        # Nothing else was notified: no double report of the dead camera, no alert on a.
        notified = {(alertname, stream) for alertname, stream, _ in receiver.seen()}
        assert notified == {("FocusmonStreamBlurred", "a"), ("FocusmonStreamBlurred", "b"),
                            ("FocusmonNoSignal", "b"), ("FocusmonStreamBlurred", "c")}  # fmt: skip
    finally:
        for process in reversed(processes):
            process.stop()
        try:
            if watch is not None:
                stop_watch(watch)
        finally:
            camera_a.close()
            camera_b.close()
            receiver.close()
    assert watch.proc.returncode == 0
