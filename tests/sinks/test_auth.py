"""Who may look at the live page: salted scrypt hashes, a login asked for by the page (and
by /metrics only when told), client certificates, and no page on a public address unless
one of them is given (or anonymity asked for)."""

from __future__ import annotations

import base64
import shutil
import ssl
import stat
import subprocess
import urllib.request

import pytest

from focusmon import ConfigError
from focusmon.config import ServiceSettings, StreamSpec, WatchConfig
from focusmon.pipeline import Watcher
from focusmon.sinks import MetricsEndpoint
from focusmon.sinks._auth import BasicAuth, add_user, hash_password, read_users, verify_password

from media import h264_clip
from servers import fetch

PASSWORD = "correct horse battery staple"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def get(url: str, authorization: str | None = None, context=None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_hashes_are_salted_and_verify_only_their_password(tmp_path):
    one, two = hash_password(PASSWORD), hash_password(PASSWORD)
    assert one != two and PASSWORD not in one  # each its own salt; no password stored
    assert verify_password(PASSWORD, one) and verify_password(PASSWORD, two)
    assert not verify_password(PASSWORD + "!", one) and not verify_password(PASSWORD, "x")
    path = tmp_path / "users"
    assert add_user(path, "alice", PASSWORD) and not add_user(path, "alice", "new one")
    assert add_user(path, "bob", "bobs")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and "new one" not in text and "bobs" not in text
    users = read_users(path)
    assert sorted(users) == ["alice", "bob"] and verify_password("new one", users["alice"])
    path.write_text("carol:letmein\n")  # written by hand, in clear: refused, not echoed
    with pytest.raises(ConfigError, match="line 1") as caught:
        read_users(path)
    assert "letmein" not in str(caught.value)
    with pytest.raises(ConfigError, match="name"):
        add_user(path, "a b", "x")


def test_a_login_is_checked_once_and_remembered_a_while():
    now = [0.0]
    auth = BasicAuth({"alice": hash_password(PASSWORD)}, clock=lambda: now[0])
    assert auth.allows(basic("alice", PASSWORD)) and auth.allows(basic("alice", PASSWORD))
    assert not auth.allows(basic("alice", "wrong")) and not auth.allows(basic("eve", PASSWORD))
    for bad in (
        None,
        "",
        "Bearer x",
        "Basic ###",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ):
        assert not auth.allows(bad)
    now[0] = 1e6  # long after: checked again (and still right)
    assert auth.allows(basic("alice", PASSWORD))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return h264_clip(tmp_path_factory.mktemp("clip") / "c.mp4", 2.0)


def watched(clip, endpoint) -> Watcher:
    config = WatchConfig(ServiceSettings(backend="numpy"), [StreamSpec("cam", str(clip))])
    watcher = Watcher(config, [endpoint])
    watcher.start()
    assert watcher.wait(30)
    return watcher


def test_the_page_asks_for_a_login_and_metrics_stay_open(tmp_path, clip):
    users = {"alice": hash_password(PASSWORD)}
    endpoint = MetricsEndpoint("127.0.0.1", 0, users=users)
    try:
        watched(clip, endpoint)
        for path in ("/", "/streams.json", "/streams/cam/frame.jpg", "/page.js"):
            status, headers, _ = get(endpoint.url + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
            assert get(endpoint.url + path, basic("alice", "wrong"))[0] == 401
        status, headers, body = get(endpoint.url + "/streams/cam/frame.jpg",
                                    basic("alice", PASSWORD))  # fmt: skip
        assert (
            status == 200 and body[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"
        )
        assert get(endpoint.url + "/", basic("alice", PASSWORD))[0] == 200
        assert fetch(endpoint.url + "/metrics")[0] == 200  # Prometheus needs no login
        assert fetch(endpoint.url + "/healthz")[0] == 200
    finally:
        endpoint.close()
    guarded = MetricsEndpoint("127.0.0.1", 0, users=users, metrics_auth=True)
    try:
        watched(clip, guarded)
        assert get(guarded.url + "/metrics")[0] == 401
        assert get(guarded.url + "/metrics", basic("alice", PASSWORD))[0] == 200
    finally:
        guarded.close()


def test_a_public_address_needs_a_login_certificates_or_consent(tmp_path):
    with pytest.raises(ConfigError, match="web-users"):
        ServiceSettings(metrics_addr="0.0.0.0:9713")
    for fine in (
        {"allow_anonymous": True},
        {"page": False},
        {"web_users": "/x"},
        {"metrics_addr": "127.0.0.2:9713"},
        {"metrics_addr": "[::1]:9713"},
    ):
        ServiceSettings(**{"metrics_addr": "0.0.0.0:9713", **fine})
    with pytest.raises(ConfigError, match="needs HTTPS"):
        ServiceSettings(tls_client_ca="/ca.pem")
    with pytest.raises(ConfigError, match="web_users"):
        ServiceSettings(metrics_auth=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing (CI installs it)")
def test_client_certificates_are_required_when_a_client_ca_is_given(tmp_path, clip):
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_key, ca, key, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.pem"))
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert))  # fmt: skip
    client_key, client_csr, client = (tmp_path / n for n in ("c.key", "c.csr", "c.pem"))
    run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=installer",
        "-keyout", str(client_key), "-out", str(client_csr))  # fmt: skip
    run("x509", "-req", "-in", str(client_csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-out", str(client))  # fmt: skip
    endpoint = MetricsEndpoint("127.0.0.1", 0, certfile=str(cert), keyfile=str(key),
                               client_ca=str(ca))  # fmt: skip
    try:
        watched(clip, endpoint)
        anonymous = ssl.create_default_context(cafile=str(cert))
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            get(endpoint.url + "/", context=anonymous)
        known = ssl.create_default_context(cafile=str(cert))
        known.load_cert_chain(str(client), str(client_key))
        status, _, body = get(endpoint.url + "/", context=known)
        assert status == 200 and b"focusmon" in body
    finally:
        endpoint.close()
