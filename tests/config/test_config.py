"""The option table, the typed settings, the TOML file and the command line's flags."""

from __future__ import annotations

import dataclasses
import re

import pytest

from focusmon import ConfigError
from focusmon.cli import build_parser, main
from focusmon.config import (
    DEFAULT_METRICS_ADDR,
    INTERNAL,
    OPTIONS,
    ServiceSettings,
    StreamSpec,
    WatchConfig,
    from_args,
    load,
    parse,
    parse_address,
    to_toml,
    tomllib,
)
from focusmon.scheduler import AlertSettings
from focusmon.source import SourceOptions


def test_metrics_addresses():
    assert parse_address("0.0.0.0:9713") == ("0.0.0.0", 9713)
    assert parse_address(":9713") == ("127.0.0.1", 9713)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("9713", "host:", "host:99999", "host:x"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


def test_a_config_file_is_checked_key_by_key(tmp_path):
    good = tmp_path / "streams.toml"
    good.write_text(
        'metrics_addr = ":9999"\n'
        "[defaults]\ntimeout_s = 4\nalerts = { min_dwell_s = 2 }\n"
        '[[streams]]\nname = "door"\nsource = "rtsp://u:p@cam/1"\nroi = [0, 0, 64, 48]\n'
        '[[streams]]\nsource = "demo"\nmax_fps = 5\n[streams.alerts]\nenter_ratio = 0.4\n'
    )
    config = load(good)
    door, demo = config.streams
    assert config.service == ServiceSettings(metrics_addr=":9999")
    assert door.name == "door" and door.roi == (0, 0, 64, 48) and door.options.timeout_s == 4
    assert door.alerts.min_dwell_s == 2 and demo.alerts.enter_ratio == 0.4
    assert demo.alerts.min_dwell_s == 2 and demo.name == "demo" and demo.options.max_fps == 5

    def error(data):
        with pytest.raises(ConfigError) as info:
            parse(data, "f.toml")
        return str(info.value)

    stream = {"source": "demo"}
    assert "unknown key 'sourse'; did you mean 'source'?" in error({"streams": [{"sourse": "x"}]})
    assert "streams[0]: source is missing" in error({"streams": [{"name": "x"}]})
    assert "streams[0].roi must be [x, y, w, h]" in error({"streams": [{**stream, "roi": [1]}]})
    assert "streams[0].every must be an integer >= 1, got 0" in error(
        {"streams": [{**stream, "every": 0}]}
    )
    assert "streams[0].alerts" in error({"streams": [{**stream, "alerts": {"enter_ratio": -1}}]})
    rtsp = {"source": "rtsp://cam/1", "ffmpeg_options": {"stimeout": "5"}}
    assert "unknown FFmpeg option 'stimeout'" in error({"streams": [rtsp]})
    assert "metrics_addr must be HOST:PORT" in error({"metrics_addr": 9, "streams": [stream]})
    assert "used twice" in error({"streams": [stream, stream]})
    assert "non-empty array" in error({"streams": []})
    bad = tmp_path / "bad.toml"
    bad.write_text("streams = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


def test_watch_config_errors_exit_2_before_starting(capsys, tmp_path):
    config = tmp_path / "s.toml"
    config.write_text('[[streams]]\nsource = "demo"\ncolour = "red"\n')
    assert main(["watch", "--config", str(config)]) == 2
    assert "streams[0]: unknown key 'colour'" in capsys.readouterr().err
    config.write_text('[[streams]]\nsource = "demo"\n')
    assert main(["watch", "--config", str(config), "--every", "2"]) == 2
    assert "--every is a stream setting" in capsys.readouterr().err
    assert main(["watch", "--config", str(config), "demo"]) == 2
    assert main(["watch"]) == 2
    assert "at least one SOURCE" in capsys.readouterr().err


# -- the option table -------------------------------------------------------------------------


def test_the_table_has_a_row_for_every_setting_and_a_setting_for_every_row():
    """Adding a setting is a field and a row: neither can be forgotten."""
    scopes = {
        "service": ServiceSettings, "stream": StreamSpec, "source": SourceOptions,
        "alerts": AlertSettings,
    }  # fmt: skip
    for scope, cls in scopes.items():
        fields = {f.name for f in dataclasses.fields(cls)} - INTERNAL.get(scope, set())
        rows = {k for k, o in OPTIONS.items() if o.scope == scope}
        assert rows == fields, (scope, rows ^ fields)
    assert OPTIONS["timeout_s"].default == SourceOptions().timeout_s == 10.0
    assert OPTIONS["enter_ratio"].default == AlertSettings().enter_ratio
    assert OPTIONS["metrics_addr"].default == DEFAULT_METRICS_ADDR


def test_every_row_is_a_flag_named_after_its_key():
    parser = build_parser()
    commands = parser.commands
    for key, option in OPTIONS.items():
        assert option.flag == "--" + key.replace("_", "-")
        for command in option.commands:
            flags = commands[command]._option_string_actions
            assert option.flag in flags, (command, option.flag)
            assert flags[option.flag].dest == key
            shown = commands[command].format_help()
            for alias in option.aliases:  # older spellings: accepted, not shown
                assert flags[alias].dest == key
                assert not re.search(rf"{re.escape(alias)}(?![\w-])", shown), alias


def watch_args(*argv: str):
    return build_parser().parse_args(["watch", *argv])


def test_flags_and_the_file_give_the_same_typed_config(tmp_path):
    argv = ["rtsp://u:p@cam/1", "--name", "door", "--timeout-s", "4", "--min-dwell-s", "2",
            "--roi", "0,0,64,48", "--ffmpeg-options", "buffer_size=1048576",
            "--keyframes-only", "--metrics-addr", ":9999", "--best-keep", "5"]  # fmt: skip
    from_flags = from_args(watch_args(*argv))
    file = tmp_path / "s.toml"
    file.write_text(
        'metrics_addr = ":9999"\nbest_keep = 5\n'
        '[[streams]]\nname = "door"\nsource = "rtsp://u:p@cam/1"\ntimeout_s = 4\n'
        "roi = [0, 0, 64, 48]\nkeyframes_only = true\n"
        "ffmpeg_options = { buffer_size = 1048576 }\nalerts = { min_dwell_s = 2 }\n"
    )
    assert from_flags == load(file)
    # The older spellings of the README's commands mean the same.
    old = ["rtsp://u:p@cam/1", "--name", "door", "--timeout", "4", "--min-dwell", "2",
           "--roi", "0,0,64,48", "--ffmpeg-option", "buffer_size=1048576", "--keyframes",
           "--metrics-addr", ":9999", "--best-keep", "5"]  # fmt: skip
    assert from_args(watch_args(*old)) == from_flags


def test_flags_not_given_are_the_defaults_and_given_service_flags_override_the_file(tmp_path):
    plain = from_args(watch_args("demo"))
    assert plain == WatchConfig(ServiceSettings(), [StreamSpec("demo", "demo")])
    file = tmp_path / "s.toml"
    file.write_text(
        'events = "e.jsonl"\nbest_seconds = 300\nthreads = 1\n[[streams]]\nsource = "demo"\n'
    )
    config = from_args(watch_args("--config", str(file), "--threads", "2", "--best-every", "9"))
    assert config.service.events == "e.jsonl"  # from the file
    assert config.service.threads == 2  # the command line wins
    assert config.service.best_window == (9, None)  # and its window replaces the file's


def test_did_you_mean_and_where_a_setting_belongs():
    def error(data):
        with pytest.raises(ConfigError) as info:
            parse(data, "f.toml")
        return str(info.value)

    stream = {"source": "demo"}
    assert "unknown key 'metrics_adr'; did you mean 'metrics_addr'?" in error(
        {"metrics_adr": ":1", "streams": [stream]}
    )
    assert "f.toml: 'timeout_s' is a stream setting: put it in [defaults] or a [[streams]]" in (
        error({"timeout_s": 3, "streams": [stream]})
    )
    assert "streams[0]: 'events' is a service setting: put it at the top" in error(
        {"streams": [{**stream, "events": "e"}]}
    )
    assert "streams[0]: 'min_dwell_s' is an alert setting" in error(
        {"streams": [{**stream, "min_dwell_s": 2}]}
    )
    assert "unknown key 'entre_ratio'; did you mean 'enter_ratio'?" in error(
        {"defaults": {"alerts": {"entre_ratio": 0.4}}, "streams": [stream]}
    )
    assert "threads must be an integer >= 1, got 0" in error({"threads": 0, "streams": [stream]})
    assert "`best_every` or `best_seconds`, not both" in error(
        {"best_every": 5, "best_seconds": 2, "streams": [stream]}
    )
    assert "`tls_cert` and `tls_key` go together" in error({"tls_cert": "c", "streams": [stream]})
    assert "backend must be one of auto, " in error({"backend": "gpu", "streams": [stream]})


def test_settings_check_themselves_for_python_callers():
    with pytest.raises(ConfigError, match="`batch_wait_ms` must be a number from 0 to 1000"):
        ServiceSettings(batch_wait_ms=5000)
    with pytest.raises(ConfigError, match="`roi` must be"):
        StreamSpec("a", "demo", roi=(0, 0, 2, 2))
    with pytest.raises(ConfigError, match="`name` must be a non-empty string"):
        StreamSpec(" ", "demo")
    with pytest.raises(ConfigError, match="unknown FFmpeg option 'stimeout'"):
        StreamSpec("a", "rtsp://cam/1", options=SourceOptions(ffmpeg_options={"stimeout": "5"}))
    with pytest.raises(ConfigError, match="'a' is used twice"):
        WatchConfig(streams=[StreamSpec("a", "demo"), StreamSpec("a", "x.mp4")])
    assert ServiceSettings().backend_options == {}  # the backend's own default
    assert ServiceSettings(threads=2).backend_options == {"threads": 2}


# -- written out -------------------------------------------------------------------------------

SECRET_CONFIG = """
metrics_addr = "0.0.0.0:9713"
allow_anonymous = true
events = "/var/log/focusmon/events.jsonl"

[defaults]
timeout_s = 4
alerts = { min_dwell_s = 2 }

[[streams]]
name = "door"
source = "rtsp://viewer:hunter2@192.0.2.10/stream?token=abc&x=1"
show_query_keys = ["x"]
ffmpeg_options = { user_agent = "cam" }

[[streams]]
source = "http://admin:p%40ss@192.0.2.11/video.mjpg?password=hunter3"
ffmpeg_options = { headers = "Authorization: Basic aHVudGVyMg==" }
[streams.alerts]
enter_ratio = 0.4
"""


def test_to_toml_spells_each_stream_out_and_hides_every_credential(tmp_path):
    file = tmp_path / "s.toml"
    file.write_text(SECRET_CONFIG)
    config = load(file)
    text = to_toml(config)
    for secret in ("hunter2", "hunter3", "abc", "p%40ss", "aHVudGVyMg"):
        assert secret not in text
    again = tomllib.loads(text)  # valid TOML, with each stream's merged settings
    assert again["events"] == "/var/log/focusmon/events.jsonl"
    door, mjpeg = again["streams"]
    assert door["source"] == "rtsp://***@192.0.2.10/stream?***&x=1"  # x is shown: see below
    assert door["timeout_s"] == 4 and door["alerts"] == {"min_dwell_s": 2}
    assert door["ffmpeg_options"] == {"user_agent": "cam"}
    assert mjpeg["ffmpeg_options"] == {"headers": "***"}
    assert mjpeg["alerts"] == {"min_dwell_s": 2, "enter_ratio": 0.4}
    assert mjpeg["name"] == "http://***@192.0.2.11/video.mjpg?***"
    assert "metrics" not in again and "every" not in door  # defaults are left out
    # Read back, the redacted file is the same configuration but for the credentials.
    back = parse(again)
    assert [s.options for s in back.streams][0].timeout_s == 4
    assert back.service == config.service


def test_check_config_prints_the_redacted_file_and_exits_0_or_2(capsys, tmp_path):
    file = tmp_path / "s.toml"
    file.write_text(SECRET_CONFIG)
    assert main(["check-config", str(file)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"# {file}: valid, 2 streams; credentials shown as ***\n")
    assert "hunter" not in out + err and tomllib.loads(out)["streams"][0]["name"] == "door"
    file.write_text(SECRET_CONFIG.replace("timeout_s = 4", "timeout_s = -4"))
    assert main(["check-config", str(file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("focusmon: error: ") and "timeout_s must be a number > 0" in err
    assert "hunter" not in err
    assert main(["check-config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_secrets_come_from_the_environment_and_never_show(tmp_path, monkeypatch, capsys):
    """``${NAME}`` in any string of the file is the environment variable NAME: a file can be
    shared without its passwords. An unset one is an error naming it and where; the values
    put in are hidden by check-config and by every log and error line."""
    from focusmon.config import expand_env, load

    monkeypatch.setenv("CAM_PASS", "s3cr'et pa$$")
    monkeypatch.setenv("CAM_HOST", "10.0.0.5")
    path = tmp_path / "streams.toml"
    path.write_text(
        '[[streams]]\nname = "door"\n'
        'source = "rtsp://admin:${CAM_PASS}@${CAM_HOST}/stream1"\n'
        'ffmpeg_options = { user_agent = "agent $${NOT_A_VARIABLE}" }\n'
    )
    config = load(path)
    spec = config.streams[0]
    assert spec.source == "rtsp://admin:s3cr'et pa$$@10.0.0.5/stream1"
    assert spec.options.ffmpeg_options["user_agent"] == "agent ${NOT_A_VARIABLE}"
    assert config.secrets == {"s3cr'et pa$$", "10.0.0.5"}
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cr'et" not in out and "10.0.0.5" not in out and "***" in out

    monkeypatch.delenv("CAM_PASS")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "streams[0].source: the environment variable CAM_PASS is not set" in err
    assert expand_env({"a": "${7*7} ${jndi:x}"}, environ={}) == ({"a": "${7*7} ${jndi:x}"}, set())
    assert expand_env({"a": ["${X}", 3]}, environ={"X": "y"}) == ({"a": ["y", 3]}, {"y"})


def test_a_secret_from_the_environment_is_scrubbed_from_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVENTS_TOKEN", "tok-4f9a2c")
    path = tmp_path / "streams.toml"
    path.write_text(
        'events = "/nonexistent-dir/${EVENTS_TOKEN}/events.jsonl"\n[[streams]]\nsource = "demo"\n'
    )
    code = main(["watch", "--config", str(path), "--no-metrics"])
    err = capsys.readouterr().err
    assert code != 0 and "tok-4f9a2c" not in err and "***" in err, err


def test_webhooks_in_a_config_file_and_their_secret_never_shown(tmp_path, capsys):
    path = tmp_path / "streams.toml"
    path.write_text(
        'webhook = ["https://hooks.example.net/x?token=t0k3n", "http://10.0.0.9/alert"]\n'
        'webhook_secret = "sh4red-s3cret"\n[[streams]]\nsource = "demo"\n'
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "t0k3n" not in out and "sh4red-s3cret" not in out
    assert 'webhook_secret = "***"' in out and "https://hooks.example.net/x?***" in out
    args = build_parser().parse_args(["watch", "demo", "--webhook", "http://a/1,2",
                                      "--webhook", "http://b/3"])  # fmt: skip
    from focusmon.config import from_args

    assert from_args(args).service.webhook == ("http://a/1,2", "http://b/3")  # commas kept
