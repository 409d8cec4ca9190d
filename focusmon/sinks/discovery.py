"""A fleet's front door for Prometheus: where every shard serves its streams' metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ._http import HttpServer, Reply, Request


class _FleetCollector(Collector):
    def __init__(self, summary: Callable[[], Mapping[str, object]]) -> None:
        self._summary = summary

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        summary = self._summary()
        shards = GaugeMetricFamily(
            "focusmon_fleet_shards", "Shards by state: running, starting, or waiting for a "
            "host with room", labels=["state"],
        )  # fmt: skip
        counts = summary.get("shards", {})
        for state in ("running", "starting", "waiting"):
            shards.add_metric([state], float(counts.get(state, 0)))  # type: ignore[union-attr]
        yield shards
        for name, key, doc in (
            ("focusmon_fleet_streams", "streams", "Streams in the fleet"),
            ("focusmon_fleet_slots", "capacity", "Stream slots on live hosts"),
            ("focusmon_fleet_moves", "moves", "Shards moved to hosts below their share"),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(summary.get(key, 0) or 0))  # type: ignore[arg-type]
            yield gauge
        spare = GaugeMetricFamily(
            "focusmon_fleet_spare_ok", "1 if every shard would still find room after losing "
            "the spare_hosts largest hosts",
        )  # fmt: skip
        spare.add_metric([], 1.0 if summary.get("spare_ok") else 0.0)
        yield spare


class DiscoveryEndpoint:
    """``/targets`` — Prometheus ``http_sd_configs``: a JSON list of the shards on live hosts,
    each ``{"targets": ["host:port"], "labels": {"shard", "host", "node"}}``; ``/metrics`` —
    the fleet's own gauges (shards by state, slots, moves); ``/healthz``. Both lists are
    read from callables that never wait on the cluster."""

    def __init__(
        self,
        host: str,
        port: int,
        targets: Callable[[], list[dict[str, object]]],
        summary: Callable[[], Mapping[str, object]],
    ) -> None:
        self._targets = targets
        self._registry = CollectorRegistry()
        self._registry.register(_FleetCollector(summary))
        routes = {"/targets": self._serve_targets, "/metrics": self._metrics,
                  "/healthz": self._healthz}  # fmt: skip
        self.server = HttpServer(host, port, routes)
        self.host, self.port = host, self.server.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.close()

    def _serve_targets(self, request: Request) -> Reply:
        body = json.dumps(self._targets()).encode()
        return Reply(200, body, "application/json")

    def _metrics(self, request: Request) -> Reply:
        return Reply(200, generate_latest(self._registry), "text/plain; version=0.0.4")

    def _healthz(self, request: Request) -> Reply:
        return Reply(200, b"ok\n")
