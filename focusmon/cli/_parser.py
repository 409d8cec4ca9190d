"""The command line's grammar: the commands, their flags (from `focusmon.config.OPTIONS`)
and an example in each ``--help``."""

from __future__ import annotations

import argparse
import textwrap

from .. import __version__, kernels
from ..autofocus import STRATEGIES
from ..config import Integer, Number, add_flags, flag_type
from ..scheduler import SHARPNESS


class UsageError(Exception):
    """Raised by a parser instead of exiting, so `main` owns every exit; ``parser`` is the
    (sub)command whose usage to show."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, self)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but words no command knows are blamed on the command given, whose
        usage is then shown (argparse would show the top level's)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = getattr(self, "commands", {})
            raise UsageError(
                f"unrecognized arguments: {' '.join(extras)}",
                commands.get(getattr(parsed, "command", None), self),
            )
        return parsed


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str,
    *examples: str,
) -> argparse.ArgumentParser:  # fmt: skip
    parser = commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 88),
        epilog=_examples(*examples), formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    return parser


SOURCE_HELP = (
    "a video file, an image, a TIFF stack, a folder of images, an rtsp/udp/http URL, "
    "/dev/videoN, or 'demo'"
)


def _grid(text: str) -> tuple[int, int]:
    """``ROWSxCOLS`` (4x4) as (rows, cols): an argparse ``type=``."""
    rows, sep, cols = text.lower().partition("x")
    if not (sep and rows.isdigit() and cols.isdigit() and int(rows) >= 1 and int(cols) >= 1):
        raise argparse.ArgumentTypeError(f"must be ROWSxCOLS, e.g. 4x4, got {text!r}")
    if int(rows) * int(cols) > 4096:
        raise argparse.ArgumentTypeError(f"at most 4096 tiles, got {text!r}")
    return int(rows), int(cols)


def build_parser() -> argparse.ArgumentParser:
    """The ``focusmon`` command's parser."""
    parser = _Parser(
        prog="focusmon", description="Streaming video focus monitor.",
        epilog=_examples(
            "focusmon score clip.mp4 --every 5", "focusmon peak zstack.tif",
            "focusmon watch demo", "focusmon watch --config /etc/focusmon/streams.toml",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"focusmon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = commands.choices  # type: ignore[attr-defined] (name -> subparser)

    score = _command(
        commands, "score", "score every frame of a source, one JSON object per line",
        "Write one JSON object per analysed frame to stdout, in decode order: its index, "
        "pts (seconds), the measures and the finest detail's energy by direction.",
        "focusmon score clip.mp4 --every 5 --roi 100,50,640,360 > scores.jsonl",
    )  # fmt: skip
    score.add_argument("source", help=SOURCE_HELP)
    score.add_argument(
        "--frames", type=flag_type(Integer(1)), metavar="N", help="stop after N analysed frames"
    )
    score.add_argument("--tiles", type=_grid, metavar="ROWSxCOLS",
                       help="also score each tile of this grid (a focus map), in the same "
                       "pass: a \"tiles\" object per line")  # fmt: skip
    add_flags(score, "score")

    peak = _command(
        commands, "peak", "find the in-focus frame of a focus sweep (a z-stack, a lens sweep)",
        "Print one JSON object: best_index (decode-order index of the in-focus frame), "
        "peak_position (interpolated), peak_uncertainty (how closely it is placed: one "
        "standard deviation, in frames), measure and the normalised score of each analysed "
        "frame. On a live source it stops as soon as the curve has passed the peak. A TIFF "
        "stack with ImageJ or OME metadata is read along its axes: each channel's focus "
        "as a z index and, with the spacing, in µm (\"channels\"; --channel picks the "
        "top-level one).",
        "focusmon peak zstack.tif", "focusmon peak sweep.mp4 --measure tenengrad_nc",
    )  # fmt: skip
    peak.add_argument("source", help=SOURCE_HELP)
    peak.add_argument(
        "--measure", dest="peak_measure", default="auto", choices=("auto", *SHARPNESS),
        help="the score to fit (default auto: noise-compensated Tenengrad, or variance for "
        "a dim sweep where its peak stands out better)",
    )  # fmt: skip
    peak.add_argument(
        "--plot",
        metavar="PNG",
        help="draw the curve, its peak and the chosen "
        "plane (each channel's, for a stack of several; needs matplotlib)",
    )
    peak.add_argument("--channel", type=flag_type(Integer(0)), metavar="C",
                      help="a multi-channel stack (ImageJ or OME TIFF): the channel the "
                      "top-level answer is for (default 0; every channel's peak is listed "
                      "in \"channels\")")  # fmt: skip
    peak.add_argument("--tiles", type=_grid, metavar="ROWSxCOLS",
                      help="also find each tile's peak and fit the field's tilt and "
                      "curvature to them (a \"field\" object)")  # fmt: skip
    peak.add_argument("--z-step", type=flag_type(Number(above=True)), metavar="UM",
                      help="with --tiles: the focus step between frames (e.g. µm), to give "
                      "the tilt across the field and the curvature in it")  # fmt: skip
    add_flags(peak, "peak")

    watch = _command(
        commands, "watch",
        "watch streams and report state changes (ok, blurred, obstructed, dark, no_signal)",
        "Watch one or more sources until they end (files) or until stopped (live sources; "
        "SIGINT or SIGTERM). Each state change is logged and given to the sinks: --events, "
        "--save-best, and the metrics endpoint.",
        "focusmon watch rtsp://user:pass@cam1/stream cam2.mp4 --name door --name yard "
        "--events events.jsonl",
        "focusmon watch --config /etc/focusmon/streams.toml",
    )  # fmt: skip
    watch.add_argument(
        "sources", nargs="*", metavar="SOURCE",
        help="sources as for score; 'demo' is a live synthetic camera here",
    )  # fmt: skip
    watch.add_argument(
        "--config", metavar="FILE",
        help="streams and settings from a TOML file (its service settings are overridden "
        "by the flags given)",
    )  # fmt: skip
    add_flags(watch, "watch")

    fleet = _command(
        commands, "fleet", "run the streams of a config file as a fleet on a Ray cluster",
        "Spread the streams of a watch config file over the hosts of a Ray cluster, in "
        "shards (Ray actors, each a watch of its own serving /metrics on a port of its "
        "own): Ray starts a shard again on another host when its host is lost, and the "
        "streams' learned baselines go with it. Prometheus finds the shards at --sd-addr "
        "(/targets, http_sd_configs). Without --address, Ray runs on this machine. "
        "`focusmon fleet status` prints where every stream runs. Needs "
        "pip install 'focusmon[fleet]'.",
        "focusmon fleet --config streams.toml --address 10.0.0.1:6379 --sd-addr 0.0.0.0:9714",
        "focusmon fleet status --address 10.0.0.1:6379",
    )  # fmt: skip
    fleet.add_argument(
        "action", nargs="?", choices=("run", "status"), default="run",
        help="run the fleet (default) or print where every stream runs",
    )  # fmt: skip
    fleet.add_argument("--config", metavar="FILE", help="the streams file, as for watch")
    fleet.add_argument(
        "--address", metavar="HOST:PORT",
        help="the Ray cluster's head (default: start Ray on this machine)",
    )  # fmt: skip
    fleet.add_argument(
        "--sd-addr", default="127.0.0.1:9714", metavar="HOST:PORT",
        help="serve Prometheus service discovery (/targets) and the fleet's /metrics here "
        "(default 127.0.0.1:9714)",
    )  # fmt: skip
    add_flags(fleet, "fleet")

    check = _command(
        commands, "check-config", "check a watch config file and print it, passwords hidden",
        "Check every key of a TOML file for `watch --config` without starting anything, "
        "then print the settings each stream really gets (defaults merged) as TOML, with "
        "every credential shown as ***. Exit 0 if the file is good, 2 if not.",
        "focusmon check-config /etc/focusmon/streams.toml",
    )  # fmt: skip
    check.add_argument("file", metavar="FILE", help="the TOML file")

    focus = _command(
        commands, "autofocus", "run an autofocus search on the simulated microscope",
        "Autofocus on real hardware is the Python API (focusmon.autofocus: a Stage and a "
        "Camera); this command runs it on a simulated microscope (a real micrograph, "
        "defocus, photon noise, a flickering lamp, backlash) and prints one JSON object.",
        "focusmon autofocus --simulate --strategy golden --plot curve.png",
    )  # fmt: skip
    focus.add_argument("--simulate", action="store_true", help="use the simulated microscope")
    focus.add_argument("--strategy", choices=STRATEGIES, default="model")
    focus.add_argument("--z-min", type=float, default=-50.0, metavar="UM")
    focus.add_argument("--z-max", type=float, default=50.0, metavar="UM")
    focus.add_argument("--focus", type=float, metavar="UM",
                       help="the true focal plane (default: random in the range)")  # fmt: skip
    focus.add_argument("--photons", type=flag_type(Number(above=True)), default=2000.0,
                       help="photo-electrons at white (light level; default 2000)")  # fmt: skip
    focus.add_argument("--flicker", type=float, default=0.1, help="lamp flicker (default 0.1)")
    focus.add_argument("--backlash", type=float, default=2.0, metavar="UM",
                       help="play in the simulated focus drive (default 2), which the "
                       "search is not told of")  # fmt: skip
    focus.add_argument(
        "--tell-backlash",
        action="store_true",
        help="tell the search the drive's play (default: it approaches each "
        "plane from 5 µm below, as for a stage whose play is unknown)",
    )
    focus.add_argument(
        "--measure-backlash",
        action="store_true",
        help="measure the drive's play (a sweep up and one down through the "
        "focus) instead of searching, and print it with the true play",
    )
    focus.add_argument("--seed", type=int, default=None)
    focus.add_argument("--plot", metavar="PNG", help="plot the sampled curve (needs matplotlib)")
    focus.add_argument(
        "--backend", default="auto", choices=("auto", *kernels.names()), help="kernel backend"
    )

    user = _command(
        commands, "web-user", "add a login for the live page",
        "Add NAME to a --web-users file (made, readable by its owner only, if missing) with "
        "a salted scrypt hash of a password typed twice (or read from stdin), or give NAME "
        "a new password. No password is stored.",
        "focusmon web-user add alice --file /etc/focusmon/web-users",
    )  # fmt: skip
    user.add_argument("action", choices=("add",), help="add (or change) a user")
    user.add_argument("name", metavar="NAME", help="the user's name (letters, digits, ._@-)")
    user.add_argument("--file", required=True, metavar="FILE", help="the --web-users file")
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of stdin")  # fmt: skip

    _command(
        commands, "backends", "list the compute backends and whether they can run",
        "One line per backend: available, or why it cannot run here.", "focusmon backends",
    )  # fmt: skip
    return parser
