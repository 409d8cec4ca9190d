"""How fast `focusmon watch` notices faults and recovers from them, with default settings.

Runs the fault matrix of ``support/fault_matrix.py`` (a real `focusmon.pipeline.Watcher`, real
gst-rtsp-server cameras, ffmpeg senders and an HTTP server on 127.0.0.1, default
`SourceOptions`) several times and prints, per fault: the time from the fault to the
stream's ``no_signal`` state change, the time from the fault clearing to the stream's
change out of ``no_signal``, the frames a healthy RTSP camera in the same watcher had
scored meanwhile, and the threads and file descriptors left after the watcher and the
servers stopped (counted per run: one watcher holds every fault unless ``--isolated``).

Run: ``python bench/bench_faults.py`` (``--repeats N``, ``--isolated``: each fault in its
own watcher beside the healthy camera, which takes about three times as long).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import fault_matrix as matrix  # noqa: E402 (the tests' fault matrix, run as is)


def _median_max(values: list[float | None]) -> str:
    if not values:
        return "—"
    if any(v is None for v in values):
        return f"missed {sum(v is None for v in values)} of {len(values)}"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def _healthy_frames(run: matrix.MatrixRun, outcome: matrix.FaultOutcome) -> tuple[int, float]:
    """The healthy stream's frames analysed while ``outcome``'s fault lasted (from warm-up
    on for the faults present from the start), and the seconds that took."""
    start = max(outcome.injected_at, run.warm_at)
    end = outcome.recovered_at or run.stopped_at
    return run.frames(matrix.HEALTHY, end) - run.frames(matrix.HEALTHY, start), end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isolated", action="store_true", help="one watcher per fault")
    parser.add_argument("--faults", nargs="+", choices=matrix.FAULTS, default=matrix.FAULTS)
    args = parser.parse_args()
    if matrix.MISSING:
        sys.exit("cannot run: " + "; ".join(matrix.MISSING))
    groups = [(f,) for f in args.faults] if args.isolated else [tuple(args.faults)]
    rows: dict[str, dict[str, list]] = {
        f: {"noticed": [], "recovered": [], "bound": [], "frames": [], "leaks": []}
        for f in args.faults
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for group in groups:
                run = matrix.run_matrix(Path(tmp), group)
                leaked = (run.threads[1] - run.threads[0], run.fds[1] - run.fds[0])
                problems = [e for e in run.errors.values() if e] + run.failures
                for fault, outcome in run.outcomes.items():
                    row = rows[fault]
                    row["noticed"].append(outcome.noticed_s)
                    if fault in matrix.RECOVERABLE:
                        row["recovered"].append(outcome.recovered_s)
                        row["bound"].append(outcome.recover_limit_s)
                    row["frames"].append(_healthy_frames(run, outcome))
                    row["leaks"].append(leaked)
                print(
                    f"  run {repeat + 1}/{args.repeats} {'+'.join(group)}: "
                    + ", ".join(
                        f"{f} {o.noticed_s:.1f}/"
                        + ("—" if o.recovered_s is None else f"{o.recovered_s:.1f}")
                        for f, o in run.outcomes.items()
                        if o.noticed_s is not None
                    )
                    + f"; leaked threads/fds {leaked}"
                    + (f"; problems: {problems}" if problems else ""),
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.monotonic() - started

    d = matrix.DEFAULTS
    layout = "each fault in its own watcher" if args.isolated else "all faults in one watcher"
    print(
        f"# focusmon watch under faults: default SourceOptions (timeout {d.timeout_s:g} s, "
        f"stalled after {d.stall_after:g} s, open timeout {d.open_timeout:g} s, backoff "
        f"{d.reconnect_initial_s:g}-{d.reconnect_max_s:g} s), {layout} beside a healthy "
        f"25 fps RTSP camera, {args.repeats} runs, {os.cpu_count()} cores, "
        f"{elapsed:.0f} s in all"
    )
    print()
    print(
        "| fault | noticed after (s, median / max) | recovered after (s, median / max) "
        "| recovery bound (s) | healthy camera's frames during the fault (median; per s) "
        "| threads / fds leaked (worst run) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for fault in args.faults:
        row = rows[fault]
        counts = [n for n, _ in row["frames"]]
        rate = sum(counts) / max(sum(s for _, s in row["frames"]), 1e-9)
        bound = f"{max(row['bound']):.1f}" if row["bound"] else "—"
        recovered = (
            _median_max(row["recovered"]) if fault in matrix.RECOVERABLE else "never (by design)"
        )
        leaks = max(row["leaks"], key=lambda pair: (abs(pair[0]) + abs(pair[1]), pair))
        print(
            f"| {fault} | {_median_max(row['noticed'])} | {recovered} | {bound} "
            f"| {statistics.median(counts):.0f} ({rate:.1f}/s) | {leaks[0]} / {leaks[1]} |"
        )


if __name__ == "__main__":
    main()
