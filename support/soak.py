"""Soak: does ``focusmon watch`` hold its memory, threads and descriptors over hours?

Runs the real command (``python -m focusmon watch``, a subprocess) on streams that loop
forever on 127.0.0.1 — RTSP cameras (Debian's gst-rtsp-server, support/rtsp_camera.py), UDP
MPEG-TS senders (``ffmpeg -re -stream_loop -1``) and the ``demo`` camera, whose scene goes
out of focus, covered and dark each minute — with ``--events`` and ``--save-best`` on, so
that state changes and frame saving are soaked too. Every few seconds it samples the watch
process's RSS (``/proc/PID/status`` VmRSS), threads (``Threads``), open descriptors
(``/proc/PID/fd``) and, from its ``/metrics``, each stream's frames analysed, state and
reconnects.

After the warm-up (2 minutes, or 20% of a shorter run) it reports RSS, threads and
descriptors at warm-up end and at the end, and whether each stream kept up, then a verdict
against the target: RSS growth under ``--max-rss-growth-mb`` (10 MB, of 10^6 bytes), no
thread or descriptor growth, every stream kept up. The exit code is 0 on a pass, 1 on a miss (so CI
can use it), 2 when it cannot run here.

How growth is measured, so that one busy moment is not a leak: RSS "at warm-up end" and
"at the end" are medians of three samples; thread and descriptor growth compare the
*minimum* over the last tenth of the run with the minimum over the first tenth after
warm-up (a scrape's handler thread or a reconnect's socket is transient; a leak stays).

Run: ``python bench/soak.py`` (30 minutes), ``--seconds 90`` for a short run, ``--csv``
to keep the samples. ``bench/bench_load.py`` and tests/integration/test_load.py reuse `watch_rig`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import functools
import http.client
import json
import math
import os
import select
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
from media import h264_clip  # noqa: E402
from servers import (  # noqa: E402
    CAMERA_SCRIPT,
    SYSTEM_PYTHON,
    camera_launch,
    ffmpeg_reason,
    free_port,
    rtsp_server_reason,
)

#: Every stream here runs at 25 fps.
STREAM_FPS = 25.0
#: Seconds the rig waits for the first frames of every stream.
START_TIMEOUT_S = 60.0
#: Seconds ``watch`` gets to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 20.0
#: Newest saved frames kept in --save-best's folder (older ones are counted, then deleted,
#: so that a run of hours does not fill the disk).
KEEP_SAVED = 40
EXIT_PASS, EXIT_MISS, EXIT_CANNOT_RUN = 0, 1, 2
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL when this script dies, even by SIGKILL (a CI
    timeout), since each child has its own session and no signal to us reaches it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


class Child:
    """A child process in its own session, its output in a log file (a pipe nobody reads
    would block a 30-minute run once it fills)."""

    def __init__(self, args: list[str], log: Path, *, ready_line: str | None = None) -> None:
        self.args, self.log = args, log
        self.returncode: int | None = None
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if ready_line else out, stderr=out,
                start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )  # fmt: skip
        if ready_line is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)
            line = self.proc.stdout.readline().decode(errors="replace") if ready else ""
            if line.strip() != ready_line:
                self.stop()
                raise RuntimeError(f"{args[:3]} did not start: {line!r}; {self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, graceful_s: float = 0.0) -> int:
        """SIGTERM and up to ``graceful_s`` to exit, then SIGKILL; the exit code."""
        self.signal(signal.SIGCONT)  # a stopped process cannot die of SIGTERM
        if graceful_s > 0:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=graceful_s)
        self.signal(signal.SIGKILL)
        self.returncode = self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.returncode

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class StreamInfo:
    name: str
    kind: str  # rtsp, udp or demo
    url: str


@dataclass
class Rig:
    """A running ``focusmon watch`` and its streams."""

    watch: Child
    metrics_url: str
    streams: list[StreamInfo]
    events: Path
    best_dir: Path
    children: list[Child] = field(default_factory=list)
    saved_deleted: int = 0
    tls: ssl.SSLContext | None = None  # a client context trusting the endpoint's certificate

    def scrape(self, timeout_s: float = 10.0) -> dict[str, dict[str, object]]:
        """Each stream's counters, state and liveness from one ``/metrics`` scrape."""
        url = f"{self.metrics_url}/metrics"
        with urllib.request.urlopen(url, timeout=timeout_s, context=self.tls) as r:
            return parse_streams(r.read().decode())

    def saved_frames(self) -> int:
        """Frames saved so far; all but the newest `KEEP_SAVED` are deleted once counted."""
        images = sorted(
            (p for p in self.best_dir.iterdir() if p.suffix in (".png", ".tif")),
            key=lambda p: (p.stat().st_mtime_ns, p.name),
        )
        for image in images[:-KEEP_SAVED]:
            image.unlink(missing_ok=True)
            image.with_suffix(".json").unlink(missing_ok=True)
            self.saved_deleted += 1
        return self.saved_deleted + len(images[-KEEP_SAVED:])

    def events_written(self) -> int:
        try:
            return len(self.events.read_text().splitlines())
        except FileNotFoundError:
            return 0


#: focusmon_* series whose value is a score: NaN there would silently break alert rules.
SCORE_METRICS = (
    "focusmon_sharpness_normalised", "focusmon_sharpness_baseline",
    "focusmon_sharpness_relative", "focusmon_laplacian_variance", "focusmon_tenengrad",
    "focusmon_sobel_magnitude_mean", "focusmon_haar_energy", "focusmon_luma_mean",
    "focusmon_luma_std",
)  # fmt: skip


def parse_streams(text: str) -> dict[str, dict[str, object]]:
    """Per stream: ``analysed``, ``decoded``, ``dropped``, ``reconnects`` (counts), ``up``
    (bool), ``state`` and ``nan`` (score series that are NaN), from an exposition.

    Raises
    ------
    ValueError
        If ``text`` is not a valid exposition (the parser's error).
    """
    counters = {
        "focusmon_frames_analysed_total": "analysed", "focusmon_frames_decoded_total": "decoded",
        "focusmon_frames_dropped_total": "dropped", "focusmon_reconnects_total": "reconnects",
    }  # fmt: skip
    streams: dict[str, dict[str, object]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.labels.get("stream")
            if name is None:
                continue
            stream = streams.setdefault(name, {"nan": []})
            if sample.name in counters:
                stream[counters[sample.name]] = int(sample.value)
            elif sample.name == "focusmon_source_up":
                stream["up"] = sample.value == 1.0
            elif sample.name == "focusmon_state" and sample.value == 1.0:
                stream["state"] = sample.labels["state"]
            if sample.name in SCORE_METRICS and not math.isfinite(sample.value):
                stream["nan"].append(sample.name)
    return streams


def tools_missing(rtsp: int, udp: int) -> str | None:
    """Why these streams cannot run here, or None."""
    if udp and (why := ffmpeg_reason()):
        return why
    if rtsp and (why := rtsp_server_reason()):
        return why
    return None


@contextlib.contextmanager
def watch_rig(
    folder: Path,
    *,
    rtsp: int = 2,
    udp: int = 1,
    demo: bool = True,
    backend: str = "auto",
    best_seconds: float = 2.0,
    tls: str | None = None,
) -> Iterator[Rig]:
    """``focusmon watch`` on ``rtsp`` cameras, ``udp`` senders and the demo camera, with
    events and best-frame saving into ``folder``; every process is gone when it ends. With
    ``tls`` (``ec`` or ``rsa``) its endpoint serves HTTPS with a certificate of that kind
    made for it (`self_signed`).

    Yields once every stream has analysed a frame. Raises RuntimeError if that does not
    happen within `START_TIMEOUT_S` (with the tail of watch's log).
    """
    folder.mkdir(parents=True, exist_ok=True)
    streams: list[StreamInfo] = []
    children: list[Child] = []
    watch: Child | None = None
    try:
        for k in range(rtsp):
            port = free_port()
            # A moving colour-bar chart (in focus: "ok") and a ball on black ("dark"), so
            # that both the scoring and the dark-scene paths run.
            pattern, size = (("smpte horizontal-speed=2", "320x240"), ("ball", "640x360"))[k % 2]
            launch = camera_launch(pattern, size=size, fps=int(STREAM_FPS))
            children.append(Child([SYSTEM_PYTHON, str(CAMERA_SCRIPT), str(port), launch],
                                  folder / f"camera{k}.log", ready_line="READY"))  # fmt: skip
            streams.append(StreamInfo(f"cam{k}", "rtsp", f"rtsp://127.0.0.1:{port}/cam"))
        udp_ports = [free_port() for _ in range(udp)]
        for k, port in enumerate(udp_ports):
            streams.append(StreamInfo(f"udp{k}", "udp", f"udp://127.0.0.1:{port}"))
        if demo:
            streams.append(StreamInfo("demo", "demo", "demo"))
        metrics_port = free_port()
        events, best_dir = folder / "events.jsonl", folder / "best"
        args = [sys.executable, "-m", "focusmon", "watch", *(s.url for s in streams)]
        for s in streams:
            args += ["--name", s.name]
        args += ["--metrics-addr", f"127.0.0.1:{metrics_port}", "--events", str(events),
                 "--save-best", str(best_dir), "--best-seconds", str(best_seconds),
                 "--timeout", "5", "--backend", backend]  # fmt: skip
        client_tls = None
        if tls:
            cert, key = self_signed(folder, tls)
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
            client_tls = ssl.create_default_context(cafile=str(cert))
        watch = Child(args, folder / "watch.log")  # opens UDP (binds) before the senders
        if udp_ports:
            clip = h264_clip(folder / "clip.ts", 20.0, size="640x360", gop=50)
        for k, port in enumerate(udp_ports):
            children.append(Child(
                ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
                 "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "mpegts",
                 f"udp://127.0.0.1:{port}?pkt_size=1316"],
                folder / f"udp{k}.log",
            ))  # fmt: skip
        scheme = "https" if tls else "http"
        rig = Rig(watch, f"{scheme}://127.0.0.1:{metrics_port}", streams, events, best_dir,
                  children, tls=client_tls)  # fmt: skip
        _wait_for_frames(rig)
        yield rig
    finally:
        try:
            if watch is not None:
                watch.stop(graceful_s=STOP_TIMEOUT_S)
        finally:
            for child in children:
                child.stop()


def self_signed(folder: Path, key_type: str = "ec") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl, valid for a day:
    ``ec`` (P-256, what a service should use: a handshake costs a tenth of RSA's) or
    ``rsa`` (2048 bits)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    new_key = "ec" if key_type == "ec" else "rsa:2048"
    extra = ["-pkeyopt", "ec_paramgen_curve:prime256v1"] if key_type == "ec" else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", new_key, *extra, "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    return cert, key


def _wait_for_frames(rig: Rig) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        if not rig.watch.alive():
            raise RuntimeError(f"focusmon watch exited: {rig.watch.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            seen = rig.scrape(timeout_s=2.0)
            if all(seen.get(s.name, {}).get("analysed", 0) > 0 for s in rig.streams):
                return
        time.sleep(0.25)
    waiting = [s.name for s in rig.streams if not seen.get(s.name, {}).get("analysed")]
    raise RuntimeError(
        f"no frame from {waiting} within {START_TIMEOUT_S:g} s: {rig.watch.log_tail()}"
    )


# -- sampling ----------------------------------------------------------------------------


@dataclass
class Sample:
    t_s: float  # seconds since the rig was up
    rss_kb: int
    threads: int
    fds: int
    streams: dict[str, dict[str, object]]  # parse_streams of the scrape
    events: int
    saved: int


def process_status(pid: int) -> tuple[int, int, int]:
    """RSS (kB), threads and open descriptors of ``pid``, from /proc."""
    rss = threads = -1
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))


def sample_run(
    rig: Rig, duration_s: float, interval_s: float, progress: bool
) -> tuple[list[Sample], bool]:
    """Samples every ``interval_s`` for ``duration_s``, and whether Ctrl-C (or SIGTERM)
    cut the run short; stops early if watch exits."""
    samples: list[Sample] = []
    start = time.monotonic()
    try:
        for k in range(int(duration_s / interval_s) + 1):
            wait = start + k * interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not rig.watch.alive():
                break
            samples.append(_sample(rig, start))
            if progress and k % max(1, round(60 / interval_s)) == 0:
                _print_progress(samples[-1])
    except KeyboardInterrupt:
        return samples, True
    return samples, False


def _sample(rig: Rig, start: float) -> Sample:
    t_s = time.monotonic() - start
    # /proc first: the scrape's own handler thread is then not counted.
    rss, threads, fds = process_status(rig.watch.pid)
    try:
        streams = rig.scrape()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        streams = {"<scrape>": {"error": f"{type(exc).__name__}: {exc}"}}
    return Sample(t_s, rss, threads, fds, streams, rig.events_written(), rig.saved_frames())


def _print_progress(sample: Sample) -> None:
    frames = " ".join(f"{n}={s.get('analysed', '?')}" for n, s in sample.streams.items())
    print(
        f"  {sample.t_s:6.0f} s  RSS {_mb(sample.rss_kb):6.1f} MB  threads "
        f"{sample.threads}  fds {sample.fds}  frames {frames}",
        file=sys.stderr,
        flush=True,
    )


# -- the report --------------------------------------------------------------------------


def _mb(kib: float) -> float:
    """MB (10^6 bytes, as the target is set) from /proc's kB (KiB)."""
    return kib * 1024 / 1e6


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def analyse(
    samples: list[Sample],
    streams: list[StreamInfo],
    *,
    warmup_s: float,
    duration_s: float,
    max_rss_growth_mb: float,
    max_thread_growth: int,
    max_fd_growth: int,
    min_fps_share: float,
) -> dict:
    """The figures and the verdict of a run, as a JSON-able dict."""
    post = [s for s in samples if s.t_s >= warmup_s - 1e-6]
    problems: list[str] = []
    if len(post) < 6:
        return {"passed": False, "problems": [f"only {len(post)} samples after warm-up"]}
    if samples[-1].t_s < duration_s - 2 * (samples[1].t_s - samples[0].t_s):
        problems.append(f"watch exited after {samples[-1].t_s:.0f} s of {duration_s:.0f} s")
    window = max(3, len(post) // 10)
    head, tail = post[:window], post[-window:]
    rss_start = _mb(_median([s.rss_kb for s in post[:3]]))
    rss_end = _mb(_median([s.rss_kb for s in post[-3:]]))
    times = [s.t_s for s in post]
    rss = [_mb(s.rss_kb) for s in post]
    slope = statistics.linear_regression(times, rss).slope if len(set(times)) > 1 else 0.0
    memory = {
        "rss_warmup_mb": rss_start, "rss_end_mb": rss_end, "rss_growth_mb": rss_end - rss_start,
        "rss_max_mb": max(rss), "rss_min_mb": min(rss), "rss_trend_mb_per_h": slope * 3600,
        "rss_first_mb": _mb(samples[0].rss_kb),
    }  # fmt: skip
    counts = {}
    for key in ("threads", "fds"):
        values = [getattr(s, key) for s in post]
        counts[key] = {
            "warmup": min(getattr(s, key) for s in head),
            "end": min(getattr(s, key) for s in tail),
            "min": min(values), "max": max(values),
            "first": getattr(samples[0], key),
        }  # fmt: skip
        counts[key]["growth"] = counts[key]["end"] - counts[key]["warmup"]
    if memory["rss_growth_mb"] >= max_rss_growth_mb:
        problems.append(f"RSS grew {memory['rss_growth_mb']:+.1f} MB after warm-up "
                        f"(target < {max_rss_growth_mb:g} MB)")  # fmt: skip
    for key, limit, what in (("threads", max_thread_growth, "threads"),
                             ("fds", max_fd_growth, "open descriptors")):  # fmt: skip
        if counts[key]["growth"] > limit:
            problems.append(f"{what} grew by {counts[key]['growth']} after warm-up "
                            f"({counts[key]['warmup']} -> {counts[key]['end']})")  # fmt: skip

    per_stream = []
    span = post[-1].t_s - post[0].t_s
    for info in streams:
        series = [s.streams.get(info.name, {}) for s in post]
        analysed = [int(v.get("analysed", -1)) for v in series]
        decoded = [int(v.get("decoded", -1)) for v in series]
        dropped = [int(v.get("dropped", -1)) for v in series]
        reconnects = [int(v.get("reconnects", -1)) for v in series]
        states = sorted({str(v.get("state", "?")) for v in series})
        rising = all(b > a >= 0 for a, b in zip(analysed, analysed[1:], strict=False))
        down = sum(1 for v in series if not v.get("up") or v.get("state") == "no_signal")
        fps = (analysed[-1] - analysed[0]) / span if span > 0 else 0.0
        nan = sorted({n for v in series for n in v.get("nan", [])})
        row = {
            "stream": info.name, "kind": info.kind,
            "analysed_total": analysed[-1], "analysed_after_warmup": analysed[-1] - analysed[0],
            "fps": fps, "decoded_fps": (decoded[-1] - decoded[0]) / span if span else 0.0,
            "dropped_after_warmup": dropped[-1] - dropped[0],
            "reconnects_after_warmup": reconnects[-1] - reconnects[0],
            "states": states, "rising": rising, "samples_down": down, "nan_series": nan,
            "analysed_series": [int(v.get("analysed", -1)) for v in
                                (s.streams.get(info.name, {}) for s in samples)],
        }  # fmt: skip
        why = []
        if not rising:
            stalls = sum(1 for a, b in zip(analysed, analysed[1:], strict=False) if b <= a)
            why.append(f"frames did not rise in {stalls} of {len(analysed) - 1} intervals")
        if down:
            why.append(f"down or no_signal in {down} samples")
        if fps < min_fps_share * STREAM_FPS:
            why.append(f"{fps:.1f} fps < {min_fps_share:.0%} of {STREAM_FPS:g}")
        if row["reconnects_after_warmup"]:
            why.append(f"{row['reconnects_after_warmup']} reconnects")
        if nan:
            why.append(f"NaN in {', '.join(nan)}")
        row["kept_up"], row["why"] = not why, why
        if why:
            problems.append(f"{info.name}: " + "; ".join(why))
        per_stream.append(row)
    scrape_errors = [s.streams["<scrape>"]["error"] for s in samples if "<scrape>" in s.streams]
    if scrape_errors:
        problems.append(f"{len(scrape_errors)} scrapes failed, e.g. {scrape_errors[0]}")
    return {
        "passed": not problems, "problems": problems, "duration_s": samples[-1].t_s,
        "warmup_s": warmup_s, "samples": len(samples), "memory": memory, **counts,
        "streams": per_stream, "events": samples[-1].events, "saved": samples[-1].saved,
        "targets": {"max_rss_growth_mb": max_rss_growth_mb,
                    "max_thread_growth": max_thread_growth, "max_fd_growth": max_fd_growth,
                    "min_fps_share": min_fps_share},
    }  # fmt: skip


def print_report(result: dict, header: str) -> None:
    print(header)
    if "memory" not in result:
        print("verdict: MISS — " + "; ".join(result["problems"]))
        return
    m, th, fd = result["memory"], result["threads"], result["fds"]
    print("\n| after warm-up | at warm-up end | at the end | growth | min | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| RSS (MB) | {m['rss_warmup_mb']:.1f} | {m['rss_end_mb']:.1f} | "
        f"{m['rss_growth_mb']:+.1f} | {m['rss_min_mb']:.1f} | {m['rss_max_mb']:.1f} |"
    )
    for label, c in (("threads", th), ("open fds", fd)):
        print(f"| {label} | {c['warmup']} | {c['end']} | {c['growth']:+d} | {c['min']} | "
              f"{c['max']} |")  # fmt: skip
    print(f"\nRSS at the first sample {m['rss_first_mb']:.1f} MB; trend after warm-up "
          f"(least squares) {m['rss_trend_mb_per_h']:+.2f} MB/h.")  # fmt: skip
    print("\n| stream | kind | frames analysed | after warm-up | fps | dropped | reconnects "
          "| states seen | kept up |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for s in result["streams"]:
        kept = "yes" if s["kept_up"] else "NO: " + "; ".join(s["why"])
        print(
            f"| {s['stream']} | {s['kind']} | {s['analysed_total']} | "
            f"{s['analysed_after_warmup']} | {s['fps']:.1f} | {s['dropped_after_warmup']} | "
            f"{s['reconnects_after_warmup']} | {', '.join(s['states'])} | {kept} |"
        )
    print(f"\nevents written: {result['events']}; best frames saved: {result['saved']}")
    t = result["targets"]
    target = (f"RSS growth < {t['max_rss_growth_mb']:g} MB, thread growth <= "
              f"{t['max_thread_growth']}, fd growth <= {t['max_fd_growth']}, "
              f"every stream kept up (rising frames, >= {t['min_fps_share']:.0%} of "
              f"{STREAM_FPS:g} fps, no reconnect, never down)")  # fmt: skip
    if result["passed"]:
        print(f"verdict: PASS ({target})")
    else:
        print(f"verdict: MISS ({target}): " + "; ".join(result["problems"]))


def write_csv(path: Path, samples: list[Sample], streams: list[StreamInfo]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["t_s", "rss_kb", "threads", "fds", "events", "saved",
                         *(f"{s.name}_analysed" for s in streams),
                         *(f"{s.name}_state" for s in streams)])  # fmt: skip
        for x in samples:
            analysed = [x.streams.get(s.name, {}).get("analysed", "") for s in streams]
            states = [x.streams.get(s.name, {}).get("state", "") for s in streams]
            writer.writerow(
                [f"{x.t_s:.2f}", x.rss_kb, x.threads, x.fds, x.events, x.saved, *analysed, *states]
            )


def code_version() -> str:
    """focusmon's version and the git commit it runs from (``+edits`` if its code differs)."""
    from focusmon import __version__

    def git(*args: str) -> str:
        root = str(Path(__file__).resolve().parents[1])
        command = ["git", "-C", root, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        edits = git("status", "--porcelain", "--", "focusmon", "kernels")
    except OSError:
        head = edits = ""
    return f"focusmon {__version__}" + (f", {head}{'+edits' if edits else ''}" if head else "")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (and an ignored SIGINT) clean up as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=30.0, help="run length (default 30)")
    length.add_argument("--seconds", type=float, help="run length in seconds (short runs)")
    parser.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="seconds not judged (default: 120, or 20%% of a shorter run)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between samples (default 5; 2 for runs under 5 min)",
    )
    parser.add_argument("--rtsp", type=int, default=2, help="RTSP cameras (default 2)")
    parser.add_argument("--udp", type=int, default=1, help="UDP MPEG-TS senders (default 1)")
    parser.add_argument("--no-demo", action="store_true", help="without the demo camera")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-rss-growth-mb", type=float, default=10.0)
    parser.add_argument("--max-thread-growth", type=int, default=0)
    parser.add_argument("--max-fd-growth", type=int, default=0)
    parser.add_argument(
        "--min-fps-share",
        type=float,
        default=0.8,
        help="a stream keeps up at this share of 25 fps (default 0.8)",
    )
    parser.add_argument("--csv", type=Path, help="write the samples here")
    parser.add_argument("--json", type=Path, help="write the figures and verdict here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    duration_s = args.seconds if args.seconds is not None else args.minutes * 60
    warmup_s = args.warmup if args.warmup is not None else min(120.0, 0.2 * duration_s)
    interval_s = args.interval or (5.0 if duration_s >= 300 else 2.0)
    if not 0 <= warmup_s < duration_s or interval_s <= 0:
        parser.error("need 0 <= --warmup < the run length and --interval > 0")
    if why := tools_missing(args.rtsp, args.udp):
        print(f"soak: cannot run: {why}", file=sys.stderr)
        return EXIT_CANNOT_RUN

    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(sig, _raise_interrupt)
    version = code_version()  # before the run: the tree may change meanwhile
    with tempfile.TemporaryDirectory(prefix="focusmon-soak-") as tmp:
        try:
            with watch_rig(Path(tmp), rtsp=args.rtsp, udp=args.udp, demo=not args.no_demo,
                           backend=args.backend) as rig:  # fmt: skip
                print(
                    f"soak: watch pid {rig.watch.pid} on {len(rig.streams)} streams, "
                    f"{duration_s:g} s, warm-up {warmup_s:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                samples, interrupted = sample_run(
                    rig, duration_s, interval_s, progress=not args.quiet
                )
                watch_alive = rig.watch.alive()
            stop_code = rig.watch.returncode
        except KeyboardInterrupt:  # while starting or stopping: nothing to report
            print("soak: interrupted; every process stopped", file=sys.stderr)
            return 130
        except RuntimeError as exc:
            print(f"soak: cannot run: {exc}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        result = analyse(
            samples, rig.streams, warmup_s=warmup_s, duration_s=duration_s,
            max_rss_growth_mb=args.max_rss_growth_mb, max_thread_growth=args.max_thread_growth,
            max_fd_growth=args.max_fd_growth, min_fps_share=args.min_fps_share,
        )  # fmt: skip
        if not watch_alive:
            result["passed"] = False
            result["problems"].append(f"watch died during the run: {rig.watch.log_tail()}")
        elif stop_code != 0:
            result["passed"] = False
            result["problems"].append(f"watch exited {stop_code} on SIGTERM (expected 0)")
        result["watch_exit_code"] = stop_code
        if interrupted:
            print("soak: interrupted; every process stopped; the figures so far:",
                  file=sys.stderr)  # fmt: skip
            result["passed"] = False
            result["problems"].append("interrupted")
    kinds = ", ".join(f"{sum(s.kind == k for s in rig.streams)} {k}" for k in ("rtsp", "udp"))
    header = (f"# focusmon watch soak: {duration_s / 60:.1f} min on {len(rig.streams)} "
              f"streams ({kinds}{', demo' if not args.no_demo else ''}; events and best "
              f"frames on), warm-up {warmup_s:g} s, a sample every {interval_s:g} s "
              f"({len(samples)} samples), {os.cpu_count()} cores, {version}")  # fmt: skip
    print_report(result, header)
    if args.csv:
        write_csv(args.csv, samples, rig.streams)
    if args.json:
        args.json.write_text(json.dumps({**result, "header": header}, indent=1) + "\n")
    if interrupted:
        return 130
    return EXIT_PASS if result["passed"] else EXIT_MISS


if __name__ == "__main__":
    sys.exit(main())
