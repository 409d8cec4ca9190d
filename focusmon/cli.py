"""The ``focusmon`` command: argv in, exit code out.

Exit codes: 0 done, 1 a failure while running, 2 bad usage or an input that cannot be
opened. Errors are one line, ``focusmon: error: ...``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from . import __version__, kernels
from ._errors import ConfigError, FocusmonError, SourceError
from ._progress import Progress
from .measures import resolve_backend
from .pipeline import score_source
from .source import open_source

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
    score.add_argument("source", help="a video or image file, a TIFF stack, or 'demo'")
    score.add_argument(
        "--backend", default="auto", help="auto (default), " + ", ".join(kernels.names())
    )
    score.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="score only this rectangle")
    score.add_argument(
        "--every", type=_positive_int, default=1, metavar="N", help="score every Nth frame"
    )
    score.add_argument(
        "--threads", type=_positive_int, default=1, metavar="N",
        help="CPU kernel threads (numba-cpu; default 1, leaving a core to the decoder)",
    )  # fmt: skip

    commands.add_parser("backends", help="list the compute backends and whether they can run")
    return parser


def _cmd_backends(args: argparse.Namespace) -> int:
    for name, why in kernels.available().items():
        print(f"{name:<11} {'available' if why is None else 'unavailable: ' + why}")
    return EXIT_OK


def _cmd_score(args: argparse.Namespace) -> int:
    options = {"threads": args.threads} if args.backend in ("auto", "numba-cpu") else {}
    backend = resolve_backend(args.backend, **options)
    try:
        source = open_source(args.source)
    except SourceError as exc:
        backend.close()
        raise _StartError(str(exc)) from exc
    progress = Progress(sys.stderr, "score", source.total)
    out = sys.stdout
    try:
        with source, backend:
            for record in score_source(source, backend, roi=args.roi, every=args.every):
                out.write(json.dumps(record.as_dict()) + "\n")
                progress.advance(args.every)
    finally:
        progress.close()
    out.flush()
    return EXIT_OK


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
            raise
        print(f"focusmon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, (ConfigError, _StartError)) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
