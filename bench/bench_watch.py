"""How many live 720p streams at 25 fps one machine keeps up with, and /metrics latency.

Each stream is a real MPEG-TS/H.264 sender on 127.0.0.1 (``ffmpeg -re -stream_loop -1
-c copy`` of a 720p clip of photographs panned and zoomed, a keyframe every 2 s), watched by one
in-process `focusmon.pipeline.Watcher` with its Prometheus endpoint up. For N streams at a
time, it measures over a window after warm-up: the frames analysed per second per stream,
the share dropped to keep up, the process's CPU use, and the latency of ``/metrics``
scraped in a loop. A stream "keeps up" when it analyses at least 95% of the frames (full
decode) or keyframes (keyframes-only mode) that one sender delivers to a plain PyAV reader
over the same window, measured first.

With ``--pages``, it measures instead what the live page costs: 4 full-decode streams with
0, 1 and 5 pages open (each page a separate process polling as the page's script does:
``streams.json`` every second, a stream's ``frame.jpg`` whenever a newer frame is kept,
its ``history.json`` every 5 s), the configurations taking turns over 3 rounds; the CPU is
the watching process's alone.

Run: ``python bench/bench_watch.py`` (``--quick``: fewer stream counts, shorter windows;
``--pages``: the page's cost).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from focusmon.config import ServiceSettings, StreamSpec, WatchConfig  # noqa: E402
from focusmon.pipeline import Watcher  # noqa: E402
from focusmon.sinks import MetricsEndpoint  # noqa: E402
from focusmon.source import SourceOptions  # noqa: E402

from media import panned_clip  # noqa: E402

FPS = 25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def senders(clip: Path, ports: list[int]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(clip),
                "-c",
                "copy",
                "-f",
                "mpegts",
                f"udp://127.0.0.1:{port}?pkt_size=1316",
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        for port in ports
    ]


def delivered_fps(clip: Path, *, keyframes: bool, warmup_s: float, window_s: float) -> float:
    """What one sender really delivers, read by plain PyAV with nothing else running
    (ffmpeg's -re -stream_loop pauses for most of a second at each loop point)."""
    port = free_port()
    (proc,) = senders(clip, [port])
    url = f"udp://127.0.0.1:{port}?timeout=5000000&buffer_size=8388608&fifo_size=50000"
    count, start = 0, None
    try:
        with av.open(url, timeout=(10, 10)) as container:
            stream = container.streams.video[0]
            if keyframes:
                stream.codec_context.skip_frame = "NONKEY"
            opened = time.monotonic()
            for _ in container.decode(stream):
                now = time.monotonic()
                if now - opened < warmup_s:
                    continue
                start = start or now
                count += 1
                if now - start >= window_s:
                    break
    finally:
        proc.kill()
        proc.wait()
    return count / window_s


def run(
    clip: Path, n: int, *, keyframes: bool, warmup_s: float, window_s: float, reference: float
) -> dict:
    ports = [free_port() for _ in range(n)]
    options = SourceOptions(keyframes_only=keyframes, timeout_s=5.0, decoder_threads=1)
    specs = [
        StreamSpec(f"s{k}", f"udp://127.0.0.1:{p}", options=options) for k, p in enumerate(ports)
    ]
    procs = senders(clip, ports)
    server = MetricsEndpoint("127.0.0.1", 0)
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numba-cpu"), specs), [server])
    try:
        watcher.start()
        time.sleep(warmup_s)
        before = [(s.source.stats.decoded, s.source.stats.analysed) for s in watcher.streams]
        cpu0, t0 = os.times(), time.monotonic()
        latencies = []
        while time.monotonic() - t0 < window_s:
            start = time.perf_counter()
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
                r.read()
            latencies.append((time.perf_counter() - start) * 1e3)
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu1 = os.times()
        after = [(s.source.stats.decoded, s.source.stats.analysed) for s in watcher.streams]
    finally:
        watcher.close()  # and its endpoint
        for p in procs:
            p.kill()
            p.wait()
    expected = reference * elapsed
    analysed = [a1 - a0 for (_, a0), (_, a1) in zip(before, after, strict=True)]
    decoded = [d1 - d0 for (d0, _), (d1, _) in zip(before, after, strict=True)]
    # Within 5%, or one frame (keyframes come every 2 s: a window holds only a few dozen).
    worst = (
        min(1.0, min(analysed) / max(expected - 1, 1e-9))
        if keyframes
        else min(analysed) / expected
    )
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed
    latencies.sort()
    return {
        "n": n, "keyframes": keyframes, "worst_share": worst,
        "fps_per_stream": statistics.mean(analysed) / elapsed,
        "dropped_share": 1 - sum(analysed) / max(sum(decoded), 1),
        "cpu_cores": cpu, "p50_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(len(latencies) * 0.95)], "scrapes": len(latencies),
    }  # fmt: skip


#: One open page, as a process of its own: what page.js asks for, at its pace.
PAGE_CLIENT = """
import json, sys, time, urllib.parse, urllib.request
base = sys.argv[1]
shown, curves = {}, 0.0
while True:
    start = time.monotonic()
    with urllib.request.urlopen(base + "/streams.json", timeout=10) as r:
        streams = json.load(r)["streams"]
    for s in streams:
        path = base + "/streams/" + urllib.parse.quote(s["name"], safe="") + "/"
        if s["frame"] is not None and shown.get(s["name"]) != s["frame"]:
            shown[s["name"]] = s["frame"]
            urllib.request.urlopen(path + "frame.jpg", timeout=10).read()
        if start - curves >= 5.0:
            urllib.request.urlopen(path + "history.json?seconds=120", timeout=10).read()
    if start - curves >= 5.0:
        curves = start
    time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
"""


def run_pages(clip: Path, pages: int, *, streams: int, warmup_s: float, window_s: float) -> dict:
    """CPU of a watch of ``streams`` full-decode streams with ``pages`` pages open."""
    ports = [free_port() for _ in range(streams)]
    options = SourceOptions(timeout_s=5.0, decoder_threads=1)
    specs = [StreamSpec(f"s{k}", f"udp://127.0.0.1:{p}", options=options)
             for k, p in enumerate(ports)]  # fmt: skip
    procs = senders(clip, ports)
    server = MetricsEndpoint("127.0.0.1", 0)
    watcher = Watcher(WatchConfig(ServiceSettings(backend="numba-cpu"), specs), [server])
    clients: list[subprocess.Popen] = []
    try:
        watcher.start()
        clients = [subprocess.Popen([sys.executable, "-c", PAGE_CLIENT, server.url])
                   for _ in range(pages)]  # fmt: skip
        time.sleep(warmup_s)
        assert server.page is not None
        encodings0, cpu0, t0 = server.page.encodings, os.times(), time.monotonic()
        before = sum(s.source.stats.analysed for s in watcher.streams)
        time.sleep(window_s)
        elapsed, cpu1 = time.monotonic() - t0, os.times()
        analysed = sum(s.source.stats.analysed for s in watcher.streams) - before
        encodings = server.page.encodings - encodings0
    finally:
        for c in clients:
            c.kill()
            c.wait()
        watcher.close()
        for p in procs:
            p.kill()
            p.wait()
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed
    return {"pages": pages, "cpu_cores": cpu, "fps": analysed / elapsed / streams,
            "encodings_s": encodings / elapsed}  # fmt: skip


def main_pages(clip: Path, quick: bool) -> None:
    warmup_s, window_s, rounds = (4.0, 8.0, 2) if quick else (5.0, 15.0, 3)
    results: dict[int, list[dict]] = {0: [], 1: [], 5: []}
    for k in range(rounds):
        for pages in results:  # the configurations take turns
            row = run_pages(clip, pages, streams=4, warmup_s=warmup_s, window_s=window_s)
            results[pages].append(row)
            print(f"  round {k + 1}, {pages} pages: {row}", file=sys.stderr)
    base = statistics.median(r["cpu_cores"] for r in results[0])
    print(f"# focusmon watch, 4 streams of 720p H.264 at {FPS} fps, {os.cpu_count()} cores, "
          f"medians of {rounds} rounds\n")  # fmt: skip
    print("| pages open | CPU cores | vs no page | analysed fps/stream | JPEG encodings/s |")
    print("|---:|---:|---:|---:|---:|")
    for pages, rows in results.items():
        cpu = statistics.median(r["cpu_cores"] for r in rows)
        fps = statistics.median(r["fps"] for r in rows)
        enc = statistics.median(r["encodings_s"] for r in rows)
        print(f"| {pages} | {cpu:.2f} | {cpu / base:.2f}x | {fps:.1f} | {enc:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clip", type=Path, help="a 720p H.264 clip to send (default: made)")
    parser.add_argument("--pages", action="store_true", help="the live page's cost instead")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("needs the ffmpeg CLI (apt-get install ffmpeg)")
    full_counts = [2, 4, 8] if args.quick else [2, 4, 6, 8, 10, 12, 16]
    key_counts = [8, 32] if args.quick else [8, 16, 32]  # beyond, the senders load the CPU
    warmup_s, base_window_s = (4.0, 6.0) if args.quick else (6.0, 15.0)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.clip:
            clip = args.clip
        else:
            mp4 = panned_clip(Path(tmp) / "clip.mp4", 8.0, size=(1280, 720))
            clip = Path(tmp) / "clip.ts"
            subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), "-c", "copy",
                            "-bsf:v", "h264_mp4toannexb", str(clip)], check=True)  # fmt: skip
        if args.pages:
            main_pages(clip, args.quick)
            return
        for keyframes, counts in ((False, full_counts), (True, key_counts)):
            window_s = base_window_s * (3 if keyframes else 1)  # a keyframe every 2 s: count more
            reference = delivered_fps(clip, keyframes=keyframes, warmup_s=2, window_s=window_s)
            print(f"  one sender delivers {reference:.2f} fps (keyframes={keyframes})",
                  file=sys.stderr)  # fmt: skip
            for n in counts:
                row = run(clip, n, keyframes=keyframes, warmup_s=warmup_s, window_s=window_s,
                          reference=reference)  # fmt: skip
                rows.append(row)
                print(f"  {n} streams, keyframes={keyframes}: worst {row['worst_share']:.2f}",
                      file=sys.stderr)  # fmt: skip
                if row["worst_share"] < 0.95:
                    break  # this many is too many: stop climbing

    print(f"# focusmon watch, 720p H.264 at {FPS} fps over UDP, {os.cpu_count()} cores, "
          f"PyAV {av.__version__}\n")  # fmt: skip
    print("| mode | streams | keeps up | analysed fps/stream | dropped | CPU cores | "
          "/metrics p50 ms | p95 ms |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mode = "keyframes only" if r["keyframes"] else "full decode"
        keeps = "yes" if r["worst_share"] >= 0.95 else f"no ({r['worst_share']:.0%})"
        print(f"| {mode} | {r['n']} | {keeps} | {r['fps_per_stream']:.1f} | "
              f"{r['dropped_share']:.1%} | {r['cpu_cores']:.2f} | {r['p50_ms']:.1f} | "
              f"{r['p95_ms']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
