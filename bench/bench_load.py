"""/metrics under load: scrape latency while ``focusmon watch`` keeps up with its streams.

The real command on live streams on 127.0.0.1 (``support/soak.py``'s rig), its endpoint
scraped in a tight loop, every reply checked afterwards (``support/scrape_load.py`` says
how); prints the latency percentiles and each stream's frame rate before and during the
load.

Run: ``python bench/bench_load.py`` (``--clients 1 2 4``, ``--requests N``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from scrape_load import check_load, fetch, host_port, print_table, run_load  # noqa: E402
from soak import tools_missing, watch_rig  # noqa: E402 (the rig of streams and watch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per row (default 2000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2],
                        help="client threads, one row each (default 1 2)")  # fmt: skip
    parser.add_argument("--time-limit", type=float, default=120.0, metavar="S",
                        help="stop a row after S seconds (default 120)")  # fmt: skip
    parser.add_argument("--rtsp", type=int, default=2, help="RTSP cameras (default 2)")
    parser.add_argument("--udp", type=int, default=1, help="UDP senders (default 1)")
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args(argv)
    if why := tools_missing(args.rtsp, args.udp):
        print(f"bench_load: cannot run: {why}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="focusmon-load-") as tmp:
        with watch_rig(Path(tmp), rtsp=args.rtsp, udp=args.udp, demo=not args.no_demo) as rig:
            size = len(fetch(*host_port(rig.metrics_url), "/metrics", 10.0)[1])
            for clients in args.clients:
                result = run_load(rig, requests=args.requests, clients=clients,
                                  time_limit_s=args.time_limit)  # fmt: skip
                results.append(result)
                print(f"  {clients} client(s): p50 {result.latency['p50']:.1f} ms",
                      file=sys.stderr, flush=True)  # fmt: skip
            streams = rig.streams
    for result in results:
        check_load(result)
    kinds = ", ".join(f"{sum(s.kind == k for s in streams)} {k}" for k in ("rtsp", "udp"))
    print_table(results, (
        f"# /metrics under load: focusmon watch on {len(streams)} streams ({kinds}"
        f"{', demo' if not args.no_demo else ''}; events and best frames on), "
        f"{args.requests} requests per row, a new connection each (no keep-alive), "
        f"exposition {size / 1e3:.1f} kB, {os.cpu_count()} cores"
    ))  # fmt: skip
    return 0 if all(not r.problems and not r.cut_short for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
