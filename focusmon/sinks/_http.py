"""A small HTTP/1.1 server that hostile clients cannot wear down: every limit built in.

The endpoint used to be the standard library's thread-per-connection server: a client
sending one header byte every few seconds held a thread and a descriptor for ever, and a
few thousand of them (four local processes) took the watcher to 2,500 threads and every
good scrape past its timeout. Here one event loop, on a thread of its own, holds every
connection, and each is bounded:

* **a deadline for the request**: the TLS handshake, the request line and the headers must
  all arrive within `Limits.request_s` of the connection being accepted, however slowly
  the bytes trickle; the reply must be taken within `Limits.reply_s`;
* **a cap on connections**: at most `Limits.connections` at once (by default half the
  process's descriptors, at most 4,096: more than slow clients hold when they are
  themselves limited to the usual 1,024 descriptors a process). When a new one would
  pass the cap, the oldest connection still sending its request is dropped, once it has
  had `Limits.grace_s` to send it; until then the new one waits in the listen backlog. A
  slow client loses its place to newer ones, while a quick one (a scrape sends its whole
  request at once and is answered within milliseconds) is never dropped before its
  request is read, however fast others reconnect. Descriptors stay bounded;
* **no decrypting for slow clients in a crowd**: while more than `Limits.crowd`
  connections are open, a TLS connection that has not sent its whole request within
  `Limits.crowd_grace_s` is no longer decrypted — what it sends is read and dropped
  (so a client that leaves is still seen at once) until its deadline drops it;
* **a real backlog** (`Limits.backlog`), so a burst of connections queues in the kernel
  instead of being refused;
* **small requests**: a GET with at most `Limits.head_bytes` of request line and headers,
  no body; one request per connection (``Connection: close``);
* **a fixed number of threads**: the loop's, and `Limits.workers` that run the handlers
  (a scrape's collection, which must not stall the loop).

It serves what `focusmon.sinks` needs: the metrics endpoint now, the live page later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import dataclasses
import gc
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .._errors import ConfigError

log = logging.getLogger("focusmon.sinks")


@dataclass(frozen=True)
class Limits:
    """What one client may take of the server (see the module docstring). ``connections``
    None: half the process's descriptor limit, at most 4,096."""

    request_s: float = 10.0
    reply_s: float = 10.0
    connections: int | None = None
    grace_s: float = 0.5
    crowd: int = 256
    crowd_grace_s: float = 1.0
    backlog: int = 1024
    head_bytes: int = 16384
    workers: int = 2


@dataclass(frozen=True)
class Request:
    """A parsed request: its method, path (without the query), query and headers
    (lower-case names)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


#: A route's handler: run on a worker thread, never on the loop.
Handler = Callable[[Request], Reply]

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable",
}  # fmt: skip


class HttpServer:
    """Serves ``routes`` (path -> handler; a path ending in ``/``, but ``/``, also serves
    every path under it) on ``host:port``, over TLS with ``tls``.

    The socket is bound when the server is made (so a taken port fails at once); serving
    starts with `start` and ends with `close`, which returns within a few seconds whatever
    the clients do.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Handler],
        *,
        tls: ssl.SSLContext | None = None,
        limits: Limits | None = None,
    ) -> None:
        limits = limits or Limits()
        if limits.connections is None:
            limits = dataclasses.replace(limits, connections=_connections_allowed())
        self.limits = limits
        self._routes = dict(routes)
        self._tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server(
                (host, port), family=family, backlog=self.limits.backlog
            )
        except OSError as exc:
            raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
        self._socket.setblocking(False)
        self.port = self._socket.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.limits.workers, thread_name_prefix="http"
        )
        # Open connections, oldest first, with the loop time each was accepted at while it
        # still sends its request (None once it is being answered); every live task's socket.
        self._connections: dict[asyncio.Task, float | None] = {}
        self._sockets: dict[asyncio.Task, socket.socket] = {}
        self._channels: dict[asyncio.Task, _Tls] = {}  # TLS connections sending requests
        #: Connections dropped for taking too long or for a newer one's place (for tests
        #: and the benchmark).
        self.dropped = 0
        self._crowd = 0  # the most connections at once since memory was last given back

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="http server", daemon=True
        )
        self._thread.start()
        ready.wait()

    def close(self) -> None:
        """Stop serving and drop every connection; the listening socket is closed. Safe to
        call twice."""
        loop, stopping, self._loop = self._loop, self._stopping, None
        if loop is not None and stopping is not None and self._thread is not None:
            loop.call_soon_threadsafe(stopping.set)
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_quiet)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        accepting = loop.create_task(self._accept())
        sweeping = loop.create_task(self._sweep())
        ready.set()
        await self._stopping.wait()
        accepting.cancel()
        sweeping.cancel()
        for task in list(self._sockets):
            task.cancel()
        await asyncio.gather(accepting, sweeping, *self._sockets, return_exceptions=True)

    async def _sweep(self) -> None:
        """In a crowd, stop decrypting the TLS connections slow to send their request."""
        loop = asyncio.get_running_loop()
        grace, crowd = self.limits.crowd_grace_s, self.limits.crowd
        while True:
            await asyncio.sleep(min(grace, 0.25))
            if len(self._connections) <= crowd:
                continue
            now = loop.time()
            for task, since in self._connections.items():
                if since is None or now - since <= grace:
                    continue
                channel = self._channels.pop(task, None)
                if channel is not None:
                    channel.slow = True

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if len(self._connections) >= (self.limits.connections or 0):
                wait = self._make_room()
                if wait:  # newcomers wait in the backlog meanwhile
                    await asyncio.sleep(wait)
                    continue
            try:
                client = await self._accept_one(loop)
            except OSError as exc:  # EMFILE and the like: wait, then accept again
                log.debug("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._connection(client))
            self._connections[task] = loop.time()
            self._sockets[task] = client
            task.add_done_callback(self._forget)
            # A turn of the loop for the others before the next accept: an accept with a
            # connection already waiting completes without yielding, and a burst of them
            # would evict a quick client before its request, already here, is read.
            await asyncio.sleep(0)

    async def _accept_one(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """The next connection. Unlike ``loop.sock_accept``, the socket is in hand the moment
        it is accepted: a cancellation (the server closing) can only come before, so no
        accepted socket is ever left unclosed in a cancelled future."""
        fd = self._socket.fileno()
        while True:
            try:
                client, _ = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                ready = loop.create_future()
                loop.add_reader(fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
            else:
                client.setblocking(False)
                return client

    def _forget(self, task: asyncio.Task) -> None:
        """A connection ended: its socket is closed, even if its task never ran (a task
        cancelled before its first step runs no ``finally``)."""
        self._connections.pop(task, None)
        self._channels.pop(task, None)
        self._sockets.pop(task).close()
        self._crowd = max(self._crowd, len(self._sockets) + 1)
        if self._crowd >= _CROWD and len(self._sockets) <= _CROWD // 16:
            self._crowd = 0  # a second later: the last of them are garbage by then
            asyncio.get_running_loop().call_later(1.0, _give_back_memory)

    def _make_room(self) -> float:
        """Drop the oldest connection still sending its request if it has had its grace,
        and return 0; else the seconds until one will have (a short wait if every place is
        taken by a request being answered: replies are quick or time out)."""
        now = asyncio.get_running_loop().time()
        for task, since in self._connections.items():  # oldest first
            if since is not None:
                if now - since < self.limits.grace_s:
                    return self.limits.grace_s - (now - since)
                # Gone from the count at once; its socket closes as its task ends, on the
                # loop's next turn (never here, under a transport that may still hold it).
                del self._connections[task]
                task.cancel()
                self.dropped += 1
                return 0.0
        return 0.05

    async def _connection(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        transport: asyncio.BaseTransport | None = None
        try:
            reader = asyncio.StreamReader(limit=self.limits.head_bytes)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, client)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            channel: _Plain | _Tls = _Plain(reader, writer)
            if self._tls is not None:
                channel = _Tls(reader, writer, self._tls, self.limits.head_bytes)
                if me in self._connections:
                    self._channels[me] = channel  # type: ignore[index]
            try:
                head = await asyncio.wait_for(channel.request_head(), self.limits.request_s)
            except asyncio.TimeoutError:
                self.dropped += 1
                return
            except asyncio.LimitOverrunError:
                head = None
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
                return  # the client went away, or spoke no TLS
            if me in self._connections:
                self._connections[me] = None  # answering: not a slow client's place
            self._channels.pop(me, None)  # type: ignore[arg-type]
            reply = await self._reply(head)
            try:
                await asyncio.wait_for(
                    channel.send(_encode(reply, body=not (head or b"").startswith(b"HEAD "))),
                    self.limits.reply_s,
                )
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                self.dropped += 1
        finally:
            if transport is not None:
                transport.abort()

    async def _reply(self, head: bytes | None) -> Reply:
        if head is None:
            return Reply(431, b"request headers too large\n")
        request = _parse(head)
        if request is None:
            return Reply(400, b"bad request\n")
        if request.method not in ("GET", "HEAD"):
            return Reply(405, b"GET only\n", headers={"Allow": "GET, HEAD"})
        handler = self._routes.get(request.path) or self._prefixed(request.path)
        if handler is None:
            return Reply(404, b"see " + b" and ".join(p.encode() for p in self._routes) + b"\n")
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(self._pool, handler, request)
        except Exception as exc:  # a handler's fault is a 500, never the server's end
            log.error("%s: %s", request.path, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return Reply(500, b"internal error\n")
        return reply

    def _prefixed(self, path: str) -> Handler | None:
        """The handler of the longest route ending in ``/`` (but ``/`` itself, which is
        exact) that ``path`` goes on from."""
        best = None
        for route, handler in self._routes.items():
            if route != "/" and route.endswith("/") and path.startswith(route):
                if best is None or len(route) > len(best[0]):
                    best = (route, handler)
        return None if best is None else best[1]


class _Plain:
    """A connection's bytes as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def request_head(self) -> bytes:
        return await self._reader.readuntil(b"\r\n\r\n")

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()


class _Tls:
    """A connection's bytes through TLS, done here over memory buffers.

    Not asyncio's own TLS transport: it allocates a 256 KiB buffer for each connection as
    it opens, so four processes holding 1,200 slow connections took the watcher from 285
    to 636 MB. Here a connection holds its OpenSSL session, made when its first bytes
    come, and what it has actually sent.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
        head_bytes: int,
    ) -> None:
        self._reader, self._writer, self._limit = reader, writer, head_bytes
        self._context = context
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        #: Set in a crowd: what the client sends is dropped unread until it goes away.
        self.slow = False

    async def _exchange(self) -> None:
        """Send what TLS has to send, then wait for what the client sends next."""
        await self._flush()
        while True:
            data = await self._reader.read(4096)
            if not data:
                raise ConnectionError("the client closed the connection")
            if not self.slow:
                self._in.write(data)
                return

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def request_head(self) -> bytes:
        # The session (tens of kB in OpenSSL) only once the client has said something: a
        # connection that never starts a handshake costs its socket and nothing more.
        data = await self._reader.read(4096)
        if not data:
            raise ConnectionError("the client closed the connection")
        self._in.write(data)
        self._ssl = self._context.wrap_bio(self._in, self._out, server_side=True)
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._exchange()
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            if len(head) > self._limit:
                raise asyncio.LimitOverrunError("request headers too large", len(head))
            try:
                data = self._ssl.read(4096)
            except ssl.SSLWantReadError:
                await self._exchange()
                continue
            except ssl.SSLZeroReturnError:
                data = b""
            if not data:  # the client's close_notify: the request will never end
                raise asyncio.IncompleteReadError(bytes(head), None)
            head += data
        return bytes(head[: end + 4])

    async def send(self, data: bytes) -> None:
        self._ssl.write(data)
        await self._flush()


#: After this many connections at once, the memory they held is given back to the system
#: once they are nearly all gone (an attack, or a crowd of clients, is over).
_CROWD = 256


def _give_back_memory() -> None:
    """Ask the C allocator to return freed memory to the system (glibc's ``malloc_trim``).

    A crowd of connections (TLS sessions especially: OpenSSL allocates tens of kB for
    each) leaves glibc holding tens of MB it has freed; the process's RSS would stay at
    its peak after an attack instead of coming back to rest. Elsewhere nothing happens.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    gc.collect()  # the connections' cycles (tasks, transports) freed first
    trim(0)


def _connections_allowed() -> int:
    """Half the descriptors this process may open (the rest for its streams and files), at
    most 4,096 and at least 16."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


def _parse(head: bytes) -> Request | None:
    try:
        text = head.decode("latin-1")
        line, *fields = text.split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    path, _, query = target.partition("?")
    headers = {}
    for item in fields:
        if item:
            name, sep, value = item.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
    return Request(method, path, query, headers)


def _encode(reply: Reply, *, body: bool = True) -> bytes:
    """The reply on the wire; without its body for a HEAD (its length said all the same)."""
    reason = _REASONS.get(reply.status, "")
    lines = [
        f"HTTP/1.1 {reply.status} {reason}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in reply.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (reply.body if body else b"")


def _quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The loop's own complaints (a failed handshake, a reset connection) are a client's
    doing, not an error of ours: debug lines, never tracebacks on stderr."""
    log.debug("http: %s", context.get("message"), exc_info=context.get("exception"))


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
