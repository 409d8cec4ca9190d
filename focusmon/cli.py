"""The ``focusmon`` command: argv in, exit code out.

Exit codes: 0 done, 1 a failure while running, 2 bad usage or an input that cannot be
opened. Errors are one line, ``focusmon: error: ...``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence

import numpy as np

from . import __version__, kernels
from ._errors import ConfigError, FocusmonError, SourceError
from ._progress import Progress
from .autofocus import STRATEGIES, plot_curve, run_simulated_autofocus
from .config import load_config
from .kernels import Backend
from .measures import FocusRecord, resolve_backend
from .pipeline import BestFrames, StreamSpec, Watcher, score_source
from .scheduler import SHARPNESS, AlertSettings, PeakTracker, StateChange, find_peak
from .sinks import EventWriter, FrameSaver
from .sinks.metrics import parse_address
from .source import Source, SourceOptions, open_source, redact

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Raised by the parser instead of exiting, so `main` owns every exit."""


class _StartError(FocusmonError):
    """An input that cannot be opened: reported like bad usage (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _roi(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--roi must be X,Y,W,H (four integers), got {text!r}"
        ) from None
    return x, y, w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _ffmpeg_option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, got {text!r}")
    return name, value


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--every", type=_positive_int, default=1, metavar="N", help="analyse every Nth frame"
    )
    group.add_argument(
        "--max-fps", type=_positive_float, metavar="F",
        help="analyse at most F frames per second of stream time",
    )  # fmt: skip
    group.add_argument(
        "--keyframes", action="store_true",
        help="decode keyframes only (the decoder skips the rest: cheap checks of many cameras)",
    )  # fmt: skip
    group.add_argument(
        "--decoder-threads", type=int, default=0, metavar="N",
        help="decoder threads (default 0: one per core)",
    )  # fmt: skip
    group.add_argument(
        "--format", metavar="NAME", help="force FFmpeg's demuxer, e.g. mpjpeg for an MJPEG camera"
    )
    group.add_argument(
        "--ffmpeg-option", type=_ffmpeg_option, action="append", default=[], metavar="NAME=VALUE",
        help="an FFmpeg option for the input (names are checked; repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--hwaccel", metavar="DEVICE",
        help="decode on this device (cuda, vaapi, qsv ...; falls back to the CPU with one "
        "log line where there is none)",
    )  # fmt: skip
    group.add_argument(
        "--hw-frames", action="store_true",
        help="with --hwaccel and the numba-cuda backend: score frames where they were "
        "decoded, with no copy through the host",
    )  # fmt: skip
    live = parser.add_argument_group("live sources (rtsp, udp, http, /dev/video)")
    live.add_argument(
        "--timeout", type=_positive_float, default=10.0, metavar="S",
        help="a read waiting longer is a disconnect (default 10)",
    )  # fmt: skip
    live.add_argument(
        "--rtsp-transport", choices=("tcp", "udp"), default="tcp", help="default tcp"
    )


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default="auto", help="auto (default), " + ", ".join(kernels.names())
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=1, metavar="N",
        help="CPU kernel threads (numba-cpu; default 1, leaving a core to the decoder)",
    )  # fmt: skip


def _backend_options(args: argparse.Namespace) -> dict[str, object]:
    return {"threads": args.threads} if args.backend in ("auto", "numba-cpu") else {}


def _source_options(args: argparse.Namespace) -> SourceOptions:
    return SourceOptions(
        hwaccel=args.hwaccel,
        hw_frames=args.hw_frames,
        every=args.every,
        max_fps=args.max_fps,
        keyframes_only=args.keyframes,
        decoder_threads=args.decoder_threads,
        timeout_s=args.timeout,
        rtsp_transport=args.rtsp_transport,
        format=args.format,
        ffmpeg_options=dict(args.ffmpeg_option),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="focusmon", description="Streaming video focus monitor.")
    parser.add_argument("--version", action="version", version=f"focusmon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = commands.add_parser(
        "score",
        help="score every frame of a source, one JSON object per line",
        description="Write one JSON object per analysed frame to stdout, in decode order.",
    )
    score.add_argument(
        "source",
        help="a video file, an image, a TIFF stack, a folder of images, an rtsp/udp/http URL, "
        "/dev/videoN, or 'demo'",
    )
    _add_backend_options(score)
    score.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="score only this rectangle")
    score.add_argument(
        "--frames", type=_positive_int, metavar="N", help="stop after N analysed frames"
    )
    _add_source_options(score)

    peak = commands.add_parser(
        "peak",
        help="find the in-focus frame of a focus sweep (a z-stack, a lens sweep)",
        description="Print one JSON object: best_index (decode-order index of the in-focus "
        "frame), peak_position (interpolated), measure and the normalised score of each "
        "analysed frame. On a live source it stops as soon as the curve has passed the peak.",
    )
    peak.add_argument("source", help="a video file, a TIFF stack, a folder of images, a URL")
    peak.add_argument(
        "--measure", default="auto", choices=("auto", *SHARPNESS),
        help="the score to fit (default auto: noise-compensated Tenengrad, or variance for "
        "a dim sweep where its peak stands out better)",
    )  # fmt: skip
    _add_backend_options(peak)
    peak.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="score only this rectangle")
    _add_source_options(peak)

    watch = commands.add_parser(
        "watch",
        help="watch streams and report state changes (ok, blurred, obstructed, dark, no_signal)",
        description="Watch one or more sources until they end (files) or until stopped "
        "(live sources; SIGINT or SIGTERM). Each state change is logged and, with --events, "
        "written as one JSON line.",
    )
    watch.add_argument(
        "sources", nargs="*", metavar="SOURCE",
        help="sources as for score; 'demo' is a live synthetic camera here",
    )  # fmt: skip
    watch.add_argument("--config", metavar="FILE", help="streams and settings from a TOML file")
    service = watch.add_argument_group("endpoint")
    service.add_argument(
        "--metrics-addr", default=DEFAULT_METRICS_ADDR, metavar="HOST:PORT",
        help=f"serve /metrics and /healthz here (default {DEFAULT_METRICS_ADDR})",
    )  # fmt: skip
    service.add_argument("--no-metrics", action="store_true", help="serve no endpoint")
    service.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    service.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    watch.add_argument(
        "--name", action="append", default=[], metavar="NAME",
        help="a name per source, in order (default: the source, credentials redacted)",
    )  # fmt: skip
    watch.add_argument(
        "--events", metavar="PATH", help="append state changes as JSON lines; - for stdout"
    )
    watch.add_argument("--save-best", metavar="DIR", help="save each window's sharpest frame here")
    window = watch.add_mutually_exclusive_group()
    window.add_argument("--best-every", type=_positive_int, metavar="N", help="window of N frames")
    window.add_argument(
        "--best-seconds",
        type=_positive_float,
        metavar="T",
        help="window of T seconds (default 10)",
    )
    watch.add_argument(
        "--best-floor", type=_positive_float, metavar="S",
        help="save nothing for a window whose best normalised score is below S",
    )  # fmt: skip
    _add_backend_options(watch)
    watch.add_argument(
        "--batch", type=int, metavar="N",
        help="score up to N streams' frames in one GPU launch (default: one per stream on a "
        "GPU backend; 0: never)",
    )  # fmt: skip
    watch.add_argument(
        "--batch-wait-ms", type=_positive_float, default=5.0, metavar="MS",
        help="how long a batch waits for more frames after its first (default 5)",
    )  # fmt: skip
    watch.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="score only this rectangle")
    alerts = watch.add_argument_group("alerts (defaults need no calibration)")
    alerts.add_argument(
        "--blur-threshold", type=_positive_float, metavar="S",
        help="a fixed threshold on the normalised score instead of the learned baseline",
    )  # fmt: skip
    alerts.add_argument("--enter-ratio", type=_positive_float, default=0.5, metavar="R",
                        help="blurred below R x baseline (default 0.5)")  # fmt: skip
    alerts.add_argument("--leave-ratio", type=_positive_float, default=0.7, metavar="R",
                        help="ok again above R x baseline (default 0.7)")  # fmt: skip
    alerts.add_argument("--min-dwell", type=_positive_float, default=1.0, metavar="S",
                        help="a new state must hold S seconds (default 1)")  # fmt: skip
    _add_source_options(watch)

    focus = commands.add_parser(
        "autofocus",
        help="run an autofocus search on the simulated microscope and print the result",
        description="Autofocus on real hardware is the Python API (focusmon.autofocus: a "
        "Stage and a Camera); this command runs it on a simulated microscope (a real "
        "micrograph, defocus, photon noise, a flickering lamp, backlash) and prints one "
        "JSON object.",
    )
    focus.add_argument("--simulate", action="store_true", help="use the simulated microscope")
    focus.add_argument("--strategy", choices=STRATEGIES, default="sweep-fit")
    focus.add_argument("--z-min", type=float, default=-50.0, metavar="UM")
    focus.add_argument("--z-max", type=float, default=50.0, metavar="UM")
    focus.add_argument("--focus", type=float, metavar="UM",
                       help="the true focal plane (default: random in the range)")  # fmt: skip
    focus.add_argument("--photons", type=_positive_float, default=2000.0,
                       help="photo-electrons at white (light level; default 2000)")  # fmt: skip
    focus.add_argument("--flicker", type=float, default=0.1, help="lamp flicker (default 0.1)")
    focus.add_argument("--backlash", type=float, default=2.0, metavar="UM",
                       help="play in the focus drive (default 2)")  # fmt: skip
    focus.add_argument("--seed", type=int, default=None)
    focus.add_argument("--plot", metavar="PNG", help="plot the sampled curve (needs matplotlib)")
    focus.add_argument("--backend", default="auto", help="kernel backend")

    commands.add_parser("backends", help="list the compute backends and whether they can run")
    return parser


def _cmd_autofocus(args: argparse.Namespace) -> int:
    if not args.simulate:
        raise ConfigError(
            "on hardware, call focusmon.autofocus.autofocus(stage, camera, ...) from Python; "
            "this command needs --simulate"
        )
    if not args.z_min < args.z_max:
        raise ConfigError(f"--z-min must be below --z-max, got {args.z_min} and {args.z_max}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 (checked before the search, not after)
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'focusmon[plot]'") from None
    result, truth = run_simulated_autofocus(
        strategy=args.strategy, z_min=args.z_min, z_max=args.z_max, focus_um=args.focus,
        photons=args.photons, flicker=args.flicker, backlash_um=args.backlash,
        seed=args.seed, backend=args.backend,
    )  # fmt: skip
    print(json.dumps({**result.as_dict(), **truth}))
    if args.plot:
        plot_curve(result, truth, args.plot)
    return EXIT_OK if result.ok else EXIT_FAILURE


def _cmd_backends(args: argparse.Namespace) -> int:
    for name, why in kernels.available().items():
        print(f"{name:<11} {'available' if why is None else 'unavailable: ' + why}")
    return EXIT_OK


def _open(args: argparse.Namespace) -> tuple[Backend, Source]:
    """The backend and the opened source of ``score`` and ``peak``."""
    source_options = _source_options(args)
    backend = resolve_backend(args.backend, **_backend_options(args))
    try:
        return backend, open_source(args.source, source_options)
    except SourceError as exc:
        backend.close()
        raise _StartError(str(exc)) from None  # PyAV's error may name the URL's credentials
    except BaseException:
        backend.close()
        raise


def _scored(source: Source, backend: Backend, **kwargs: object) -> Iterator[FocusRecord]:
    """`score_source`, with a frame the kernels refuse (smaller than 3x3: a 1x1 image) as
    one error line rather than a traceback."""
    try:
        yield from score_source(source, backend, **kwargs)
    except FocusmonError:
        raise
    except ValueError as exc:
        raise FocusmonError(f"{source.name}: cannot score its frames: {exc}") from exc


def _cmd_score(args: argparse.Namespace) -> int:
    backend, source = _open(args)
    total = -(-source.total // args.every) if source.total else None
    progress = Progress(sys.stderr, "score", args.frames or total)
    out = sys.stdout
    try:
        with source, backend:
            for record in _scored(source, backend, roi=args.roi, max_frames=args.frames):
                out.write(json.dumps(record.as_dict()) + "\n")
                progress.advance()
    finally:
        progress.close()
        _report_losses(source)
    out.flush()
    return EXIT_OK


def _cmd_peak(args: argparse.Namespace) -> int:
    backend, source = _open(args)
    tracker = PeakTracker(measure=args.measure) if source.live else None
    records = []
    progress = Progress(sys.stderr, "peak", source.total)
    try:
        with source, backend:
            for record in _scored(source, backend, roi=args.roi):
                records.append(record)
                progress.advance()
                if tracker is not None and tracker.push(record.scores) is not None:
                    break  # a live sweep: the curve has passed its peak
    finally:
        progress.close()
        _report_losses(source)
    if not records:
        raise FocusmonError(f"{source.name}: no frame to find a peak in")
    peak = find_peak([r.scores for r in records], measure=args.measure)
    indices = [r.index for r in records]
    result = {
        "best_index": indices[peak.best_index],
        # From a position among the analysed frames to decode-order indices (with --every).
        "peak_position": float(np.interp(peak.position, range(len(indices)), indices)),
        "measure": peak.measure,
        "scores": peak.values,
    }
    print(json.dumps(result))
    return EXIT_OK


#: Where ``focusmon watch`` serves /metrics unless told otherwise (loopback only).
DEFAULT_METRICS_ADDR = "127.0.0.1:9713"
# `watch` options that belong to a stream: with --config they go in the file instead.
_STREAM_FLAGS = ("name", "roi", "every", "max_fps", "keyframes", "decoder_threads", "format",
                 "ffmpeg_option", "timeout", "rtsp_transport", "blur_threshold", "enter_ratio",
                 "leave_ratio", "min_dwell", "hwaccel", "hw_frames")  # fmt: skip
_SERVICE_FLAGS = ("metrics_addr", "tls_cert", "tls_key", "events", "save_best", "best_every",
                  "best_seconds", "best_floor", "backend", "threads", "batch",
                  "batch_wait_ms")  # fmt: skip


def _watch_plan(args: argparse.Namespace) -> tuple[list[StreamSpec], dict[str, object]]:
    """The streams and the service settings, from the command line or a config file (whose
    service settings the command line overrides)."""
    defaults = vars(build_parser().parse_args(["watch", "x"]))
    given = {k for k in _SERVICE_FLAGS if getattr(args, k) != defaults[k]}
    if args.config:
        if args.sources:
            raise ConfigError("give sources on the command line or in --config, not both")
        stray = [k for k in _STREAM_FLAGS if getattr(args, k) != defaults[k]]
        if stray:
            flag = "--" + stray[0].replace("_", "-")
            raise ConfigError(f"{flag} is a stream setting: with --config, put it in the file")
        config = load_config(args.config)
        service = {k: getattr(args, k) for k in _SERVICE_FLAGS}
        service.update({k: v for k, v in config.service.items() if k not in given})
        return config.streams, service
    if not args.sources:
        raise ConfigError("give at least one SOURCE, or --config FILE")
    if args.name and len(args.name) != len(args.sources):
        raise ConfigError(
            f"--name must be given once per source: {len(args.sources)} sources, "
            f"{len(args.name)} names"
        )
    names = args.name or [redact(s) for s in args.sources]
    try:
        alerts = AlertSettings(
            enter_ratio=args.enter_ratio, leave_ratio=args.leave_ratio,
            min_dwell_s=args.min_dwell, blur_threshold=args.blur_threshold,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = _source_options(args)
    specs = [
        StreamSpec(n, s, args.roi, options, alerts)
        for n, s in zip(names, args.sources, strict=True)
    ]
    return specs, {k: getattr(args, k) for k in _SERVICE_FLAGS}


def _cmd_watch(args: argparse.Namespace) -> int:
    specs, service = _watch_plan(args)
    log = logging.getLogger("focusmon")
    best = None
    if service["save_best"]:
        every, seconds = service["best_every"], service["best_seconds"]
        window_s = seconds or (None if every else 10.0)
        best = BestFrames(FrameSaver(service["save_best"]), every, window_s, service["best_floor"])
    address = None if args.no_metrics else parse_address(service["metrics_addr"])
    events = EventWriter(service["events"]) if service["events"] else None

    def on_change(change: StateChange) -> None:
        level = logging.INFO if change.state == "ok" else logging.WARNING
        log.log(
            level, "%s: %s -> %s at %.2f (score %.4g, baseline %.4g)", change.stream,
            change.previous, change.state, change.time, change.score, change.baseline,
        )  # fmt: skip
        if events is not None:
            events.write(change.as_dict())

    server = None
    try:
        try:
            watcher = Watcher(
                specs, backend=service["backend"],
                backend_options=_backend_options(argparse.Namespace(**service)),
                on_change=on_change, best=best, batch=service["batch"],
                batch_wait_s=service["batch_wait_ms"] / 1e3,
            )  # fmt: skip
        except SourceError as exc:
            raise _StartError(str(exc)) from None
        if address is not None:
            try:
                server = watcher.serve_metrics(
                    *address, certfile=service["tls_cert"], keyfile=service["tls_key"]
                )
            except ConfigError:
                watcher.close()
                raise
            log.info("metrics on %s/metrics", server.url)
        stop = lambda *_: watcher.stop()  # noqa: E731
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            watcher.start()
            while not watcher.wait(0.2):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        if server is not None:
            server.close()
        if events is not None:
            events.close()
    failed = [s for s in watcher.streams if s.error]
    return EXIT_FAILURE if failed and len(failed) == len(watcher.streams) else EXIT_OK


def _report_losses(source: Source) -> None:
    """One warning line when frames were skipped, so nothing is lost without a word."""
    stats = source.stats
    parts = [
        f"{n} {what}"
        for n, what in (
            (stats.corrupt, "corrupt frames skipped"),
            (stats.undecodable, "undecodable packets skipped"),
            (stats.dropped, "live frames dropped to keep up"),
            (stats.reconnects, "reconnects"),
        )
        if n
    ]
    if parts:
        print(f"focusmon: warning: {source.name}: {', '.join(parts)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"focusmon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="focusmon: %(levelname)s: %(message)s",
    )
    if args.command == "watch" and not args.debug:
        logging.getLogger("focusmon").setLevel(logging.INFO)  # a service logs its state changes
    command = {
        "score": _cmd_score, "peak": _cmd_peak, "watch": _cmd_watch,
        "autofocus": _cmd_autofocus, "backends": _cmd_backends,
    }[args.command]  # fmt: skip
    try:
        return command(args)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except FocusmonError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"focusmon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, (ConfigError, _StartError)) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
