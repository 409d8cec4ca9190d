"""Security: the metrics endpoint (loopback by default; TLS that refuses plain HTTP and bad
key files cleanly), credentials in URLs (never in anything focusmon writes), config files
(data, never code) and saved frames (never outside their folder)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from focusmon.cli import build_parser, main
from focusmon.config import DEFAULT_METRICS_ADDR, from_args, parse_address
from focusmon.sinks import FrameSaver, MetricsEndpoint
from focusmon.sinks.metrics import PROCESSING_BUCKETS, FocusCollector, StreamSnapshot
from focusmon.source import redact, safe_name

from media import write_video
from servers import (
    camera_launch,
    fetch,
    free_port,
    poll,
    rtsp_camera,
    rtsp_server_reason,
    wait_until,
)

FOCUSMON = (
    [shutil.which("focusmon")] if shutil.which("focusmon") else [sys.executable, "-m", "focusmon"]
)
needs_rtsp = pytest.mark.skipif(
    rtsp_server_reason() is not None, reason=rtsp_server_reason() or ""
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, camera) -> Path:
    """3 s at 10 fps of a slow pan over the photograph, lossless: a file `watch` finishes."""
    frames = [np.ascontiguousarray(camera[100:220, 100 + i : 260 + i]) for i in range(30)]
    path = tmp_path_factory.mktemp("security") / "clip.mkv"
    return write_video(path, frames, pix_fmt="gray", rate=10)


@contextlib.contextmanager
def focusmon_process(*args: str):
    """``focusmon ARGS`` in its own session (no terminal: nothing can prompt), always
    killed at the end."""
    proc = subprocess.Popen(
        [*FOCUSMON, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> tuple[str, str]:
    """SIGTERM, then everything it wrote; a process that does not stop fails the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"focusmon did not stop within {timeout_s} s of SIGTERM:\n{err[-2000:]}")


# -- the endpoint binds to loopback ---------------------------------------------------------


def listening_on(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port``, from /proc/net."""
    addresses = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                hex_address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(hex_address)  # 32-bit words in host (little) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                addresses.add(socket.inet_ntop(family, raw))
    return addresses


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="no /proc/net/tcp to read")
def test_metrics_endpoint_binds_loopback_by_default():
    host, port = parse_address(DEFAULT_METRICS_ADDR)
    assert host == "127.0.0.1"
    config = from_args(build_parser().parse_args(["watch", "demo"]))
    assert config.service.metrics_addr == DEFAULT_METRICS_ADDR
    server = MetricsEndpoint(*parse_address(":0"))
    try:  # an address without a host is loopback too (bound, even before it serves)
        assert listening_on(server.port) == {"127.0.0.1"}
    finally:
        server.close()
    if listening_on(port):
        pytest.skip(f"the default port {port} is taken here: cannot run watch on its defaults")
    with focusmon_process("watch", "demo") as proc:  # no --metrics-addr: the real default
        wait_until(lambda: listening_on(port) or proc.poll() is not None, 30, "the endpoint")
        assert listening_on(port) == {"127.0.0.1"}, listening_on(port)
        status, text = fetch(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert status == 200 and text.startswith("ok\ndemo: running, ")
        stop(proc)
    assert proc.returncode == 0


# -- TLS ------------------------------------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A self-signed certificate and its key, another key, an encrypted key and its
    certificate, and a file of garbage."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing: cannot make test certificates")
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"))  # fmt: skip
    openssl("genrsa", "-out", str(d / "other.pem"), "2048")
    openssl("genrsa", "-aes256", "-passout", "pass:hunter2", "-out", str(d / "enc.pem"), "2048")
    openssl("req", "-x509", "-key", str(d / "enc.pem"), "-passin", "pass:hunter2", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-out", str(d / "enc-cert.pem"))  # fmt: skip
    (d / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END\n")
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.network
@pytest.mark.timeout(120)
def test_tls_endpoint_refuses_plain_http_and_outlasts_a_silent_client(tls):
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(tls["cert"]))
    with focusmon_process(
        "watch", "demo", "--metrics-addr", f"127.0.0.1:{port}",
        "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"]),
    ) as proc:  # fmt: skip
        wait_until(lambda: listening_on(port) or proc.poll() is not None, 30, "the endpoint")
        status, text = fetch(f"{base}/healthz", trusted, timeout=5)
        assert status == 200 and text.startswith("ok\ndemo: running, ")
        # Plain HTTP to the TLS port: no HTTP answer and no metrics, only a dropped line.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            with contextlib.suppress(OSError):
                while chunk := plain.recv(4096):
                    reply += chunk
        assert not reply.startswith(b"HTTP/") and b"focusmon_" not in reply, reply[:200]
        # A client that connects and says nothing must not hold the endpoint (the TLS
        # handshake was done in accept(): every scrape waited for ever), nor its shutdown.
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            started = time.monotonic()
            status, text = fetch(f"{base}/metrics", trusted, timeout=5)
            assert status == 200 and "focusmon_state" in text
            assert time.monotonic() - started < 5
            _, err = stop(proc, timeout_s=20)
        finally:
            silent.close()
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("cert", "key", "words"),
    [
        ("cert", "missing.pem", "missing.pem"),
        ("missing.pem", "key", "missing.pem"),
        ("cert", "cert", "cannot load the TLS certificate"),  # a certificate is not a key
        ("cert", "other", "cannot load the TLS certificate"),  # the key of another one
        ("cert", "garbage", "cannot load the TLS certificate"),
        ("cert", ".", "cannot load the TLS certificate"),  # a folder
        ("cert", None, "`tls_cert` and `tls_key` go together"),
        (None, "key", "`tls_cert` and `tls_key` go together"),
        ("enc-cert", "enc", "is encrypted"),  # OpenSSL would prompt for a passphrase
    ],
)
def test_bad_tls_files_are_one_error_line(tls, tmp_path, cert, key, words):
    def path(name: str | None) -> list[str]:
        return [] if name is None else [str(tls[name] if name in tls else tmp_path / name)]

    args = ["watch", "demo", "--metrics-addr", "127.0.0.1:0"]
    args += ["--tls-cert", *path(cert)] if cert else []
    args += ["--tls-key", *path(key)] if key else []
    with focusmon_process(*args) as proc:  # its own process: a prompt could not hang pytest
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"focusmon hung on {cert} / {key} (a passphrase prompt?)")
    errors = [line for line in err.splitlines() if line.startswith("focusmon: error:")]
    assert proc.returncode in (1, 2) and out == ""
    assert len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err and "pass phrase" not in err.lower(), err


# -- credentials in URLs ----------------------------------------------------------------------


def everything_written(proc_output: tuple[str, str], scrapes: list[str], *folders: Path) -> str:
    """stdout, stderr, every scrape, and every file name and file content under ``folders``."""
    parts = [*proc_output, *scrapes]
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            parts.append(str(path))
            if path.is_file():
                parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def watch_and_collect(tmp_path: Path, urls: list[str], until, timeout_s: float = 45):
    """Run ``focusmon --debug watch URLS`` with events, saved frames and metrics until
    ``until(events_text, best_folder)`` holds (or ``timeout_s``), scraping meanwhile; stop it
    with SIGTERM. Returns (everything it wrote, the scrapes, stderr)."""
    port = free_port()
    events, best = tmp_path / "out" / "events.jsonl", tmp_path / "out" / "best"
    events.parent.mkdir()
    scrapes: list[str] = []
    met = False
    with focusmon_process(
        "--debug", "watch", *urls, "--events", str(events), "--save-best", str(best),
        "--best-every", "5", "--metrics-addr", f"127.0.0.1:{port}", "--timeout", "2",
    ) as proc:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                scrapes.append(fetch(f"http://127.0.0.1:{port}/metrics", timeout=5)[1])
                scrapes.append(fetch(f"http://127.0.0.1:{port}/healthz", timeout=5)[1])
            text = events.read_text() if events.exists() else ""
            met = until(text, best) and bool(scrapes)
            if met:
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"watch ended early: {proc.communicate()[1][-2000:]}"
        output = stop(proc)
    assert met, f"what was waited for did not happen in {timeout_s} s:\n{output[1][-3000:]}"
    assert proc.returncode == 0, output[1][-2000:]
    return everything_written(output, scrapes, tmp_path / "out"), scrapes, output[1]


def no_signal_for_all(n: int):
    def condition(events: str, best: Path) -> bool:
        rows = [json.loads(line) for line in events.splitlines()]
        return len({r["stream"] for r in rows if r["state"] == "no_signal"}) >= n

    return condition


@pytest.mark.network
@pytest.mark.timeout(120)
def test_credentials_of_unreachable_cameras_never_leak(tmp_path):
    secrets = ["Rtsp-Pw-41", "Http-Pw-42", "Query-Tok-43", "Rtsps-Pw-44", "Sp Pw-45",
               "Param-Pw-46", "Frag-Pw-47"]  # fmt: skip
    dead = [free_port() for _ in range(4)]
    urls = [
        f"rtsp://admin:{secrets[0]}@127.0.0.1:{dead[0]}/cam",
        f"http://viewer:{secrets[1]}@127.0.0.1:{dead[1]}/live.ts?pw={secrets[2]}",
        f"rtsps://admin:{secrets[3]}@127.0.0.1:{dead[2]}/cam",
        f"rtsp://u:'{secrets[4]}\"@127.0.0.1:{dead[3]}/c;password={secrets[5]}#t={secrets[6]}",
    ]
    written, scrapes, err = watch_and_collect(tmp_path, urls, no_signal_for_all(4))
    for secret in secrets:
        assert secret not in written, f"{secret!r} leaked"
    # What it wrote does name the streams, redacted: the redaction was exercised.
    assert f"rtsp://***@127.0.0.1:{dead[0]}/cam" in err
    assert f'stream="http://***@127.0.0.1:{dead[1]}/live.ts?***"' in "".join(scrapes)
    assert f"rtsp://***@127.0.0.1:{dead[3]}/c;***#***: running" in "".join(scrapes)  # healthz
    events = (tmp_path / "out" / "events.jsonl").read_text()
    assert {json.loads(line)["stream"] for line in events.splitlines()} == {
        safe_name(u) for u in urls
    }


@needs_rtsp
@pytest.mark.network
@pytest.mark.timeout(120)
def test_credentials_of_a_real_camera_never_leak(tmp_path):
    """A camera that wants a password: the right one (frames flow, best frames are saved
    under names made from the stream's name), a wrong one (401), and a token in the query."""
    port = free_port()
    secret, wrong, token = "Cam-Pw-51", "Bad-Pw-52", "Cam-Tok-53"
    urls = [
        f"rtsp://admin:{secret}@127.0.0.1:{port}/cam?token={token}",
        f"rtsp://admin:{wrong}@127.0.0.1:{port}/cam",
    ]

    def frames_saved_and_401(events: str, best: Path) -> bool:
        return len(list(best.glob("*.png"))) >= 2 and no_signal_for_all(1)(events, best)

    with rtsp_camera(port, camera_launch("smpte"), auth=f"admin:{secret}"):
        written, scrapes, err = watch_and_collect(tmp_path, urls, frames_saved_and_401)
    for leaked in (secret, wrong, token):
        assert leaked not in written, f"{leaked!r} leaked"
    assert "401" in err and f"rtsp://***@127.0.0.1:{port}/cam" in err
    saved = sorted((tmp_path / "out" / "best").glob("*.json"))
    assert saved, "no best frame saved: the camera's frames were not seen"
    assert json.loads(saved[0].read_text())["stream"] == redact(urls[0])
    assert re.search(r'focusmon_frames_analysed_total\{stream="rtsp://\*\*\*@[^"]*"\} [1-9]',
                     "".join(scrapes))  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:Pw-61@127.0.0.1:{port}/cam",
        "rtsp://admin:Pw-61@127.0.0.1:{port}/cam?user=Pw-61&password=Pw-61",
        "http://Pw-61:Pw-61@127.0.0.1:{port}/live.ts?auth=Pw-61",
        "rtsps://admin:Pw-61@127.0.0.1:{port}",
        "rtsp://admin:p@Pw-61@127.0.0.1:{port}/cam",  # FFmpeg splits at the last '@'
        "http://127.0.0.1:{port}/live.ts?access_token=Pw-61&api_key=Pw-61&passwd=Pw-61",
        # What an attack round found past a list of secret-looking words: quotes, white
        # space in the password; keys of any name; a path parameter; a fragment.
        "rtsp://admin:a'Pw-61@127.0.0.1:{port}/cam",
        'rtsp://admin:a"Pw-61@127.0.0.1:{port}/cam',
        "rtsp://admin:a Pw-61@127.0.0.1:{port}/cam",
        "rtsp://admin:a\tPw-61@127.0.0.1:{port}/cam",
        "http://127.0.0.1:{port}/live.ts?pw=Pw-61&p=Pw-61&jwt=Pw-61&code=Pw-61&sid=Pw-61",
        "http://127.0.0.1:{port}/live.ts?pass%77ord=Pw-61",
        "rtsp://127.0.0.1:{port}/cam;password=Pw-61/main",
        "http://127.0.0.1:{port}/live.ts#token=Pw-61",
    ],
)
def test_credentials_stay_out_of_a_failing_score(capsys, caplog, url):
    """``score`` of a URL where nothing listens fails in one line that names it, redacted."""
    caplog.set_level("DEBUG")
    code = main(["--debug", "score", url.format(port=free_port()), "--timeout", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and "focusmon: error:" in err
    assert "Pw-61" not in out + err + caplog.text, err
    assert "127.0.0.1" in err  # the source is named, by what is safe to show


def test_a_usage_error_never_echoes_a_password(capsys):
    """An option this version does not have, given a URL: the words come back redacted."""
    code = main(["watch", "cam", "--kafka", "kafka://user:Pw-62@host/topic?key=Pw-62"])
    err = capsys.readouterr().err
    assert code == 2 and "unrecognized arguments: --kafka kafka://***@host/topic?***" in err
    assert "Pw-62" not in err
    # An option it has, with a URL it refuses: the same.
    code = main(["watch", "cam", "--mqtt", "mqtt://user:Pw-62@host/top+ic?key=Pw-62"])
    err = capsys.readouterr().err
    assert code == 2 and "mqtt://***@host/top+ic?***" in err and "Pw-62" not in err


# -- config files are data ------------------------------------------------------------------

INJECTIONS = [
    "__import__('os').system('touch pwned-py')",
    "{{7*7}} ${7*7} #{7*7} <%= 7*7 %>",
    "$(touch pwned-sh) `touch pwned-tick`; touch pwned-semi",
    "!!python/object/apply:os.system ['touch pwned-yaml']",
    "${jndi:ldap://127.0.0.1:1/x} %s %(name)s {0.__class__} \\x00",
]


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def no_payload_ran(folder: Path) -> None:
    ran = [p.name for p in folder.rglob("pwned-*") if p.name.startswith("pwned-")]
    assert ran == [], f"a payload ran: {ran}"


def test_hostile_strings_in_a_config_are_taken_literally(tmp_path, monkeypatch, clip):
    """Stream names, the events file and the frames folder full of code, templates and
    shell: the streams run under exactly those names, the files are made under exactly
    those names, and nothing is evaluated."""
    monkeypatch.chdir(tmp_path)
    events, folder = "$(touch pwned-events)", "`touch pwned-folder`"
    lines = [f"events = {toml_string(events)}", f"save_best = {toml_string(folder)}",
             "best_every = 10"]  # fmt: skip
    for name in INJECTIONS:
        lines += [
            "[[streams]]",
            f"name = {toml_string(name)}",
            f"source = {toml_string(str(clip))}",
        ]
    (tmp_path / "streams.toml").write_text("\n".join(lines) + "\n")
    assert main(["watch", "--config", "streams.toml", "--no-metrics"]) == 0
    no_payload_ran(tmp_path)
    assert (tmp_path / events).is_file() and (tmp_path / folder).is_dir()
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / folder).glob("*.json")]
    assert {s["stream"] for s in sidecars} == set(INJECTIONS)  # "{{7*7}}", not "49"
    for path in (tmp_path / folder).iterdir():
        assert path.resolve().parent == (tmp_path / folder).resolve()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("backend = {x}\n[[streams]]\nsource = 'CLIP'", "backend must be one of auto, "),
        ("metrics_addr = {x}\n[[streams]]\nsource = 'CLIP'", "metrics_addr must be HOST:PORT"),
        ("threads = {x}\n[[streams]]\nsource = 'CLIP'", "threads must be an integer"),
        ("tls_cert = {x}\ntls_key = {x}\n[[streams]]\nsource = 'CLIP'", "TLS certificate"),
        ("[[streams]]\nsource = {x}", "no such file"),
        ("[[streams]]\nsource = 'CLIP'\nname = 49", "streams[0].name must be a string"),
        ("[[streams]]\nsource = 'CLIP'\nroi = {x}", "streams[0].roi"),
        ("[[streams]]\nsource = 'CLIP'\nevery = {x}", "streams[0].every must be an integer"),
        (
            "[[streams]]\nsource = 'CLIP'\nrtsp_transport = {x}",
            "rtsp_transport must be one of auto, tcp, udp",
        ),
        (
            "[[streams]]\nsource = 'CLIP'\nalerts = {{ enter_ratio = {x} }}",
            "alerts.enter_ratio must be a number",
        ),
        (
            "[[streams]]\nsource = 'CLIP'\nffmpeg_options = {{ {x} = '1' }}",
            "unknown FFmpeg option",
        ),
        ("[[streams]]\nsource = 'CLIP'\n{x} = 1", "streams[0]: unknown key"),
        ("streams: !!python/object/apply:os.system ['touch pwned-yaml']", "not valid TOML"),
        ("[[streams]]\nsource = 'CLIP'\nformat = {x}", "streams[0]: `format` must be"),
    ],
)
@pytest.mark.parametrize("payload", [INJECTIONS[0], INJECTIONS[2]], ids=["python", "shell"])
def test_hostile_values_a_config_must_refuse_are_one_error_line(
    tmp_path, monkeypatch, capsys, clip, toml, words, payload
):
    monkeypatch.chdir(tmp_path)
    text = toml.replace("CLIP", str(clip)).replace("{{", "{").replace("}}", "}")
    if "metrics_addr" not in text:  # a free port: the endpoint starts before TLS files load
        text = "metrics_addr = '127.0.0.1:0'\n" + text
    (tmp_path / "c.toml").write_text(text.replace("{x}", toml_string(payload)) + "\n")
    code = main(["watch", "--config", "c.toml"])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("focusmon: error:")]
    assert code == 2 and len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err
    no_payload_ran(tmp_path)


def test_stream_names_cannot_inject_prometheus_samples():
    """Quotes, backslashes, newlines and braces in a stream name stay inside its label."""
    names = ['a"} focusmon_state{stream="x",state="ok"} 1\n', "b\\", "c\nfocusmon_fake 1", "{}"]
    registry = CollectorRegistry()
    snapshots = [
        StreamSnapshot(
            name=n,
            state="ok",
            up=True,
            frames_decoded=1,
            frames_analysed=1,
            frames_dropped=0,
            frames_corrupt=0,
            packets_undecodable=0,
            reconnects=0,
            last_frame_age_s=0.1,
            scores=None,
            score=None,
            baseline=None,
            signal_valid=False,
            processing_buckets=[0] * len(PROCESSING_BUCKETS),
            processing_count=0,
            processing_sum_s=0.0,
        )  # fmt: skip
        for n in names
    ]
    registry.register(FocusCollector(lambda: snapshots, {}))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "focusmon_fake" not in families
    streams = [s.labels["stream"] for s in families["focusmon_source_up"].samples]
    assert streams == names


# -- saved frames stay in their folder ----------------------------------------------------

HOSTILE_NAMES = [
    "../../x", "/etc/passwd", "..", ".", "a/../../b", "a\x00b", "\\..\\..\\x", "x" * 300,
    "caméra/北京/..", "../" * 40 + "etc/shadow", "~/.ssh/authorized_keys", "", " ", "-",
    "C:\\Windows\\system32", "con", "a/" * 200, "\u202e\u2066..",
]  # fmt: skip


def files_outside(root: Path, folder: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.resolve().is_relative_to(folder.resolve())}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_frame_saver_writes_only_inside_its_folder(tmp_path, dtype):
    folder = tmp_path / "nest" / "best"
    saver = FrameSaver(folder)
    before = files_outside(tmp_path, folder)
    frame = (np.arange(12).reshape(3, 4) * 1000 % np.iinfo(dtype).max).astype(dtype)
    for k, name in enumerate(HOSTILE_NAMES):
        image = saver.save(name, k, 0.5, frame, {"std": 1.0})
        assert image.resolve().parent == folder.resolve(), (name, image)
        assert len(image.name.encode()) <= 255  # NAME_MAX
        sidecar = json.loads(image.with_suffix(".json").read_text())
        assert sidecar["stream"] == name and sidecar["index"] == k  # the name kept, as data
    assert files_outside(tmp_path, folder) == before
    written = list(folder.iterdir())
    assert len(written) == 2 * len(HOSTILE_NAMES)  # an image and a sidecar each: none lost
    assert all(p.resolve().parent == folder.resolve() for p in written)


def test_frame_saver_does_not_follow_links_planted_in_its_folder(tmp_path):
    """A symbolic link where the next image or sidecar will go must not carry the write
    out of the folder (it did for the sidecar)."""
    folder = tmp_path / "best"
    saver = FrameSaver(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    frame = np.zeros((4, 4), np.uint8)
    for k, suffix in enumerate((".png", ".json")):
        (folder / f"cam_{k:08d}{suffix}").symlink_to(outside / f"stolen{suffix}")
        with pytest.raises(ValueError, match="refusing to write outside"):
            saver.save("cam", k, None, frame, {})
    assert list(outside.iterdir()) == []


def test_watch_saves_best_frames_of_hostile_names_inside_its_folder(tmp_path, clip, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["../../escape", "/etc/passwd", "a/../../b", "..", "a\x00b", "x" * 300]
    folder = tmp_path / "best"
    argv = ["watch", *[str(clip)] * len(names), "--save-best", str(folder), "--best-every", "10",
            "--no-metrics"]  # fmt: skip
    for name in names:
        argv += ["--name", name]
    before = files_outside(tmp_path, folder)
    assert main(argv) == 0
    assert files_outside(tmp_path, folder) == before
    sidecars = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert sorted(s["stream"] for s in sidecars) == sorted(names * 3)  # 30 frames, 3 windows
    assert len(list(folder.glob("*.png"))) == len(sidecars)  # every save accounted for here


def test_a_stream_name_cannot_forge_log_lines_or_colour_the_terminal(tmp_path):
    """A name from a config file with a newline, ANSI escapes and a right-to-left mark:
    shown escaped in the log and in /healthz."""
    port = free_port()
    name = "door\n2026-01-01T00:00:00 focusmon: INFO: all is well\x1b[31m\u202e"
    config = tmp_path / "c.toml"
    config.write_text(
        f'metrics_addr = "127.0.0.1:{port}"\n[[streams]]\nname = {toml_string(name)}\n'
        'source = "demo"\nroi = [0, 0, 3000, 3000]\n'
    )  # an ROI that fits no frame: the stream says so in the log and in /healthz
    with focusmon_process("watch", "--config", str(config)) as proc:

        def skipping() -> str | None:
            with contextlib.suppress(OSError):
                text = fetch(f"http://127.0.0.1:{port}/healthz", timeout=5)[1]
                return text if "skipping frames" in text else None
            return None

        health = poll(skipping, 30)
        _, err = stop(proc)
    assert health is not None, err[-2000:]
    for text in (err, health):
        assert "\x1b" not in text and "\u202e" not in text
        assert "door\\n2026-01-01T00:00:00 focusmon: INFO: all is well\\x1b[31m\\u202e" in text
    assert not any(line.startswith("2026-01-01") for line in err.splitlines())  # no forgery
    assert health.count("\n") == 2  # "ok" and one line for the stream
