"""The endpoint's server under slow and hostile clients: every limit, with a handful of
connections standing in for thousands (the limits are what matter, and they are small here).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time

import pytest

from focusmon.sinks._http import HttpServer, Limits, Reply

from servers import poll
from slowloris import Attack

LIMITS = Limits(
    request_s=1.0, reply_s=2.0, connections=32, backlog=128, head_bytes=1024, grace_s=0.1
)


def hello(request) -> Reply:
    return Reply(200, b"hello " + request.path.encode() + b"\n")


def broken(request) -> Reply:
    raise RuntimeError("the handler failed")


@pytest.fixture
def server():
    server = HttpServer("127.0.0.1", 0, {"/hello": hello, "/broken": broken}, limits=LIMITS)
    server.start()
    yield server
    server.close()


def get(port: int, path: str = "/hello", method: str = "GET", timeout: float = 5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def test_requests_are_answered_and_bad_ones_refused(server):
    status, body, _ = get(server.port)
    assert (status, body) == (200, b"hello /hello\n")
    status, body, response = get(server.port, method="HEAD")
    assert status == 200 and body == b"" and response.getheader("Content-Length") == "13"
    assert get(server.port, "/nope")[0] == 404
    assert get(server.port, method="POST")[0] == 405
    assert get(server.port, "/broken")[0] == 500  # a handler's fault: a 500, no more
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"BLAH\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    assert get(server.port)[0] == 200  # and it goes on


def test_a_silent_or_trickling_client_is_dropped_at_the_request_deadline(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        start = time.monotonic()
        for _ in range(30):  # a byte every 0.1 s: each read would succeed, the request never
            try:
                sock.send(b"G")
            except OSError:
                break
            time.sleep(0.1)
        assert sock.recv(10) == b""  # closed by the server ...
        assert time.monotonic() - start < LIMITS.request_s + 0.8  # ... at its deadline


def test_slow_clients_cannot_crowd_out_good_scrapes_or_grow_the_server(server):
    threads_before = threading.active_count()
    with Attack(server.port, 3 * LIMITS.connections, every_s=0.1) as attack:
        for _ in range(20):
            status, body, _ = get(server.port, timeout=5)  # answered while crowded
            assert (status, body) == (200, b"hello /hello\n")
            assert server.open_connections <= LIMITS.connections
            time.sleep(0.05)
        during = threading.active_count()
    assert attack.result["dropped"] > 0 and attack.result["opened"] > 3 * LIMITS.connections
    # The server's threads are its loop and its workers, however many clients came.
    assert during - threads_before <= LIMITS.workers
    assert poll(lambda: server.open_connections == 0, LIMITS.request_s + 2) is not None
    assert server.dropped > 0


def test_closing_the_server_is_quick_whatever_the_clients_do(server):
    with Attack(server.port, LIMITS.connections, every_s=0.1):
        start = time.monotonic()
        server.close()
        assert time.monotonic() - start < 2.0
    with pytest.raises(OSError):
        get(server.port, timeout=2)


def test_tls_handshakes_count_against_the_deadline_and_the_cap(tmp_path):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl missing: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = HttpServer("127.0.0.1", 0, {"/hello": hello}, tls=context, limits=LIMITS)
    server.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        # Within the cap: what is checked here is the deadline. (Beyond the cap, attackers
        # that come back at once when dropped can take a place from a client between two
        # messages of its handshake: the cap is set well above what clients hold, and
        # `test_slow_clients_cannot_crowd_out_good_scrapes_or_grow_the_server` checks it.)
        with (
            Attack(server.port, LIMITS.connections // 2, every_s=0.1, silent=True),
            Attack(server.port, LIMITS.connections // 3, every_s=0.1, tls=True),
        ):  # no handshake at all, and a handshake, then a request a byte at a time
            silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
            for _ in range(10):
                conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client,
                                                   timeout=5)  # fmt: skip
                start = time.monotonic()
                conn.request("GET", "/hello")
                response = conn.getresponse()
                assert response.status == 200 and response.read() == b"hello /hello\n"
                assert time.monotonic() - start < 1.0
                conn.close()
            for sock in silent:
                sock.settimeout(LIMITS.request_s + 2)
                assert sock.recv(10) == b""  # dropped at the deadline, handshake or not
                sock.close()
    finally:
        server.close()


def test_a_tls_client_that_closes_before_its_request_is_let_go(tmp_path):
    """A handshake, then close_notify and no request: that once spun the server's loop for
    ever (OpenSSL reads nothing more, and nothing was awaited)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl missing: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = HttpServer("127.0.0.1", 0, {"/hello": hello}, tls=context, limits=LIMITS)
    server.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            secure = client.wrap_socket(raw, server_hostname="127.0.0.1")
            with contextlib.suppress(OSError):  # the server does not answer its close_notify
                secure.unwrap()  # close_notify, then gone
            secure.close()
        assert poll(lambda: server.open_connections == 0, 2.0) is not None
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client, timeout=5)
        conn.request("GET", "/hello")
        assert conn.getresponse().read() == b"hello /hello\n"  # the loop is free
        conn.close()
    finally:
        server.close()
