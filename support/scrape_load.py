"""/metrics under load: scrape latency while ``focusmon watch`` keeps up with its streams.

Starts the real command on live streams on 127.0.0.1 (`soak.watch_rig`: RTSP cameras, a UDP
MPEG-TS sender and the demo camera, events and best-frame saving on), measures each stream's
analysed frame rate for a few seconds, then scrapes ``/metrics`` in a tight loop — a new
connection per request (``Connection: close``, plain `http.client`), from one or more client
threads — for a fixed number of requests (2,000), bounded in time too. Every reply is kept
and checked afterwards, so that checking costs the server no CPU meanwhile: status 200, a
valid exposition (prometheus_client's parser), no NaN score, every stream present, each
stream's frames still rising (in every 2 s of the load), never down or no_signal. It prints
the latency percentiles and each stream's frame rate before and during the load.

``bench/bench_load.py`` prints the table; tests/integration/test_load.py runs `run_load`
and `check_load` on a smaller rig and asserts on them.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from slowloris import Attack
from soak import Rig, parse_streams, process_status

#: Seconds between the points at which each stream's frame count must have risen.
RISING_STEP_S = 2.0


@dataclass
class Reply:
    at_s: float  # when the request was sent, seconds since the load began
    latency_ms: float
    status: int  # 0: no HTTP answer (see error)
    body: bytes = b""
    error: str = ""


def fetch(
    host: str, port: int, path: str, timeout_s: float, tls: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """One GET on a fresh connection (over TLS with ``tls``), closed after it."""
    if tls is None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=tls)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def scrape_load(
    url: str,
    *,
    requests: int,
    clients: int,
    time_limit_s: float,
    timeout_s: float = 10.0,
    pause_s: float = 0.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[list[Reply], float]:
    """``requests`` GETs of ``url``/metrics from ``clients`` threads, each as fast as
    answered (or ``pause_s`` apart), stopping early at ``time_limit_s``. The replies (in
    completion order) and the seconds taken."""  # fmt: skip
    host, port = host_port(url)
    replies: list[Reply] = []
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    deadline = start + time_limit_s

    def client() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= requests or time.perf_counter() > deadline:
                    return
                issued += 1
            sent = time.perf_counter()
            try:
                status, body = fetch(host, port, "/metrics", timeout_s, tls)
                reply = Reply(sent - start, (time.perf_counter() - sent) * 1e3, status, body)
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                reply = Reply(sent - start, (time.perf_counter() - sent) * 1e3, 0, error=error)
            with lock:
                replies.append(reply)
            if pause_s:
                time.sleep(pause_s)

    threads = [
        threading.Thread(target=client, name=f"client {k}", daemon=True) for k in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit_s + 2 * timeout_s)
    return replies, time.perf_counter() - start


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and max of ``values``."""
    ranked = sorted(values)
    if not ranked:
        return {k: float("nan") for k in ("p50", "p95", "p99", "max")}

    def rank(p: float) -> float:
        return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ranked[-1]}


def measure_fps(rig: Rig, seconds: float) -> dict[str, float]:
    """Each stream's analysed frames per second over ``seconds`` (two scrapes)."""
    first, t0 = rig.scrape(), time.monotonic()
    time.sleep(seconds)
    last, t1 = rig.scrape(), time.monotonic()
    return {
        s.name: (last[s.name]["analysed"] - first[s.name]["analysed"]) / (t1 - t0)
        for s in rig.streams
    }


@dataclass
class LoadResult:
    """What a load run found. ``problems`` is empty when every check passed."""

    clients: int
    requested: int
    replies: list[Reply]
    elapsed_s: float
    fps_before: dict[str, float]
    fps_during: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def cut_short(self) -> bool:
        """True if the time limit stopped the load before all ``requested`` were sent."""
        return len(self.replies) < self.requested

    @property
    def latency(self) -> dict[str, float]:
        return percentiles([r.latency_ms for r in self.replies if r.status == 200])

    @property
    def rate(self) -> float:
        return len(self.replies) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def worst_share(self) -> float:
        """The lowest ratio of a stream's frame rate during the load to that before it."""
        return min(
            (self.fps_during.get(n, 0.0) / before if before > 0 else 0.0)
            for n, before in self.fps_before.items()
        )


def run_load(
    rig: Rig,
    *,
    requests: int = 2000,
    clients: int = 2,
    time_limit_s: float = 120.0,
    before_s: float = 5.0,
) -> LoadResult:
    """Measure the streams' frame rates, then load ``/metrics``; `check_load` judges the
    replies (it may run after the rig is stopped, so that parsing competes with nothing)."""
    fps_before = measure_fps(rig, before_s)
    replies, elapsed = scrape_load(
        rig.metrics_url, requests=requests, clients=clients, time_limit_s=time_limit_s,
        tls=rig.tls,
    )  # fmt: skip
    return LoadResult(clients, requests, replies, elapsed, fps_before)


def check_load(result: LoadResult) -> LoadResult:
    """Check every reply of ``result``, filling in ``problems`` and ``fps_during``."""
    names = list(result.fps_before)
    replies = result.replies
    timeline: list[tuple[float, dict[str, dict[str, object]]]] = []
    for k, reply in enumerate(replies):
        if reply.status != 200:
            result.problems.append(f"reply {k}: {reply.status or reply.error}")
            continue
        try:
            streams = parse_streams(reply.body.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            result.problems.append(f"reply {k}: not a valid exposition: {exc}")
            continue
        for name in names:
            stream = streams.get(name)
            if stream is None or "analysed" not in stream:
                result.problems.append(f"reply {k}: no stream {name}")
            elif stream["nan"]:
                result.problems.append(f"reply {k}: {name}: NaN in {stream['nan']}")
            elif not stream.get("up") or stream.get("state") == "no_signal":
                result.problems.append(f"reply {k}: {name} down ({stream.get('state')})")
        timeline.append((reply.at_s, streams))
    if len(timeline) < 2:
        result.problems.append("fewer than two valid replies")
        return result
    timeline.sort(key=lambda item: item[0])
    span = timeline[-1][0] - timeline[0][0]
    for name in names:
        counts = [(t, s[name]["analysed"]) for t, s in timeline if "analysed" in s.get(name, {})]
        if len(counts) < 2 or span <= 0:
            continue
        result.fps_during[name] = (counts[-1][1] - counts[0][1]) / span
        # The count at every RISING_STEP_S of the load (the last reply before each mark).
        marks, values = [counts[0][0]], [counts[0][1]]
        for t, value in counts:
            if t >= marks[-1] + RISING_STEP_S:
                marks.append(t)
                values.append(value)
        # The tail after the last mark is a step too, if it is long enough for a frame to
        # come: a load ending 30 ms after a mark (a fast machine) left a "step" shorter
        # than a frame's period at 25 fps, and a stream "did not rise" in it.
        if counts[-1][0] >= marks[-1] + RISING_STEP_S / 2:
            marks.append(counts[-1][0])
            values.append(counts[-1][1])
        stalls = sum(1 for a, b in zip(values, values[1:], strict=False) if b <= a)
        if stalls:
            result.problems.append(
                f"{name}: frames did not rise in {stalls} of {len(values) - 1} steps of "
                f"~{RISING_STEP_S:g} s during the load"
            )
    return result


def print_table(results: list[LoadResult], header: str) -> None:
    print(header)
    print("\n| clients | requests | failed | req/s | p50 ms | p95 ms | p99 ms | max ms | "
          "worst stream fps during/before |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lat = r.latency
        failed = sum(1 for x in r.replies if x.status != 200)
        print(f"| {r.clients} | {len(r.replies)} | {failed} | {r.rate:.0f} | {lat['p50']:.1f} | "
              f"{lat['p95']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | "
              f"{r.worst_share():.0%} |")  # fmt: skip
    print()
    for r in results:
        rates = ", ".join(
            f"{n} {r.fps_before[n]:.1f} -> {r.fps_during.get(n, 0.0):.1f}" for n in r.fps_before
        )
        verdict = "all checks passed" if not r.problems else "; ".join(r.problems[:5])
        if r.cut_short:
            verdict += f" (the time limit stopped it after {len(r.replies)} requests)"
        print(f"{r.clients} client(s): fps before -> during: {rates}; {verdict}")


# -- under attack --------------------------------------------------------------------------


@dataclass
class AttackResult:
    """Good scrapes of a watch while slow clients attack its endpoint, and what the attack
    cost the watch. ``problems`` is filled by `check_attack`."""

    mode: str  # "slow headers", "TLS: slow headers" or "TLS: no handshake"
    processes: int
    connections: int  # per attacking process
    load: LoadResult  # the good scrapes during the attack
    resting: tuple[int, int, int]  # RSS (kB), threads, descriptors before the attack
    peak: tuple[int, int, int]  # the most of each during it
    back_after_s: float | None  # seconds after the attack until threads and fds rested
    after: tuple[int, int, int] = (0, 0, 0)  # 5 s after the attack
    attackers: list[dict[str, int]] = field(default_factory=list)
    cores: tuple[float, float] = (0.0, 0.0)  # CPU cores used by the watch, the attackers
    problems: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Attacking connections the endpoint dropped."""
        return sum(a.get("dropped", 0) for a in self.attackers)

    @property
    def most_held(self) -> int:
        return sum(a.get("most_held", 0) for a in self.attackers)


def run_attack(
    rig: Rig,
    *,
    mode: str = "slow headers",
    processes: int = 4,
    connections: int = 850,
    every_s: float = 1.0,
    seconds: float = 20.0,
    scrape_every_s: float = 0.2,
    settle_s: float = 30.0,
) -> AttackResult:
    """``processes`` attackers of ``connections`` each at the rig's endpoint (a byte every
    ``every_s``; ``mode`` says how), good scrapes every ``scrape_every_s`` during
    ``seconds`` of it, the watch's threads, descriptors and memory sampled meanwhile and
    until they are back to their resting figures (at most ``settle_s``)."""
    host, port = host_port(rig.metrics_url)
    fps_before = measure_fps(rig, 3.0)
    resting = process_status(rig.watch.pid)
    peak = list(resting)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            with contextlib.suppress(OSError, ValueError):
                now = process_status(rig.watch.pid)
                for k in range(3):
                    peak[k] = max(peak[k], now[k])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attacks = [
        Attack(port, connections, every_s=every_s, tls=mode.startswith("TLS: slow headers"),
               silent=mode.startswith("TLS: no handshake"))
        for _ in range(processes)
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        for attack in attacks:
            stack.enter_context(attack)
        time.sleep(min(5.0, seconds / 4))  # the attackers at full strength
        pids = [a.proc.pid for a in attacks if a.proc is not None]
        cpu_before = (cpu_seconds(rig.watch.pid), sum(map(cpu_seconds, pids)))
        replies, elapsed = scrape_load(
            rig.metrics_url, requests=10**9, clients=1, time_limit_s=seconds,
            pause_s=scrape_every_s, tls=rig.tls,
        )  # fmt: skip
        cores = (
            (cpu_seconds(rig.watch.pid) - cpu_before[0]) / elapsed,
            (sum(map(cpu_seconds, pids)) - cpu_before[1]) / elapsed,
        )
    stopped = time.monotonic()
    sampling.set()
    sampler.join(5)
    back_after, now = None, resting
    while time.monotonic() - stopped < settle_s:
        now = process_status(rig.watch.pid)
        if now[1] <= resting[1] and now[2] <= resting[2]:
            back_after = time.monotonic() - stopped
            break
        time.sleep(0.1)
    time.sleep(max(0.0, stopped + 5.0 - time.monotonic()))
    after = process_status(rig.watch.pid)
    load = LoadResult(1, len(replies), replies, elapsed, fps_before)
    return AttackResult(mode, processes, connections, load, resting, tuple(peak), back_after,
                        after, [a.result for a in attacks], cores)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_attack(result: AttackResult, *, p99_ms: float = 1000.0, back_s: float = 5.0,
                 min_fps_share: float = 0.9) -> AttackResult:  # fmt: skip
    """The targets: good scrapes answered with p99 under ``p99_ms``; threads and
    descriptors back within ``back_s``; the streams at ``min_fps_share`` of their rate."""
    check_load(result.load)
    result.problems += result.load.problems
    p99 = result.load.latency["p99"]
    if not p99 < p99_ms:
        result.problems.append(f"good scrapes p99 {p99:.0f} ms (target < {p99_ms:.0f} ms)")
    if result.back_after_s is None or result.back_after_s > back_s:
        result.problems.append(
            f"threads/descriptors not back to {result.resting[1:]} within {back_s:g} s "
            f"(at {result.after[1:]} 5 s after)"
        )
    if result.load.fps_during and result.load.worst_share() < min_fps_share:
        result.problems.append(f"a stream fell to {result.load.worst_share():.0%} of its rate")
    return result


def print_attacks(results: list[AttackResult], header: str) -> None:
    print(header)
    print("\n| attack | slow connections | dropped | good scrapes | failed | p50 ms | p99 ms | "
          "max ms | threads rest / peak | fds rest / peak | RSS MB rest / peak / 5 s after | "
          "back to rest | worst stream fps during/before | "
          "CPU cores watch / attackers |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lat, replies = r.load.latency, r.load.replies
        failed = sum(1 for x in replies if x.status != 200)
        back = "—" if r.back_after_s is None else f"{r.back_after_s:.1f} s"
        mb = [f"{kb / 1024:.0f}" for kb in (r.resting[0], r.peak[0], r.after[0])]
        print(f"| {r.mode} ({r.processes} × {r.connections}) | {r.most_held} | {r.dropped} | "
              f"{len(replies)} | {failed} | {lat['p50']:.1f} | {lat['p99']:.1f} | "
              f"{lat['max']:.1f} | {r.resting[1]} / {r.peak[1]} | {r.resting[2]} / {r.peak[2]} "
              f"| {' / '.join(mb)} | {back} | {r.load.worst_share():.0%} | "
              f"{r.cores[0]:.2f} / {r.cores[1]:.2f} |")  # fmt: skip
    print()
    for r in results:
        verdict = "all targets met" if not r.problems else "; ".join(r.problems[:4])
        print(f"{r.mode}: {verdict}")
