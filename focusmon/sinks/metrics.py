"""The Prometheus endpoint: per-stream metrics read from a snapshot at scrape time.

`MetricsEndpoint` is the sink: it binds its address when made (so a taken port fails
before anything starts) and serves ``/metrics`` and ``/healthz`` once the watch starts.
Its `FocusCollector` (prometheus_client's pattern for exporters) asks the watch for one
snapshot of every stream per scrape, so the values of a scrape belong together and nothing
is exported half-updated. A measure is exported only once a frame has been scored: never
as NaN, which alert rules silently fail to compare; `focusmon_signal_valid` says whether
the scores are current.
"""

from __future__ import annotations

import bisect
import gzip
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from .._errors import ConfigError
from .._text import printable
from ..kernels import MEASURE_TABLE
from ..scheduler import STATES
from ._auth import BasicAuth
from ._http import Handler, HttpServer, Limits, Reply, Request
from ._sink import BaseSink, StreamSnapshot, WatchView
from .page import LivePage

#: Upper bounds (seconds) of the processing-time histogram's buckets.
PROCESSING_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class KernelTimes:
    """A stream's histogram of kernel time per frame, over `PROCESSING_BUCKETS`.

    Not locked: the pipeline observes and reads it under its stream's lock, so that a
    scrape never sees a count without its sum.
    """

    __slots__ = ("buckets", "count", "sum_s")

    def __init__(self) -> None:
        self.buckets = [0] * len(PROCESSING_BUCKETS)  # cumulative, as exposition wants
        self.count = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_s += seconds
        for k in range(bisect.bisect_left(PROCESSING_BUCKETS, seconds), len(self.buckets)):
            self.buckets[k] += 1


class FocusCollector(Collector):
    """Exports every stream of ``snapshot()``; ``info`` becomes ``focusmon_info``."""

    def __init__(
        self,
        snapshot: Callable[[], Sequence[StreamSnapshot]],
        info: Mapping[str, str] | Callable[[], Mapping[str, str]],
        sink_failures: Callable[[], Mapping[str, int]] = dict,
        backend_fallbacks: Callable[[], int] = lambda: 0,
        sink_drops: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        # ``info`` read at each scrape: the backend changes if the GPU fails.
        self._snapshot = snapshot
        self._info = info if callable(info) else (lambda fixed=dict(info): fixed)
        self._sink_failures, self._backend_fallbacks = sink_failures, backend_fallbacks
        self._sink_drops = sink_drops

    def describe(self) -> list:
        return []  # do not collect at registration: the pipeline may not be running yet

    def collect(self) -> Iterator:
        streams = self._snapshot()
        info = InfoMetricFamily("focusmon", "Version and compute backend")
        info.add_metric([], dict(self._info()))
        yield info
        fallbacks = CounterMetricFamily(
            "focusmon_backend_fallbacks",
            "Times the backend failed (a GPU fault) and the streams moved to a CPU one",
        )
        fallbacks.add_metric([], self._backend_fallbacks())
        yield fallbacks
        failures = CounterMetricFamily(
            "focusmon_sink_failures", "Failures of an output (a full disk, ...)", labels=["sink"]
        )
        for sink, count in sorted(self._sink_failures().items()):
            failures.add_metric([sink], count)
        yield failures
        drops = CounterMetricFamily(
            "focusmon_sink_dropped", "Messages an output dropped (its queue full: a receiver "
            "too slow or gone)", labels=["sink"],
        )  # fmt: skip
        for sink, count in sorted(self._sink_drops().items()):
            drops.add_metric([sink], count)
        yield drops

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("stream",)):
            return GaugeMetricFamily(name, doc, labels=list(labels))

        def counter(name: str, doc: str):
            return CounterMetricFamily(name, doc, labels=["stream"])

        families = {
            "state": gauge(
                "focusmon_state", "1 for the stream's current state", ("stream", "state")
            ),
            "up": gauge("focusmon_source_up", "1 while the source delivers frames"),
            "valid": gauge("focusmon_signal_valid", "1 if the scores are of a current frame"),
            "age": gauge("focusmon_last_frame_age_seconds", "Seconds since the last frame"),
            "score": gauge("focusmon_sharpness_normalised", "Brightness-normalised sharpness"),
            "baseline": gauge("focusmon_sharpness_baseline", "The stream's learned baseline"),
            "relative": gauge(
                "focusmon_sharpness_relative", "Normalised sharpness over the baseline"
            ),
            "decoded": counter("focusmon_frames_decoded", "Frames out of the decoder"),
            "analysed": counter("focusmon_frames_analysed", "Frames scored"),
            "dropped": counter("focusmon_frames_dropped", "Live frames dropped to keep up"),
            "corrupt": counter("focusmon_frames_corrupt", "Corrupt frames skipped"),
            "unfit": counter(
                "focusmon_frames_unfit", "Frames that could not be scored (ROI outside), skipped"
            ),
            "undecodable": counter("focusmon_packets_undecodable", "Packets the decoder rejected"),
            "reconnects": counter("focusmon_reconnects", "Reconnections of the source"),
        }  # fmt: skip
        measures = {m.name: gauge(m.metric, m.help) for m in MEASURE_TABLE.values()}
        tiles = GaugeMetricFamily(
            "focusmon_tile_sharpness_relative",
            "A tile of the focus map: its normalised sharpness over its own baseline "
            "(--tile-metrics)",
            labels=["stream", "row", "col"],
        )
        processing = HistogramMetricFamily(
            "focusmon_processing_seconds", "Kernel time per analysed frame", labels=["stream"]
        )
        for s in streams:
            label = [s.name]
            for state in STATES:
                families["state"].add_metric([s.name, state.value], float(s.state is state))
            families["up"].add_metric(label, 1.0 if s.up else 0.0)
            families["valid"].add_metric(label, 1.0 if s.signal_valid else 0.0)
            if s.last_frame_age_s is not None:
                families["age"].add_metric(label, s.last_frame_age_s)
            if s.score is not None:
                families["score"].add_metric(label, s.score)
            if s.baseline:
                families["baseline"].add_metric(label, s.baseline)
                # Only where it means what the alerts mean: a current, lit, unobstructed
                # view (at night it compares with the day's baseline and would mislead).
                if s.score is not None and s.signal_valid and s.state.judged:
                    families["relative"].add_metric(label, s.score / s.baseline)
            for key, value in (
                ("decoded", s.frames_decoded), ("analysed", s.frames_analysed),
                ("dropped", s.frames_dropped), ("corrupt", s.frames_corrupt),
                ("unfit", s.frames_unfit),
                ("undecodable", s.packets_undecodable), ("reconnects", s.reconnects),
            ):  # fmt: skip
                families[key].add_metric(label, value)
            if s.scores is not None:
                for key, family in measures.items():
                    family.add_metric(label, s.scores[key])
            if s.tiles is not None and s.signal_valid and s.state.judged:
                for r, row in enumerate(s.tiles):
                    for c, value in enumerate(row):
                        tiles.add_metric([s.name, str(r), str(c)], value)
            buckets = [
                (_bound(b), count)
                for b, count in zip(PROCESSING_BUCKETS, s.processing_buckets, strict=True)
            ]
            buckets.append(("+Inf", s.processing_count))
            processing.add_metric(label, buckets, s.processing_sum_s)
        yield from families.values()
        yield from measures.values()
        if tiles.samples:
            yield tiles
        yield processing


def _bound(value: float) -> str:
    return repr(float(value))


def _one_line(text: str) -> str:
    """``text`` on one line, its control characters escaped (a stream's name may hold a
    newline that would forge a line, or ANSI escapes)."""
    return printable(text)


#: What a 401 asks for: a login for the realm, in UTF-8 (RFC 7617).
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="focusmon", charset="UTF-8"'}


class MetricsEndpoint(BaseSink):
    """``/metrics`` and ``/healthz`` over HTTP, or HTTPS with a certificate: a sink that
    reads the watch at scrape time.

    The address is bound when the endpoint is made, so a taken port or a bad certificate
    fails before anything starts; serving starts with the watch (`start`), on a server
    that slow or hostile clients cannot wear down (`focusmon.sinks._http`: a deadline for
    each request, a cap on connections, a fixed number of threads). ``/metrics`` has a
    `FocusCollector` and the process and platform metrics exporters are expected to have
    (start time, CPU, memory, descriptors), in the format the scraper asks for
    (Prometheus text or OpenMetrics), gzipped if it accepts it. ``/healthz`` answers 200
    while the watch is healthy, else 503; its text is ``ok`` (or why not), then one line
    per stream. Binds to ``host`` only: 127.0.0.1 unless told otherwise. With ``page``
    the same server serves the live page (`LivePage`) at ``/``.

    Who may look: with ``users`` (name -> scrypt hash, `read_users`) the page asks for a
    login (HTTP basic auth; ``/metrics`` too with ``metrics_auth``; ``/healthz`` never);
    with ``client_ca`` every client must present a certificate that CA signed (HTTPS).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        limits: Limits | None = None,
        page: bool = True,
        users: Mapping[str, str] | None = None,
        metrics_auth: bool = False,
        client_ca: str | None = None,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if client_ca is not None and certfile is None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (HTTPS)")
        tls = None if certfile is None else load_tls(certfile, keyfile, client_ca)  # type: ignore[arg-type]
        self.auth = None if users is None else BasicAuth(users)
        self._watch: WatchView | None = None
        self._registry = CollectorRegistry()
        metrics = self._guarded(self._metrics) if metrics_auth else self._metrics
        routes = {"/metrics": metrics, "/healthz": self._healthz}
        self.page = LivePage(lambda: self._watch) if page else None
        if self.page is not None:
            routes.update({k: self._guarded(v) for k, v in self.page.routes().items()})
        try:
            self.server = HttpServer(host, port, routes, tls=tls, limits=limits)
        except ConfigError as exc:
            raise ConfigError(f"metrics: {exc}") from None
        self.host, self.port = host, self.server.port
        self.scheme = "https" if certfile else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self, watch: WatchView) -> None:
        """Serve ``watch`` from now on."""
        self._registry.register(FocusCollector(
            watch.snapshot, lambda: watch.info, watch.sink_failures, watch.backend_fallbacks,
            watch.sink_drops,
        ))  # fmt: skip
        self._registry.register(PROCESS_COLLECTOR)
        self._registry.register(PLATFORM_COLLECTOR)
        self._watch = watch
        self.server.start()

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind the login, when there is one."""
        auth = self.auth
        if auth is None:
            return handler

        def guarded(request: Request) -> Reply:
            if auth.allows(request.headers.get("authorization")):
                return handler(request)
            return Reply(401, b"log in to see the cameras\n", headers=_CHALLENGE)

        return guarded

    def _metrics(self, request: Request) -> Reply:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body, headers = encoder(self._registry), {}
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        return Reply(200, body, content_type, headers)

    def _healthz(self, request: Request) -> Reply:
        watch = self._watch
        assert watch is not None  # served only once started
        ok = watch.healthy()
        lines = ["ok" if ok else "no stream is running", *map(_one_line, watch.health_report())]
        return Reply(200 if ok else 503, "".join(f"{line}\n" for line in lines).encode())

    def close(self) -> None:
        self.server.close()


def load_tls(certfile: str, keyfile: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server TLS context of ``certfile`` and ``keyfile`` (with ``client_ca``: every
    client must present a certificate it signed); ConfigError naming what is wrong
    (missing, mismatched, encrypted or not PEM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load --tls-client-ca {client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED

    def no_passphrase() -> bytes:  # else OpenSSL asks on the terminal: a service hangs
        raise ConfigError(
            f"the TLS key {keyfile} is encrypted: give an unencrypted key "
            "(focusmon does not ask for a passphrase)"
        )

    try:
        context.load_cert_chain(certfile, keyfile, password=no_passphrase)
    except ConfigError:
        raise
    except OSError as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"cannot load the TLS certificate {certfile} or key {keyfile}: {exc}"
        ) from None
    return context
