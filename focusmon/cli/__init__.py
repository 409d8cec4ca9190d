"""The ``focusmon`` command: argv in, exit code out.

argv becomes a `~focusmon.config.WatchConfig` (`focusmon.config.from_args`) and, for
``watch``, the sinks it asks for; the pipeline does the rest. Exit codes: 0 done, 1 a
failure while running, 2 bad usage or an input that cannot be opened. Errors are one line,
``focusmon: error: ...``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import logging
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

import numpy as np

from .. import kernels
from .._errors import ConfigError, FocusmonError, SourceError
from .._text import printable
from ..autofocus import BacklashResult, plot_curve, run_simulated_autofocus
from ..config import ServiceSettings, WatchConfig, from_args, load, parse_address, to_toml
from ..kernels import Backend
from ..measures import FocusRecord, resolve_backend
from ..pipeline import Watcher, score_source
from ..scheduler import PeakTracker, find_peak, fit_field, sweep_bframes, sweep_quantiser
from ..sinks import EventFrameSaver, EventWriter, FrameSaver, MetricsEndpoint, Sink, StateLog
from ..sinks._auth import add_user, check_name, read_users
from ..sinks.discovery import DiscoveryEndpoint
from ..sinks.metrics import load_tls
from ..sinks.mqtt import MqttSink, parse_url
from ..sinks.webhook import WebhookSink
from ..source import Scrubber, Source, StackLayout, open_source
from ._output import report_losses, setup_logging
from ._parser import UsageError, build_parser
from ._progress import Progress

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _StartError(FocusmonError):
    """An input that cannot be opened: reported like bad usage (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Nothing it writes shows a source's credentials: every URL of the command line, and
    every source of a config file once read, is cleaned from log lines, error lines and
    tracebacks alike (`focusmon.source.Scrubber`).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    scrub = Scrubber(word for word in words if "://" in word)
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except UsageError as exc:  # its words may be a URL no option took
        exc.parser.print_usage(sys.stderr)
        print(scrub(f"focusmon: error: {printable(str(exc))}"), file=sys.stderr)
        return EXIT_USAGE
    args.scrub = scrub
    setup_logging(debug=args.debug, service=args.command in ("watch", "fleet"), scrub=scrub)
    command = {
        "score": _score, "peak": _peak, "watch": _watch, "check-config": _check_config,
        "autofocus": _autofocus, "backends": _backends, "fleet": _fleet,
        "web-user": _web_user,
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
            print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        print(scrub(f"focusmon: error: {printable(str(exc))}"), file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, (ConfigError, _StartError)) else EXIT_FAILURE


def _config(args: argparse.Namespace) -> WatchConfig:
    """The command line's configuration, its sources' secrets known to the scrubber."""
    config = from_args(args)
    _know_secrets(args, config)
    return config


def _know_secrets(args: argparse.Namespace, config: WatchConfig) -> None:
    """Tell the scrubber every source's secrets and every value from the environment."""
    for spec in config.streams:
        args.scrub.add(spec.source, spec.options.show_query_keys)
    for secret in config.secrets:
        args.scrub.add_secret(secret)
    for url in (*config.service.webhook, config.service.mqtt or ""):
        args.scrub.add(url)
    if config.service.webhook_secret:
        args.scrub.add_secret(config.service.webhook_secret)


# -- score and peak -----------------------------------------------------------------------------


def _open(
    args: argparse.Namespace, *, quantiser: bool = False
) -> tuple[WatchConfig, Backend, Source]:
    """The configuration, the backend and the opened source of ``score`` and ``peak`` (with
    ``quantiser``, asking the decoder for each frame's quantiser)."""
    config = _config(args)
    spec, service = config.streams[0], config.service
    backend = resolve_backend(service.backend, **service.backend_options)
    options = dataclasses.replace(spec.options, quantiser=True) if quantiser else spec.options
    try:
        return config, backend, open_source(spec.source, options)
    except SourceError as exc:
        backend.close()
        raise _StartError(str(exc)) from None  # PyAV's error may name the URL's credentials
    except BaseException:
        backend.close()
        raise


def _scored(
    source: Source, backend: Backend, config: WatchConfig, **kwargs: object
) -> Iterator[FocusRecord]:
    """`score_source`, with a frame the kernels refuse (smaller than 3x3: a 1x1 image) as
    one error line rather than a traceback."""
    try:
        yield from score_source(source, backend, roi=config.streams[0].roi, **kwargs)
    except FocusmonError:
        raise
    except ValueError as exc:
        raise FocusmonError(f"{source.name}: cannot score its frames: {exc}") from exc


def _score(args: argparse.Namespace) -> int:
    config, backend, source = _open(args)
    every = config.streams[0].options.every
    total = -(-source.total // every) if source.total else None
    progress = Progress(sys.stderr, "score", args.frames or total)
    out = sys.stdout
    try:
        with source, backend:
            scored = _scored(source, backend, config, max_frames=args.frames, tiles=args.tiles)
            for record in scored:
                out.write(json.dumps(record.as_dict()) + "\n")
                if source.live:  # each line as it comes, even into a pipe
                    out.flush()
                progress.advance()
    finally:
        progress.close()
        report_losses(source)
    out.flush()
    return EXIT_OK


def _peak(args: argparse.Namespace) -> int:
    if args.z_step is not None and not args.tiles:
        raise ConfigError("--z-step is the focus step of --tiles' field: give --tiles too")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 (checked before the work, not after)
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'focusmon[plot]'") from None
    # The quantisers: a heavily compressed sweep's peak is found otherwise (`find_peak`).
    config, backend, source = _open(args, quantiser=True)
    measure = args.peak_measure
    tracker = PeakTracker(measure=measure) if source.live else None
    records = []
    progress = Progress(sys.stderr, "peak", source.total)
    try:
        with source, backend:
            for record in _scored(source, backend, config, tiles=args.tiles):
                records.append(record)
                progress.advance()
                told = (record.qp, record.pict_type)
                if tracker is not None and tracker.push(record.scores, *told) is not None:
                    break  # a live sweep: the curve has passed its peak
    finally:
        progress.close()
        report_losses(source)
    if not records:
        raise FocusmonError(f"{source.name}: no frame to find a peak in")
    layout = source.layout
    if layout is None and args.channel is not None:
        raise ConfigError(f"--channel: {source.name} is not a stack whose ImageJ or OME "
                          "metadata names its channels")  # fmt: skip
    channels: list[dict] = []
    if layout is not None:  # a z-stack, maybe of several channels: each its own curve
        records, channels = _channels(records, layout, measure, args.channel)
    quantiser = sweep_quantiser([r.qp for r in records])
    pict_types = [r.pict_type for r in records]
    bframes = sweep_bframes(pict_types)
    peak = find_peak(
        [r.scores for r in records], measure=measure, quantiser=quantiser, pict_types=pict_types
    )
    indices = [r.index for r in records]
    result = {
        "best_index": indices[peak.best_index],
        # From a position among the analysed frames to decode-order indices (with --every).
        "peak_position": float(np.interp(peak.position, range(len(indices)), indices)),
        # One standard deviation, in decode-order frames (`Peak.uncertainty`).
        "peak_uncertainty": peak.uncertainty * _spacing(indices),
        "measure": peak.measure,
        "scores": peak.values,
    }
    if quantiser is not None:  # the decoder told how coarsely (and how) it coded the frames
        result.update({"quantiser": quantiser, "compressed": peak.compressed})
        if bframes is not None:
            result["bframes"] = bframes
    if channels:
        chosen = next(c for c in channels if c["chosen"])
        result.update({k: chosen[k] for k in ("channel", "peak_z_index", "peak_z_um")})
        result["z_step_um"] = layout.z_step_um
        result["channels"] = [{k: v for k, v in c.items() if k != "chosen"} for c in channels]
    if args.tiles:
        if channels:  # the field along z planes (of the chosen channel), in µm if known
            planes = [layout.coords(r.index)["Z"] for r in records]
            z_step = args.z_step if args.z_step is not None else layout.z_step_um
            result["field"] = _field(records, planes, peak.measure, z_step)
        else:
            result["field"] = _field(records, indices, peak.measure, args.z_step)
    print(json.dumps(result))
    if args.plot:
        _plot_peak(result, args.plot, source.name)
    return EXIT_OK


def _plot_peak(result: dict, path: str, name: str) -> None:
    """The curve (each channel's), its fitted peak and the chosen plane, as an image."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    step = result.get("z_step_um")
    unit = "z (µm)" if step else ("plane" if "channels" in result else "frame (decode order)")
    if "channels" in result:
        curves = [(f"channel {c['channel']}", c["scores"], c["peak_z_index"])
                  for c in result["channels"]]  # fmt: skip
        ax.set_title(f"{name}: each channel's focus ({result['measure']})")
    else:
        curves = [("curve", result["scores"], result["peak_position"])]
        ax.set_title(f"{name}: focus curve ({result['measure']})")
    for k, (label, scores, peak) in enumerate(curves):
        scale = step or 1.0
        ax.plot(np.arange(len(scores)) * scale, scores, "o-", ms=3, color=f"C{k}", label=label)
        ax.axvline(peak * scale, color=f"C{k}", ls="--", label=f"{label}: peak {peak * scale:.2f}")
    ax.set_xlabel(unit)
    ax.set_ylabel("normalised sharpness")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _spacing(indices: Sequence[int]) -> float:
    """The mean step, in decode-order frames, between the analysed frames (1 for one)."""
    return (indices[-1] - indices[0]) / (len(indices) - 1) if len(indices) > 1 else 1.0


def _channels(
    records: list, layout: StackLayout, measure: str, channel: int | None
) -> tuple[list, list[dict]]:
    """A stack's records split by channel, each in z order: the chosen channel's (``channel``,
    or the first) for the top-level answer, and every channel's peak as a z index and, where
    the metadata gives the spacing, in µm from the first plane."""
    count = layout.size("C")
    if layout.size("T") > 1:
        raise ConfigError(f"the stack has {layout.size('T')} time points: peak takes one "
                          "z-stack (save one time point, or split it)")  # fmt: skip
    if "Z" not in layout.axes:
        raise ConfigError("the stack's metadata has no z axis: nothing to find a focus along")
    if channel is not None and not 0 <= channel < count:
        raise ConfigError(f"--channel must be from 0 to {count - 1} (the stack has {count}), "
                          f"got {channel}")  # fmt: skip
    chosen = 0 if channel is None else channel
    by_channel: dict[int, list] = {c: [] for c in range(count)}
    for record in records:
        where = layout.coords(record.index)
        by_channel[where.get("C", 0)].append((where["Z"], record))
    out = []
    for c, planes in by_channel.items():
        planes.sort(key=lambda zr: zr[0])
        if not planes:
            continue
        zs = [z for z, _ in planes]
        found = find_peak([r.scores for _, r in planes], measure=measure)
        z = float(np.interp(found.position, range(len(zs)), zs))
        step = layout.z_step_um
        out.append({"channel": c, "best_index": planes[found.best_index][1].index,
                    "best_z_index": zs[found.best_index], "peak_z_index": z,
                    "peak_z_um": None if step is None else z * step,
                    "measure": found.measure, "scores": found.values,
                    "chosen": c == chosen})  # fmt: skip
    if not any(c["chosen"] for c in out):
        raise FocusmonError(f"channel {chosen} has no analysed plane")
    return [r for _, r in by_channel[chosen]], out


def _field(records: list, indices: list[int], measure: str, z_step: float | None) -> dict:
    """``focusmon peak --tiles``: each tile's peak and the field's tilt and curvature, in
    decode-order frames (with ``--every N``, N decoded frames an analysed one)."""
    if len({r.tiles.grid + (r.tiles.ys[-1], r.tiles.xs[-1]) for r in records}) > 1:
        raise FocusmonError("the sweep's frames change size: no one grid of tiles fits them")
    fit = fit_field([r.tiles for r in records], measure=measure)
    step = (indices[-1] - indices[0]) / (len(indices) - 1) if len(indices) > 1 else 1.0
    field = fit.as_dict(None if z_step is None else z_step * step)
    field["positions"] = [
        [None if p is None else float(np.interp(p, range(len(indices)), indices)) for p in row]
        for row in fit.positions
    ]
    for key in ("tilt_x_per_100px", "tilt_y_per_100px", "tilt_per_100px", "residual"):
        if field[key] is not None:
            field[key] *= step
    if field["curvature_per_100px2"] is not None:
        field["curvature_per_100px2"] *= step
    if z_step is not None:
        field["z_step"] = z_step
    first = records[0].tiles
    return {"grid": list(first.grid), "ys": list(first.ys), "xs": list(first.xs), **field}


# -- watch --------------------------------------------------------------------------------------


def make_sinks(service: ServiceSettings) -> list[Sink]:
    """The sinks ``service`` asks for, in the order they are told of a change: the log
    line, the events file, the frame saver, the webhooks, MQTT, the metrics endpoint. Each
    is ready (a file open, a port bound), or none is: ConfigError says why."""
    sinks: list[Sink] = [StateLog()]
    try:
        if service.events:
            sinks.append(EventWriter(service.events))
        if service.save_best:
            sinks.append(FrameSaver(service.save_best, keep=service.best_keep))
        if service.save_events:
            sinks.append(EventFrameSaver(service.save_events))
        for url in service.webhook:
            sinks.append(WebhookSink(url, secret=service.webhook_secret))
        if service.mqtt:
            sinks.append(MqttSink(
                service.mqtt, ca_file=service.mqtt_ca_file, discovery=service.mqtt_discovery,
                discovery_prefix=service.mqtt_discovery_prefix,
                remove_stale=service.mqtt_remove_stale,
            ))  # fmt: skip
        address = service.metrics_address
        if address is not None:
            users = None if service.web_users is None else read_users(service.web_users)
            sinks.append(MetricsEndpoint(
                *address, certfile=service.tls_cert, keyfile=service.tls_key,
                page=service.page, users=users, metrics_auth=service.metrics_auth,
                client_ca=service.tls_client_ca,
            ))  # fmt: skip
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _raise_descriptor_limit(wanted: int = 8192) -> None:
    """A service's soft descriptor limit up to ``wanted`` (within the hard limit, which
    systemd sets at 524,288): the usual 1,024 would cap the endpoint's clients at 512."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _watch(args: argparse.Namespace) -> int:
    config = _config(args)
    _raise_descriptor_limit()
    sinks = make_sinks(config.service)
    try:
        watcher = Watcher(config, sinks)
    except BaseException as exc:
        for sink in sinks:
            sink.close()
        if isinstance(exc, SourceError):
            raise _StartError(str(exc)) from None
        raise
    log = logging.getLogger("focusmon")
    for sink in sinks:
        if isinstance(sink, MetricsEndpoint):
            log.info("metrics on %s/metrics", sink.url)
    stop = lambda *_: watcher.stop()  # noqa: E731
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.start()
        while not watcher.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watcher.close()
    failed = [s for s in watcher.streams if s.error]
    return EXIT_FAILURE if failed and len(failed) == len(watcher.streams) else EXIT_OK


def _fleet(args: argparse.Namespace) -> int:
    try:
        from ..fleet import _driver
    except ImportError as exc:
        why = f"focusmon fleet needs Ray: pip install 'focusmon[fleet]' ({exc})"
        raise ConfigError(why) from None
    if args.action == "status":
        _print_status(_driver.Fleet.attach(args.address).status())
        return EXIT_OK
    if not args.config:
        raise ConfigError("focusmon fleet needs --config FILE (the streams, as for watch)")
    config = _config(args)
    sd_host, sd_port = parse_address(args.sd_addr)
    fleet = _driver.Fleet.start(config, make_sinks, address=args.address)
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    endpoint = None
    try:
        endpoint = DiscoveryEndpoint(sd_host, sd_port, fleet.targets, fleet.summary)
        endpoint.start()
        log = logging.getLogger("focusmon")
        log.info("fleet of %d streams; Prometheus http_sd at %s/targets",
                 len(config.streams), endpoint.url)  # fmt: skip
        stopping.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if endpoint is not None:
            endpoint.close()
        fleet.stop()
    return EXIT_OK


def _print_status(rows: list[dict]) -> None:
    print(f"{'shard':<12} {'state':<9} {'host':<16} {'target':<22} stream: state")
    for row in rows:
        streams = ", ".join(f"{s['stream']}: {s['state']}" for s in row["streams"])
        print(f"{row['shard']:<12} {row['state']:<9} {row['host'] or '-':<16} "
              f"{row['target'] or '-':<22} {printable(streams)}")  # fmt: skip


def _check_config(args: argparse.Namespace) -> int:
    config = load(args.file)
    _know_secrets(args, config)
    service = config.service
    if service.tls_cert is not None and service.tls_key is not None:
        load_tls(service.tls_cert, service.tls_key)  # read only: nothing is served
    if service.mqtt:
        parse_url(service.mqtt)  # its prefix and port: nothing is connected
    count = len(config.streams)
    print(f"# {args.file}: valid, {count} stream{'s' * (count != 1)}; credentials shown as ***")
    print(to_toml(config), end="")
    return EXIT_OK


# -- the rest -----------------------------------------------------------------------------------


def _autofocus(args: argparse.Namespace) -> int:
    if not args.simulate:
        raise ConfigError(
            "on hardware, call focusmon.autofocus.autofocus(stage, camera, ...) from Python; "
            "this command needs --simulate"
        )
    if not args.z_min < args.z_max:
        raise ConfigError(f"--z-min must be below --z-max, got {args.z_min} and {args.z_max}")
    if args.plot and args.measure_backlash:
        raise ConfigError("--plot draws a search; --measure-backlash prints its figures only")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 (checked before the search, not after)
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'focusmon[plot]'") from None
    result, truth = run_simulated_autofocus(
        strategy=args.strategy, z_min=args.z_min, z_max=args.z_max, focus_um=args.focus,
        photons=args.photons, flicker=args.flicker, backlash_um=args.backlash,
        seed=args.seed, backend=args.backend, tell_backlash=args.tell_backlash,
        measure_play=args.measure_backlash,
    )  # fmt: skip
    print(json.dumps({**result.as_dict(), **truth}))
    if isinstance(result, BacklashResult):
        return EXIT_OK
    if args.plot:
        plot_curve(result, truth, args.plot)
    return EXIT_OK if result.ok else EXIT_FAILURE


def _web_user(args: argparse.Namespace) -> int:
    """``focusmon web-user add NAME --file FILE``: add a login for the live page (or give
    one a new password), read twice from the terminal or once from stdin."""
    check_name(args.name)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ: nothing written")
    new = add_user(args.file, args.name, password)
    print(f"{'added' if new else 'changed the password of'} {args.name} in {args.file}",
          file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _backends(args: argparse.Namespace) -> int:
    for name, why in kernels.available().items():
        print(f"{name:<11} {'available' if why is None else 'unavailable: ' + why}")
    return EXIT_OK
