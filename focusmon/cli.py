"""The ``focusmon`` command: argv in, exit code out.

Exit codes: 0 done, 1 a failure while running, 2 bad usage or an input that cannot be
opened. Errors are one line, ``focusmon: error: ...``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence

from . import __version__, kernels
from ._errors import ConfigError, FocusmonError, SourceError
from ._progress import Progress
from .measures import resolve_backend
from .pipeline import score_source
from .source import Source, SourceOptions, open_source

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
    live = parser.add_argument_group("live sources (rtsp, udp, http, /dev/video)")
    live.add_argument(
        "--timeout", type=_positive_float, default=10.0, metavar="S",
        help="a read waiting longer is a disconnect (default 10)",
    )  # fmt: skip
    live.add_argument(
        "--rtsp-transport", choices=("tcp", "udp"), default="tcp", help="default tcp"
    )


def _source_options(args: argparse.Namespace) -> SourceOptions:
    return SourceOptions(
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
    score.add_argument(
        "--backend", default="auto", help="auto (default), " + ", ".join(kernels.names())
    )
    score.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="score only this rectangle")
    score.add_argument(
        "--frames", type=_positive_int, metavar="N", help="stop after N analysed frames"
    )
    score.add_argument(
        "--threads", type=_positive_int, default=1, metavar="N",
        help="CPU kernel threads (numba-cpu; default 1, leaving a core to the decoder)",
    )  # fmt: skip
    _add_source_options(score)

    commands.add_parser("backends", help="list the compute backends and whether they can run")
    return parser


def _cmd_backends(args: argparse.Namespace) -> int:
    for name, why in kernels.available().items():
        print(f"{name:<11} {'available' if why is None else 'unavailable: ' + why}")
    return EXIT_OK


def _cmd_score(args: argparse.Namespace) -> int:
    options = {"threads": args.threads} if args.backend in ("auto", "numba-cpu") else {}
    source_options = _source_options(args)
    backend = resolve_backend(args.backend, **options)
    try:
        source = open_source(args.source, source_options)
    except SourceError as exc:
        backend.close()
        raise _StartError(str(exc)) from None  # PyAV's error may name the URL's credentials
    except BaseException:
        backend.close()
        raise
    total = -(-source.total // args.every) if source.total else None
    progress = Progress(sys.stderr, "score", args.frames or total)
    out = sys.stdout
    try:
        with source, backend:
            for record in score_source(source, backend, roi=args.roi, max_frames=args.frames):
                out.write(json.dumps(record.as_dict()) + "\n")
                progress.advance()
    finally:
        progress.close()
        _report_losses(source)
    out.flush()
    return EXIT_OK


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
    command = {"score": _cmd_score, "backends": _cmd_backends}[args.command]
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
