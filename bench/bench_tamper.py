"""Tampering: a camera turned a little or a lot, and a frozen picture, caught by
``focusmon watch`` on rendered surveillance clips, against false alarms by day and night.

Each clip (`focusmon.testing.surveillance_clip`, a person crossing throughout, 10 fps):

    0-20 s day (learning) | 20-40 s turned by TURN px | 40-50 s day (turned back)
    50-90 s frozen (the camera resends its last frame) | 90-100 s day
    100-125 s night | 125-140 s day

is encoded as an MJPEG camera sends it (each frame a JPEG: a resent frame is the same
bytes) and watched through focusmon's own pipeline (`Watcher` on the file). The same clip
without the freeze is also encoded with x264 as an H.264 camera sends it (CRF 30, a
keyframe every 2 s), where a still night scene's frames between keyframes come out
"unchanged": only false alarms are counted there. Prints one row per turn size and codec:
moved and frozen caught (within moved_s / frozen_s + 5 s of the event's start), and false
moved or frozen entries in the day and night segments.

Run: ``python bench/bench_tamper.py`` (``--quick``: fewer clips).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from focusmon import testing
from focusmon.config import parse
from focusmon.pipeline import Watcher
from focusmon.sinks import BaseSink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from decisions import CLIP_CONFIGS, image  # noqa: E402
from media import write_video, yuv420_of  # noqa: E402

FPS = 10.0
TIMELINE = (
    (0.0, 20.0, "ok", "day"), (20.0, 40.0, "moved", "turn"), (40.0, 50.0, "ok", "day"),
    (50.0, 90.0, "frozen", "freeze"), (90.0, 100.0, "ok", "day"),
    (100.0, 125.0, "dark", "night"), (125.0, 140.0, "ok", "day"),
)  # fmt: skip
#: The same without the freeze: for a codec that cannot send a frozen picture as one.
NO_FREEZE = tuple((s, e, "ok", "day") if ev == "freeze" else (s, e, t, ev)
                  for s, e, t, ev in TIMELINE)  # fmt: skip
MOVED_S, FROZEN_S, SLACK_S = 10.0, 30.0, 5.0


class Changes(BaseSink):
    def __init__(self) -> None:
        self.changes = []

    def on_change(self, change) -> None:
        self.changes.append(change)


def watch(path: Path) -> list:
    alerts = {"moved_s": MOVED_S, "frozen_s": FROZEN_S}
    config = parse({"metrics": False, "streams": [{"name": "cam", "source": str(path)}],
                    "defaults": {"alerts": alerts}})  # fmt: skip
    sink = Changes()
    watcher = Watcher(config, [sink])
    watcher.start()
    watcher.wait()
    watcher.close()
    return sink.changes


def encode(frames, path: Path, codec: str) -> Path:
    if codec == "mjpeg":
        return write_video(path, [yuv420_of(f, limited=False) for f in frames],
                           pix_fmt="yuvj420p", rate=int(FPS), codec="mjpeg",
                           options={"q:v": "3"})  # fmt: skip
    return write_video(path, [yuv420_of(f) for f in frames], pix_fmt="yuv420p",
                       rate=int(FPS), codec="libx264",
                       options={"crf": "30", "g": str(int(2 * FPS))})  # fmt: skip


def score(changes, timeline) -> dict[str, object]:
    """Caught events (with their delays) and false entries into moved or frozen."""
    out: dict[str, object] = {"false": 0}
    for start, end, truth, event in timeline:
        entries = [c for c in changes if start <= c.time < end]
        if event in ("turn", "freeze"):
            dwell = MOVED_S if event == "turn" else FROZEN_S
            hit = next((c for c in entries if str(c.state) == truth), None)
            ok = hit is not None and hit.time - start <= dwell + SLACK_S
            out[event] = (ok, None if hit is None else hit.time - start)
        else:
            out["false"] += sum(str(c.state) in ("moved", "frozen") for c in entries)
    return out


def caught(results: list[dict], event: str) -> tuple[str, str]:
    """``caught/clips`` and the median delay of an event over the clips."""
    got = [r[event] for r in results if event in r]
    if not got:
        return "-", "-"
    delays = [d for ok, d in got if ok]
    rate = f"{sum(ok for ok, _ in got)}/{len(got)}"
    return rate, (f"{np.median(delays):.1f} s" if delays else "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, three scenes")
    args = parser.parse_args()
    seeds = (1,) if args.quick else (1, 2)
    configs = CLIP_CONFIGS[:3] if args.quick else CLIP_CONFIGS
    rows: dict[tuple[int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="focusmon-tamper-") as workdir:
        for turn in (24, 120):  # about 7 degrees, and a third of the view
            for seed in seeds:
                for k, config in enumerate(configs):
                    for codec, timeline in (("mjpeg", TIMELINE), ("h264", NO_FREEZE)):
                        rng = np.random.default_rng(np.random.SeedSequence([seed, k, turn]))
                        clip = testing.surveillance_clip(
                            image(config.scene), timeline=timeline, fps=FPS, turn_px=turn,
                            day_light=config.day_light, night_factor=config.night_factor,
                            defocus_radius=config.defocus_radius, rng=rng,
                        )  # fmt: skip
                        suffix = ".mkv" if codec == "mjpeg" else ".mp4"
                        path = encode(clip.frames, Path(workdir) / f"clip{suffix}", codec)
                        rows.setdefault((turn, codec), []).append(score(watch(path), timeline))
                        print(f"turn {turn} px, {codec}, {config.scene} seed {seed}: "
                              f"{rows[turn, codec][-1]}", file=sys.stderr)  # fmt: skip
    print("| clips | codec | turned | moved caught | median delay | frozen caught | "
          "median delay | false moved/frozen (day, night) |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for (turn, codec), results in rows.items():
        moved, moved_delay = caught(results, "turn")
        frozen, frozen_delay = caught(results, "freeze")
        false = sum(r["false"] for r in results)
        print(f"| {len(results)} | {codec} | {turn} px | {moved} | {moved_delay} | {frozen} "
              f"| {frozen_delay} | {false} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
