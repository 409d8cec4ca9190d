"""/metrics under load and under attack, while ``focusmon watch`` keeps up with its streams.

The real command on live streams on 127.0.0.1 (``support/soak.py``'s rig). First its
endpoint is scraped in a tight loop, every reply checked afterwards
(``support/scrape_load.py`` says how): the latency percentiles and each stream's frame rate
before and during the load. Then slow clients attack it (``support/slowloris.py``: four
processes holding connections that send a request a byte a second, coming back when
dropped), on HTTP and on HTTPS (the same bytes, or no handshake at all, or a handshake and
then the bytes; with an EC key, and the handshakes again with an RSA key), while a good
client scrapes it every 0.2 s: the good scrapes' latency, the watch's threads, descriptors
and memory at rest and at their peak, how soon they are back at rest after the attack, and
how long SIGTERM takes under it.

Run: ``python bench/bench_load.py`` (``--clients 1 2 4``, ``--requests N``,
``--attackers 4 --connections 850``, ``--no-attack``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from scrape_load import (  # noqa: E402
    check_attack,
    check_load,
    fetch,
    host_port,
    print_attacks,
    print_table,
    run_attack,
    run_load,
)
from slowloris import Attack  # noqa: E402
from soak import STOP_TIMEOUT_S, tools_missing, watch_rig  # noqa: E402


def sigterm_under_attack(rig, args: argparse.Namespace, tls: bool) -> tuple[float, int]:
    """Seconds ``watch`` takes to exit on SIGTERM while attacked, and its exit code."""
    _, port = host_port(rig.metrics_url)
    with Attack(port, args.connections, tls=tls):
        time.sleep(3)
        start = time.monotonic()
        code = rig.watch.stop(graceful_s=STOP_TIMEOUT_S)
        return time.monotonic() - start, code


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
    parser.add_argument("--no-attack", action="store_true", help="the plain load only")
    parser.add_argument("--attackers", type=int, default=4, help="processes (default 4)")
    parser.add_argument("--connections", type=int, default=850,
                        help="slow connections per attacking process (default 850)")  # fmt: skip
    parser.add_argument("--attack-seconds", type=float, default=30.0, metavar="S")
    args = parser.parse_args(argv)
    if why := tools_missing(args.rtsp, args.udp):
        print(f"bench_load: cannot run: {why}", file=sys.stderr)
        return 2
    results, attacks, stops = [], [], []
    rig_args = dict(rtsp=args.rtsp, udp=args.udp, demo=not args.no_demo)
    attack_args = dict(processes=args.attackers, connections=args.connections,
                       seconds=args.attack_seconds)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="focusmon-load-") as tmp:
        with watch_rig(Path(tmp) / "plain", **rig_args) as rig:
            size = len(fetch(*host_port(rig.metrics_url), "/metrics", 10.0)[1])
            for clients in args.clients:
                result = run_load(rig, requests=args.requests, clients=clients,
                                  time_limit_s=args.time_limit)  # fmt: skip
                results.append(result)
                print(f"  {clients} client(s): p50 {result.latency['p50']:.1f} ms",
                      file=sys.stderr, flush=True)  # fmt: skip
            if not args.no_attack:
                attacks.append(run_attack(rig, mode="slow headers", **attack_args))
                stops.append(("HTTP", *sigterm_under_attack(rig, args, tls=False)))
            streams = rig.streams
        if not args.no_attack:
            with watch_rig(Path(tmp) / "tls", tls="ec", **rig_args) as rig:
                for mode in ("slow headers", "TLS: no handshake", "TLS: slow headers"):
                    print(f"  attack: {mode}", file=sys.stderr, flush=True)
                    attacks.append(run_attack(rig, mode=mode, **attack_args))
                    attacks[-1].mode += " on HTTPS (EC key)"
                stops.append(("HTTPS", *sigterm_under_attack(rig, args, tls=True)))
            with watch_rig(Path(tmp) / "rsa", tls="rsa", **rig_args) as rig:
                attacks.append(run_attack(rig, mode="TLS: slow headers", **attack_args))
                attacks[-1].mode += " on HTTPS (RSA 2048 key)"
    for result in results:
        check_load(result)
    kinds = ", ".join(f"{sum(s.kind == k for s in streams)} {k}" for k in ("rtsp", "udp"))
    print_table(results, (
        f"# /metrics under load: focusmon watch on {len(streams)} streams ({kinds}"
        f"{', demo' if not args.no_demo else ''}; events and best frames on), "
        f"{args.requests} requests per row, a new connection each (no keep-alive), "
        f"exposition {size / 1e3:.1f} kB, {os.cpu_count()} cores"
    ))  # fmt: skip
    for attack in attacks:
        check_attack(attack)
    if attacks:
        print_attacks(attacks, (
            f"\n# /metrics under attack: {args.attackers} processes of {args.connections} slow "
            f"connections each (a byte a second, back at once when dropped), "
            f"{args.attack_seconds:g} s, a good scrape every 0.2 s"
        ))  # fmt: skip
        for scheme, seconds, code in stops:
            print(f"SIGTERM under attack ({scheme}): exited {code} after {seconds:.1f} s")
    ok = all(not r.problems and not r.cut_short for r in results)
    ok = ok and all(not a.problems for a in attacks)
    return 0 if ok and all(s < 5 and c == 0 for _, s, c in stops) else 1


if __name__ == "__main__":
    sys.exit(main())
