"""The deployment files under deploy/: Prometheus config, rules and their unit tests, the
Grafana dashboard, the systemd unit and the example streams.toml.

promtool (Debian: ``apt-get install prometheus``) checks the Prometheus files; without it
those tests skip. Every metric name the rules and the dashboard use must be one focusmon
exports, so that renaming a metric cannot silently break an alert.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "focusmon-dashboard.json"
UNIT = DEPLOY / "systemd" / "focusmon.service"
EXAMPLE_TOML = DEPLOY / "systemd" / "streams.example.toml"

#: Every series name focusmon exports (focusmon/sinks/metrics.py).
EXPORTED = frozenset(
    {
        "focusmon_info",
        "focusmon_state",
        "focusmon_source_up",
        "focusmon_signal_valid",
        "focusmon_last_frame_age_seconds",
        "focusmon_sharpness_normalised",
        "focusmon_sharpness_baseline",
        "focusmon_sharpness_relative",
        "focusmon_frames_decoded_total",
        "focusmon_frames_analysed_total",
        "focusmon_frames_dropped_total",
        "focusmon_frames_corrupt_total",
        "focusmon_packets_undecodable_total",
        "focusmon_reconnects_total",
        "focusmon_laplacian_variance",
        "focusmon_tenengrad",
        "focusmon_sobel_magnitude_mean",
        "focusmon_haar_energy",
        "focusmon_luma_mean",
        "focusmon_luma_std",
        "focusmon_processing_seconds_bucket",
        "focusmon_processing_seconds_count",
        "focusmon_processing_seconds_sum",
    }
)
STATES = ("ok", "blurred", "obstructed", "dark", "no_signal", "frozen", "moved", "partial")
ALERTS = (
    "FocusmonStreamBlurred",
    "FocusmonStreamObstructed",
    "FocusmonStreamDark",
    "FocusmonNoSignal",
    "FocusmonStreamMoved",
    "FocusmonStreamFrozen",
    "FocusmonStreamPartial",
    "FocusmonFrameRateZero",
    "FocusmonExporterDown",
)

# A whole identifier that contains a focusmon name: recording rules' names have colons.
_FOCUSMON_TOKEN = re.compile(r"[A-Za-z0-9_:]*focusmon_[A-Za-z0-9_:]*")
_FOCUSMON_NAME = re.compile(r"focusmon_[a-z_]+")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")  # `name{...}`
_GO_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.S)
# Grafana's variables, as PromQL would see them once Grafana has substituted them.
_GRAFANA_VARIABLES = {
    "stream": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


def _promtool(*args: str | Path) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run(
        [promtool, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def _recorded_names() -> set[str]:
    return set(re.findall(r"^\s*-\s*record:\s*(\S+)\s*$", RULES.read_text(), re.M))


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _all_panels(panels: list[dict]) -> list[dict]:
    """Panels, with those inside collapsed rows."""
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_all_panels(panel.get("panels", [])))
    return out


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    return [
        (f"panel {panel['id']} ({panel['title']}) {target['refId']}", target["expr"])
        for panel in _all_panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _variable_queries() -> list[str]:
    out = []
    for variable in _dashboard()["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def _substitute(expr: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in _GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return _GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def _unknown_names(text: str, selectors_text: str) -> set[str]:
    """Names in ``text`` that are neither exported nor recorded, and names of selectors
    (``name{...}``) in ``selectors_text`` that are none of these nor ``up``."""
    recorded = _recorded_names()
    unknown = set()
    for token in _FOCUSMON_TOKEN.findall(text):
        if ":" in token:
            if token not in recorded:
                unknown.add(token)
        elif not _FOCUSMON_NAME.fullmatch(token) or token not in EXPORTED:
            unknown.add(token)
    for name in _SELECTOR.findall(selectors_text):
        if name not in EXPORTED | recorded | {"up"}:
            unknown.add(name)
    return unknown


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_config_is_valid():
    _assert_ok(_promtool("check", "config", PROMETHEUS_YML))


def test_rules_are_valid():
    _assert_ok(_promtool("check", "rules", RULES))


def test_rules_pass_their_unit_tests():
    _assert_ok(_promtool("test", "rules", RULES_TEST))


def test_the_fleet_s_prometheus_files_are_valid_and_alert_once_per_stream():
    """fleet.yml (http_sd of the shards), fleet_rules.yml (alerts on series aggregated per
    stream across shards) and its unit tests: a stream that moves while blurred, and one
    scored by two shards at once, each alert once."""
    prometheus = DEPLOY / "prometheus"
    _assert_ok(_promtool("check", "config", prometheus / "fleet.yml"))
    _assert_ok(_promtool("check", "rules", prometheus / "fleet_rules.yml"))
    _assert_ok(_promtool("test", "rules", prometheus / "fleet_rules_test.yml"))
    yaml = pytest.importorskip("yaml")
    for group in yaml.safe_load((prometheus / "fleet_rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            if "focusmon-shards" in expr:  # a shard's own series: only through a recording
                assert "record" in rule and "without (instance, shard, host, node)" in expr
            if "alert" in rule:
                assert "severity" in rule["labels"] and "for" in rule, rule["alert"]
                anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
                assert anchor in _RUNBOOK_ANCHORS, f"{rule['alert']}: no runbook {anchor}"


def test_the_k8s_manifests_validate_against_the_kubernetes_and_kuberay_schemas():
    """deploy/k8s: the built-in kinds with kubernetes-validate (strict: no unknown field);
    the RayCluster against KubeRay's own CRD schema (support/schemas). There is no cluster
    here: this checks the manifests, not a deployment."""
    import gzip
    import json as _json

    yaml = pytest.importorskip("yaml")
    jsonschema = pytest.importorskip("jsonschema")
    k8s = DEPLOY / "k8s"
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *sorted(k8s.glob("*.yaml"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "No module named" not in out, out
    passed = out.count(" passed for resource ")
    assert passed >= 2 and "ERROR" not in out and "failed" not in out, out
    crd = yaml.safe_load(gzip.decompress((ROOT / "support/schemas/ray.io_rayclusters.yaml.gz")
                                         .read_bytes()))  # fmt: skip
    (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
                 if v["name"] == "v1"]  # fmt: skip
    (cluster,) = [d for d in yaml.safe_load_all((k8s / "raycluster.yaml").read_text())
                  if d and d["kind"] == "RayCluster"]  # fmt: skip
    jsonschema.validate(cluster, schema)
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    for group in groups.values():  # what `ray start --resources=` gets: JSON with the slots
        slots = _json.loads(_json.loads(group["rayStartParams"]["resources"]))
        assert slots["focusmon_slots"] > 0
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["spec"]["rayVersion"].startswith("2.60.")


def test_every_alert_has_for_severity_and_annotations():
    yaml = pytest.importorskip("yaml")
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    assert group["name"] == "focusmon"
    alerts = {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}
    assert set(alerts) == set(ALERTS)
    for name, rule in alerts.items():
        assert rule.get("for"), name
        assert rule.get("labels", {}).get("severity") in ("info", "warning", "critical"), name
        annotations = rule.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        anchor = annotations["runbook_url"].split("#", 1)[1]
        assert anchor in _RUNBOOK_ANCHORS, f"{name}: no runbook section {anchor}"
        if name != "FocusmonExporterDown":  # the one alert about an instance, not a stream
            assert "{{ $labels.stream }}" in annotations["summary"], name
            assert "{{ $labels.stream }}" in annotations["description"], name


_RUNBOOK_ANCHORS = {
    "runbook-" + line.removeprefix("### Runbook: ").strip().lower().replace(" ", "-")
    for line in (DEPLOY / "README.md").read_text().splitlines()
    if line.startswith("### Runbook: ")
}


def test_alertmanager_config_is_valid_and_inhibits_per_stream():
    """deploy/alertmanager: amtool accepts it; a camera's blurred and obstructed are held
    back while the same camera is without signal or dark (amtool's own matcher test)."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (apt-get install prometheus-alertmanager)")
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    proc = subprocess.run([amtool, "check-config", str(config)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(config.read_text())
    # A stream's name is unique per instance only: same-named cameras of two instances are
    # two cameras, neither holding back the other's alerts.
    assert data["route"]["group_by"] == ["alertname", "instance", "stream"]
    (camera,) = [r for r in data["inhibit_rules"] if r["equal"] == ["instance", "stream"]]
    assert "FocusmonNoSignal|FocusmonStreamDark" in camera["source_matchers"][0]
    assert "FocusmonStreamBlurred|FocusmonStreamObstructed" in camera["target_matchers"][0]
    routes = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", "--verify.receivers",
         "camera-owners", "severity=critical", "stream=door"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert routes.returncode == 0, routes.stdout + routes.stderr


def test_rules_use_only_exported_metrics():
    text = RULES.read_text()
    exprs = re.sub(r"#[^\n]*", "", _GO_TEMPLATE.sub("", text))
    assert not _unknown_names(text, exprs)


# --- Grafana ---------------------------------------------------------------------------------


def test_dashboard_is_importable_json():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    panels = _all_panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels:
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"panel {panel['id']}: duplicate refIds {refs}"
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["id"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    stream = variables["stream"]
    assert "label_values(focusmon_state, stream)" in _variable_queries()
    assert stream["multi"] and stream["includeAll"]
    types = {panel["type"] for panel in panels}
    assert {"state-timeline", "timeseries"} <= types


def test_dashboard_panels_do_not_overlap():
    cells = {}
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["id"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {panel['id']}"
                cells[x, y] = panel["id"]


def test_dashboard_uses_only_exported_metrics():
    queries = [expr for _, expr in _dashboard_queries()] + _variable_queries()
    text = "\n".join(queries)
    assert not _unknown_names(text, text)


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool has no "check expression": each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{k}", "expr": _substitute(expr)}
        for k, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    # JSON is YAML, and needs no YAML library.
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    where = "\n".join(f"dashboard:query_{k}: {w}" for k, (w, _) in enumerate(_dashboard_queries()))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{where}"


def test_state_timeline_query_names_each_state(tmp_path):
    """The state timeline turns the one `focusmon_state` series that is 1 into the number
    its value mappings name: feed it one stream per state and read the numbers back."""
    dashboard = _dashboard()
    (panel,) = [p for p in dashboard["panels"] if p["type"] == "state-timeline"]
    (target,) = panel["targets"]
    mappings = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    code = {mapping["text"]: int(value) for value, mapping in mappings.items()}
    assert set(code) == set(STATES)
    series = []
    for stream in STATES:  # stream "dark" is in state dark, and so on
        for state in STATES:
            labels = f'job="focusmon",instance="gw:9713",stream="{stream}",state="{state}"'
            value = "1" if state == stream else "0"
            series.append({"series": f"focusmon_state{{{labels}}}", "values": f"{value}x10"})
    expected = [
        {"labels": f'{{job="focusmon",instance="gw:9713",stream="{s}"}}', "value": code[s]}
        for s in STATES
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": _substitute(target["expr"]),
                        "eval_time": "5m",
                        "exp_samples": expected,
                    }
                ],
            }
        ],
    }
    path = tmp_path / "state_timeline_test.yml"
    path.write_text(json.dumps(test))
    _assert_ok(_promtool("test", "rules", path))


# --- systemd and the example configuration ------------------------------------------------------


def test_systemd_unit_has_the_hardening():
    lines = {line.strip() for line in UNIT.read_text().splitlines()}
    for directive in (
        "ExecStart=/usr/local/bin/focusmon watch --config /etc/focusmon/streams.toml",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=focusmon",
        "LogsDirectory=focusmon",
        "SupplementaryGroups=video",
        "KillSignal=SIGTERM",
    ):
        assert directive in lines, directive
    assert any(line.startswith("TimeoutStopSec=") for line in lines)
    assert "User=focusmon" in lines or "DynamicUser=yes" in lines


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (systemd)")
    text = UNIT.read_text()
    if not Path("/usr/local/bin/focusmon").exists():
        # verify checks that ExecStart's program exists; use this environment's.
        program = shutil.which("focusmon") or sys.executable
        text = text.replace("/usr/local/bin/focusmon", program)
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    _assert_ok(result)
    assert not result.stderr.strip(), result.stderr  # warnings, e.g. unknown directives


def test_example_config_loads_and_check_config_hides_its_passwords():
    from focusmon.config import load, tomllib

    config = load(EXAMPLE_TOML)  # every key checked, FFmpeg option names included
    assert config.service.metrics_addr == "127.0.0.1:9713"
    assert len(config.streams) >= 2
    assert "secret" in EXAMPLE_TOML.read_text()  # the example has camera passwords ...
    # ... which the command the README gives for checking the file never prints.
    check = subprocess.run(
        [sys.executable, "-m", "focusmon", "check-config", str(EXAMPLE_TOML)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "secret" not in check.stdout + check.stderr
    shown = tomllib.loads(check.stdout)
    assert [s["name"] for s in shown["streams"]] == [s.name for s in config.streams]
    assert "`focusmon check-config" in (DEPLOY / "README.md").read_text()
