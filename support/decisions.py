"""Decision quality: how often focusmon's decisions are right, next to the plain recipes.

Two parts, both on real images (scikit-image's bundled photographs and micrographs) passed
through `focusmon.testing`'s physical camera model, encoded to video files and decoded and
scored through focusmon itself (`open_source` + `measure`):

* **Focus sweeps** (microscope z-stacks, lens sweeps) under clean, off-centre, lamp-drift,
  flicker, low-light, fine-step and combined conditions. Micrographs are stored as
  lossless 16-bit FFV1 (a scientific camera), photographs as 8-bit H.264 (crf 18, a video
  camera). A sweep is a hit when the chosen frame is within +-1 frame of the truth. Methods:
  the plain recipe (argmax of raw ``laplacian_var``), the argmax of each other raw measure,
  and `focusmon.scheduler.find_peak`; and streaming, `PeakTracker` fed frame by frame:
  how often it would have stopped the sweep early, and how often on a wrong peak.
* **Surveillance clips** (320x240, 10 fps, 80 s, H.264) with a knocked lens, a covered lens
  and a night with the camera's noise reduction on. Methods: the fixed-threshold recipe
  (``laplacian_var < T`` is blurred) at T = 100 (the usual blog value) and at a T tuned on
  the first clip, and `focusmon.scheduler.AlertTracker` with default settings.

Prints Markdown tables and a summary against the targets: the peak within +-1 frame in
>= 95 % of the sweeps of every condition; every defocus and cover event alerted within its
duration; no ``blurred`` during day or night.

``bench/bench_decisions.py`` runs it in full and prints the tables;
``tests/scheduler/test_decisions.py`` runs a small version of `evaluate_sweeps` and
`evaluate_clips` and asserts on them.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

import focusmon
from focusmon import kernels, testing
from focusmon.kernels import FocusMap
from focusmon.scheduler import (
    AlertSettings,
    AlertTracker,
    PeakTracker,
    find_peak,
    sweep_quantiser,
)
from focusmon.source import SourceOptions, open_source

#: Micrographs (and a telescope field): lossless 16-bit, like a scientific camera.
MICROGRAPHS = ("immunohistochemistry", "cell", "hubble_deep_field")
#: Photographs: 8-bit H.264, like a video camera or a camera's lens sweep.
PHOTOGRAPHS = (
    "camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "brick",
    "gravel", "grass", "text", "page", "clock", "moon", "retina",
)  # fmt: skip
RAW_MEASURES = ("laplacian_var", "tenengrad", "sobel_mean", "haar_energy")
SIZE = (240, 320)  # (height, width): even, for 4:2:0 H.264
BACKEND = "numba-cpu"
TOLERANCE = 1  # frames: a sweep is a hit when the chosen frame is this close to the truth
TARGET_HIT_RATE = 0.95


# -- images ---------------------------------------------------------------------------------

_images: dict[str, np.ndarray] = {}


def image(name: str) -> np.ndarray:
    """A bundled scikit-image picture as gray float32 in [0, 1] (cached)."""
    if name not in _images:
        data = getattr(skimage.data, name)()
        if data.ndim == 3:
            data = cv2.cvtColor(np.ascontiguousarray(data[..., :3]), cv2.COLOR_RGB2GRAY)
        _images[name] = data.astype(np.float32) / 255.0
    return _images[name]


def random_view(
    picture: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = SIZE
) -> np.ndarray:
    """A random crop of ``picture`` at a random scale (0.6 to 1 of the largest that still
    covers ``size``): sweeps see different content and different detail scales."""
    height, width = size
    h, w = picture.shape
    scale = max(height / h, width / w, float(rng.uniform(0.6, 1.0)))
    nh, nw = max(height, math.ceil(h * scale)), max(width, math.ceil(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = np.clip(cv2.resize(picture, (nw, nh), interpolation=interp), 0.0, 1.0)
    y = int(rng.integers(0, nh - height + 1))
    x = int(rng.integers(0, nw - width + 1))
    return np.ascontiguousarray(resized[y : y + height, x : x + width])


# -- encoding and scoring -------------------------------------------------------------------


def write_video(
    path: str,
    frames: Sequence[np.ndarray],
    *,
    lossless: bool,
    fps: float,
    crf: int = 18,
    tune: str | None = None,
) -> None:
    """Encode gray frames: FFV1 gray/gray16le (lossless) or H.264 at ``crf`` in
    limited-range yuv420p, tagged as such, as a camera sends it (x264's ``tune``: e.g.
    ``zerolatency``, a stream without B-frames or look-ahead, as an IP camera's).

    x264 runs in a process of its own (``x264_child.py``): in this one, after other work,
    it encoded the same frames differently from run to run."""
    if not lossless:
        if any(f.dtype != np.uint8 for f in frames):
            raise ValueError("H.264 here takes 8-bit frames")
        stack = f"{path}.frames.npy"
        np.save(stack, np.stack(frames))
        try:
            command = [sys.executable, str(X264_CHILD), stack, path, str(round(fps)), str(crf)]
            done = subprocess.run([*command, *([tune] if tune else [])], capture_output=True,
                                  text=True, timeout=300)  # fmt: skip
        finally:
            os.remove(stack)
        if done.returncode != 0:
            raise RuntimeError(f"x264 failed on {path}: {done.stderr.strip()[-500:]}")
        return
    fmt = "gray16le" if frames[0].dtype == np.uint16 else "gray"
    height, width = frames[0].shape
    with av.open(path, "w") as out:
        stream = out.add_stream("ffv1", rate=round(fps))
        stream.pix_fmt = fmt
        stream.height, stream.width = height, width
        for array in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format=fmt)))
        out.mux(stream.encode())


#: The H.264 encoder's own process (see `write_video`).
X264_CHILD = Path(__file__).with_name("x264_child.py")


def decode_scores(
    path: str,
    tiles: tuple[int, int] | None = None,
    quantisers: list[float] | None = None,
    pict_types: list[str | None] | None = None,
) -> tuple[list[focusmon.FocusScores], list[float], list[FocusMap] | None]:
    """Every frame of ``path`` decoded by focusmon and scored: (scores, stream times, and
    with ``tiles`` each frame's focus map over that grid, else None). The frames'
    quantisers, where the codec tells them, are appended to ``quantisers``, and with
    them their picture types to ``pict_types``."""
    scores, times, maps = [], [], []
    options = SourceOptions(decoder_threads=1, quantiser=quantisers is not None)
    with (
        open_source(path, options) as source,
        kernels.get(BACKEND) as backend,
    ):
        for frame in source:
            units = {"scale": frame.scale, "offset": frame.offset}
            if tiles is None:
                scores.append(backend.scores(frame.luma, **units))
            else:
                maps.append(backend.focus_map(frame.luma, tiles, **units))
                scores.append(maps[-1].frame)
            times.append(float(frame.pts or 0.0))
            if quantisers is not None and frame.qp is not None:
                quantisers.append(frame.qp)
                if pict_types is not None:
                    pict_types.append(frame.pict_type)
    return scores, times, (maps if tiles is not None else None)


def through_video(
    frames: Sequence[np.ndarray],
    *,
    lossless: bool,
    fps: float,
    workdir: str,
    tiles: tuple[int, int] | None = None,
    crf: int = 18,
    tune: str | None = None,
    quantisers: list[float] | None = None,
    pict_types: list[str | None] | None = None,
) -> tuple[list[focusmon.FocusScores], list[float], list[FocusMap] | None]:
    """Encode ``frames`` to a file in ``workdir`` (H.264 at ``crf``, x264's ``tune``, unless
    ``lossless``), decode and score it (with ``tiles``, also each frame's focus map; the
    quantisers into ``quantisers`` and the picture types into ``pict_types``), delete it."""
    path = os.path.join(workdir, "sweep.mkv" if lossless else "clip.mp4")
    try:
        write_video(path, frames, lossless=lossless, fps=fps, crf=crf, tune=tune)
        scores, times, maps = decode_scores(path, tiles, quantisers, pict_types)
    finally:
        if os.path.exists(path):
            os.remove(path)
    if len(scores) != len(frames):
        raise RuntimeError(f"decoded {len(scores)} frames of {len(frames)}")
    return scores, times, maps


# -- focus sweeps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """How one kind of sweep is rendered (see `focusmon.testing.focus_sweep`).

    ``placement`` is ``centre`` (focus in the middle 40 % of the sweep) or ``edge`` (within
    ``edge_frames`` frames of either end). ``crf``: every sweep through H.264 at that
    quality, micrographs too (default: micrographs lossless, photographs at crf 18).
    ``photons_at_mid_grey``: each sweep's light drawn from this range, in photo-electrons
    a mid-grey pixel collects (instead of ``photons_at_white``). ``scene``: ``pictures``
    (the bundled photographs and micrographs), ``beads`` (a sparse field of small bright
    beads on a dark background, as fluorescence) or ``highlights`` (the pictures with
    small spots far brighter than white, which saturate).
    """

    name: str
    n_frames: int = 31
    step_px: float = 1.0
    placement: str = "centre"
    edge_frames: tuple[float, float] = (2.0, 4.0)
    drift: float = 0.0
    flicker: float = 0.0
    photons_at_white: float = 5000.0
    photons_at_mid_grey: tuple[float, float] | None = None
    read_noise_e: float = 2.0
    crf: int | None = None
    tune: str | None = None  # x264's tune with crf: "zerolatency" has no B-frames
    shake_px: float = 0.0
    scene: str = "pictures"
    description: str = ""
    hard: bool = False  # one of issue 22's hard conditions (reported in their own table)


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("clean", description="1 px of blur radius per frame, 5000 e- at white"),
        Condition(
            "off_centre", placement="edge", description="as clean, focus 2-4 frames from an end"
        ),
        Condition(
            "lamp_drift",
            step_px=0.5,
            drift=0.5,
            description="0.5 px/frame, light ramps by 50 % over the sweep (either way)",
        ),
        Condition(
            "flicker",
            step_px=0.5,
            flicker=0.25,
            description="0.5 px/frame, each frame's light x U(0.75, 1.25)",
        ),
        Condition("low_light", photons_at_white=40.0, description="as clean, 40 e- at white"),
        Condition("fine_step", n_frames=51, step_px=0.2, description="0.2 px/frame, 51 frames"),
        Condition(
            "combined",
            n_frames=41,
            step_px=0.4,
            placement="edge",
            drift=0.3,
            flicker=0.2,
            photons_at_white=150.0,
            description="0.4 px/frame, 41 frames, off-centre, drift 30 %, flicker 20 %, "
            "150 e- at white",
        ),
        # The hard conditions: a lens sweep over a compressed stream, a dim fluorescence
        # sweep, a shaking camera, sparse and saturating fields, the focus at an end.
        *(
            Condition(
                f"h264_crf{crf}",
                crf=crf,
                hard=True,
                description=f"as clean, every sweep through H.264 at crf {crf}",
            )
            for crf in (30, 35, 40)
        ),  # fmt: skip
        Condition(
            "h264_crf35_ip",
            crf=35,
            tune="zerolatency",
            hard=True,
            description="as h264_crf35, through x264's low-latency stream (no B-frames, "
            "no look-ahead), as an IP camera sends",
        ),
        Condition(
            "photon_starved",
            photons_at_mid_grey=(10.0, 20.0),
            hard=True,
            description="as clean, 10-20 e- at mid grey",
        ),
        Condition(
            "shaking",
            shake_px=0.5,
            hard=True,
            description="as clean, the camera shaking by up to ±0.5 px each way, frame to frame",
        ),
        Condition(
            "beads",
            scene="beads",
            photons_at_white=300.0,
            hard=True,
            description="5-20 small bright beads on a dark background, 300 e- at white, "
            "16-bit lossless",
        ),
        Condition(
            "saturating",
            scene="highlights",
            hard=True,
            description="the pictures with 4-12 small spots 3-20x brighter than white",
        ),
        Condition(
            "at_an_end",
            placement="edge",
            edge_frames=(1.0, 2.0),
            hard=True,
            description="as clean, focus 1-2 frames from an end",
        ),
    )
}
#: The conditions of the original set (the hard ones are reported apart).
EASY = tuple(name for name, c in CONDITIONS.items() if not c.hard)
HARD = tuple(name for name, c in CONDITIONS.items() if c.hard)
#: A scene pixel of mid grey: half of white, which `focus_sweep` exposes at 0.75 of full scale.
MID_GREY = 0.5 * 0.75


@dataclass(frozen=True)
class SweepResult:
    """One sweep's truth and every method's choice."""

    condition: str
    image: str
    lossless: bool
    n_frames: int
    truth: int
    chosen: dict[str, int]  # method -> chosen index
    streamed: int | None = None  # PeakTracker's peak if it stopped the sweep early

    def error(self, method: str) -> int:
        return abs(self.chosen[method] - self.truth)

    @property
    def stopped_wrong(self) -> bool:
        """Whether streaming stopped the sweep on a peak more than TOLERANCE off."""
        return self.streamed is not None and abs(self.streamed - self.truth) > TOLERANCE


def sweep_image(i: int) -> tuple[str, bool]:
    """The picture of the ``i``-th sweep of a condition and whether it is a micrograph: a
    third micrographs, cycling through all pictures."""
    if i % 3 == 0:
        return MICROGRAPHS[(i // 3) % len(MICROGRAPHS)], True
    return PHOTOGRAPHS[(i - i // 3 - 1) % len(PHOTOGRAPHS)], False


def run_sweep(condition: Condition, i: int, rng: np.random.Generator, workdir: str) -> SweepResult:
    """Render, encode, decode, score and decide the ``i``-th sweep of ``condition``."""
    scored = score_sweep(condition, i, rng, workdir)
    scores = scored.scores
    chosen = {m: int(np.argmax([getattr(s, m) for s in scores])) for m in RAW_MEASURES}
    # As `focusmon peak` does: the decoder tells the frames' quantiser and picture type.
    told = {"quantiser": scored.quantiser, "pict_types": scored.pict_types or None}
    chosen["focusmon"] = find_peak(scores, **told).best_index
    tracker = PeakTracker()  # streaming: would the sweep have stopped, and on what?
    qps = scored.quantisers or [None] * len(scores)
    picts = scored.pict_types or [None] * len(scores)
    pushes = (tracker.push(*frame) for frame in zip(scores, qps, picts, strict=True))
    stop = next((p for p in pushes if p is not None), None)
    streamed = None if stop is None else stop.best_index
    return SweepResult(
        condition.name, scored.image, scored.lossless, len(scores), scored.truth, chosen, streamed
    )


@dataclass(frozen=True)
class ScoredSweep:
    """A sweep rendered, encoded, decoded and scored: what the methods decide from."""

    image: str
    lossless: bool
    truth: int
    scores: list[focusmon.FocusScores]
    quantisers: list[float] = field(default_factory=list)  # per frame, as the decoder told
    pict_types: list[str | None] = field(default_factory=list)  # with the quantisers

    @property
    def quantiser(self) -> float | None:
        """The frames' median quantiser (None: the codec told none, as a lossless one)."""
        return sweep_quantiser(self.quantisers)


def score_sweep(
    condition: Condition, i: int, rng: np.random.Generator, workdir: str
) -> ScoredSweep:
    """Render, encode, decode and score the ``i``-th sweep of ``condition``."""
    name, micro = sweep_image(i)
    if condition.scene == "beads":
        name, micro = "beads", True
        scene = bead_field(rng)
    else:
        scene = random_view(image(name), rng)
        if condition.scene == "highlights":
            scene = with_highlights(scene, rng)
    lossless = micro and condition.crf is None
    photons = condition.photons_at_white
    if condition.photons_at_mid_grey is not None:
        photons = float(rng.uniform(*condition.photons_at_mid_grey)) / MID_GREY
    n = condition.n_frames
    if condition.placement == "edge":
        offset = float(rng.uniform(*condition.edge_frames))
        focus = offset if rng.random() < 0.5 else n - 1 - offset
    else:
        focus = float(rng.uniform(0.3, 0.7) * (n - 1))
    drift = condition.drift * (1 if rng.random() < 0.5 else -1)
    sweep = testing.focus_sweep(
        scene,
        n_frames=n,
        focus=focus,
        step_px=condition.step_px,
        drift=drift,
        flicker=condition.flicker,
        photons_at_white=photons,
        read_noise_e=condition.read_noise_e,
        bits=16 if lossless else 8,
        shake_px=condition.shake_px,
        rng=rng,
    )
    quantisers: list[float] = []
    pict_types: list[str | None] = []
    scores, _, _ = through_video(sweep.frames, lossless=lossless, fps=10.0, workdir=workdir,
                                 crf=condition.crf or 18, tune=condition.tune,
                                 quantisers=quantisers, pict_types=pict_types)  # fmt: skip
    return ScoredSweep(name, lossless, sweep.focus_index, scores, quantisers, pict_types)


def bead_field(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A sparse field of small bright beads on a dark background (fluorescent beads): 5
    to 20 Gaussian spots of 0.6-1.2 px sigma and 0.3-1.0 peak on a 0.02 background."""
    height, width = size
    field_ = np.full(size, 0.02, np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(5, 21))):
        y, x = rng.uniform(4, height - 4), rng.uniform(4, width - 4)
        sigma, peak = rng.uniform(0.6, 1.2), rng.uniform(0.3, 1.0)
        y0, y1, x0, x1 = int(y) - 6, int(y) + 7, int(x) - 6, int(x) + 7
        window = (slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width)))
        r2 = (yy[window] - y) ** 2 + (xx[window] - x) ** 2
        field_[window] += peak * np.exp(-r2 / (2 * sigma * sigma))
    return np.clip(field_, 0.0, 1.0)


def with_highlights(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``scene`` with 4 to 12 small specular spots (1-2 px sigma) 3 to 20 times brighter
    than white: the sensor clips them near focus, and their blur disks keep sharp,
    clipped edges."""
    out = scene.copy()
    height, width = scene.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(4, 13))):
        y, x = rng.uniform(10, height - 10), rng.uniform(10, width - 10)
        sigma, peak = rng.uniform(1.0, 2.0), rng.uniform(3.0, 20.0)
        out += peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma * sigma))
    return out


def evaluate_sweeps(
    conditions: Sequence[str | Condition] = tuple(CONDITIONS),
    n: int = 40,
    seed: int = 0,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[SweepResult]:
    """Run ``n`` sweeps of each condition; deterministic for a ``seed``.

    Parameters
    ----------
    conditions : sequence of str or Condition
        Names from `CONDITIONS`, or conditions.
    n : int
        Sweeps per condition.
    seed : int
        Seed of everything random (content, focus position, noise, flicker).
    progress : callable, optional
        Called with a short status line after each sweep.

    Returns
    -------
    list of SweepResult
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="focusmon-bench-") as workdir:
        for cond in conditions:
            condition = CONDITIONS[cond] if isinstance(cond, str) else cond
            # Seeded by the condition's name, not its place in the list: a condition run
            # alone (--conditions) gives the same sweeps as in the full run.
            key = zlib.crc32(condition.name.encode())
            streams = np.random.SeedSequence([seed, key]).spawn(n)
            for i, stream in enumerate(streams):
                results.append(run_sweep(condition, i, np.random.default_rng(stream), workdir))
                if progress:
                    progress(f"sweeps: {condition.name} {i + 1}/{n}")
    return results


@dataclass(frozen=True)
class SweepRow:
    """A condition's summary."""

    condition: str
    sweeps: int
    mean_frames: float
    hit_rate: dict[str, float]  # method -> fraction within +-TOLERANCE
    mean_error: dict[str, float]  # method -> mean |chosen - truth| (frames)
    stopped: float = 0.0  # streaming: fraction of sweeps stopped before their end
    stopped_wrong: int = 0  # ... on a peak more than TOLERANCE off

    @property
    def best_raw(self) -> str:
        """The raw measure (other than the plain recipe's) with the most hits."""
        return self._most_hits([m for m in RAW_MEASURES if m != "laplacian_var"])

    @property
    def best_of_all_raw(self) -> str:
        """The raw measure, the plain recipe's included, with the most hits."""
        return self._most_hits(RAW_MEASURES)

    def _most_hits(self, methods: Sequence[str]) -> str:
        """Of ``methods``, the one with the most hits (then the least mean error)."""
        return max(methods, key=lambda m: (self.hit_rate[m], -self.mean_error[m]))


def summarise_sweeps(results: Sequence[SweepResult]) -> list[SweepRow]:
    """One row per condition, in the order the conditions first appear."""
    rows = []
    for name in dict.fromkeys(r.condition for r in results):
        group = [r for r in results if r.condition == name]
        methods = group[0].chosen
        rows.append(
            SweepRow(
                name,
                len(group),
                float(np.mean([r.n_frames for r in group])),
                {m: float(np.mean([r.error(m) <= TOLERANCE for r in group])) for m in methods},
                {m: float(np.mean([r.error(m) for r in group])) for m in methods},
                float(np.mean([r.streamed is not None for r in group])),
                sum(r.stopped_wrong for r in group),
            )
        )
    return rows


def sweep_tables(rows: Sequence[SweepRow]) -> str:
    """The sweep results as two Markdown tables: the methods, then every raw measure."""
    lines = [
        "| condition | sweeps | frames | plain: argmax laplacian_var | best other raw measure "
        "| focusmon find_peak | streaming: stopped early (on a wrong peak) |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        best = r.best_raw
        lines.append(
            f"| {r.condition} | {r.sweeps} | {r.mean_frames:.0f} "
            f"| {_hit(r, 'laplacian_var')} | {best}: {_hit(r, best)} | {_hit(r, 'focusmon')} "
            f"| {100 * r.stopped:.0f} % ({r.stopped_wrong}) |"
        )
    lines += [
        "",
        "Hit rate (within ±1 frame) of the argmax of each raw measure:",
        "",
        "| condition | " + " | ".join(RAW_MEASURES) + " |",
        "|---|" + "---:|" * len(RAW_MEASURES),
    ]
    for r in rows:
        cells = " | ".join(f"{100 * r.hit_rate[m]:.0f} %" for m in RAW_MEASURES)
        lines.append(f"| {r.condition} | {cells} |")
    return "\n".join(lines)


def _hit(row: SweepRow, method: str) -> str:
    return f"{100 * row.hit_rate[method]:.0f} % (err {row.mean_error[method]:.2f})"


# -- surveillance clips ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClipConfig:
    """One surveillance scene: the photo, how bright the day is, the night, the blur."""

    scene: str
    day_light: float
    night_factor: float
    defocus_radius: float
    label: str


CLIP_CONFIGS = (
    ClipConfig("astronaut", 1.0, 20.0, 3.0, "bright"),
    ClipConfig("coffee", 0.2, 20.0, 3.0, "dim"),
    ClipConfig("rocket", 0.6, 30.0, 2.5, "bright"),
    ClipConfig("chelsea", 0.3, 15.0, 3.5, "dim"),
    ClipConfig("camera", 0.8, 25.0, 2.5, "bright"),
    ClipConfig("brick", 0.25, 20.0, 3.0, "dim"),
)

#: States other than ok: what a user is told about (the recipe has only `blurred`).
ALARMS = ("blurred", "obstructed", "dark", "no_signal")


@dataclass
class ClipResult:
    """One clip: its truth, scores and each method's state per frame."""

    name: str
    segments: list[testing.Segment]
    times: np.ndarray
    radius: np.ndarray
    laplacian_var: np.ndarray
    states: dict[str, list[str]] = field(default_factory=dict)


#: A shorter clip for tests: the benchmark's events at their full length, less day between.
SHORT_TIMELINE: tuple[tuple[float, float, str, str], ...] = (
    (0.0, 12.0, "ok", "day"),
    (12.0, 20.0, "blurred", "defocus"),
    (20.0, 25.0, "ok", "day"),
    (25.0, 31.0, "obstructed", "cover"),
    (31.0, 36.0, "ok", "day"),
    (36.0, 54.0, "dark", "night"),
    (54.0, 58.0, "ok", "day"),
)


def render_clip(
    k: int,
    seed: int,
    timeline: tuple[tuple[float, float, str, str], ...] = testing.CLIP_TIMELINE,
) -> tuple[str, testing.Clip]:
    """The ``k``-th clip: config ``k`` modulo `CLIP_CONFIGS`, seeded by (seed, k)."""
    config = CLIP_CONFIGS[k % len(CLIP_CONFIGS)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1000 + k]))
    clip = testing.surveillance_clip(
        image(config.scene),
        timeline=timeline,
        day_light=config.day_light,
        night_factor=config.night_factor,
        defocus_radius=config.defocus_radius,
        rng=rng,
    )
    return f"{config.scene} ({config.label}, seed {seed})", clip


def recipe_states(lap: np.ndarray, threshold: float) -> list[str]:
    """The fixed-threshold recipe, frame by frame."""
    return ["blurred" if v < threshold else "ok" for v in lap]


def tracker_states(
    scores: Sequence[focusmon.FocusScores],
    times: Sequence[float],
    settings: AlertSettings | None = None,
    maps: Sequence[FocusMap] | None = None,
) -> list[str]:
    """`AlertTracker`'s state after each frame (judging `partial` too, given the frames'
    focus maps)."""
    tracker = AlertTracker("cam", settings or AlertSettings())
    states = []
    for k, (s, t) in enumerate(zip(scores, times, strict=True)):
        tracker.update(s, t, tiles=None if maps is None else maps[k])
        states.append(tracker.state)
    return states


def tune_threshold(result: ClipResult) -> float:
    """The threshold a user would pick from one recorded day with a blur in it: the
    geometric mean of the sharpest fully blurred frames and the least sharp day frames
    (99th and 1st percentiles of ``laplacian_var``)."""
    day = _in_segments(result, "day")
    held = result.radius >= result.radius.max() - 1e-9
    blurred = held & _in_segments(result, "defocus")
    lo_ok = float(np.percentile(result.laplacian_var[day], 1))
    hi_blur = float(np.percentile(result.laplacian_var[blurred], 99))
    return math.sqrt(lo_ok * hi_blur)


def _in_segments(result: ClipResult, event: str) -> np.ndarray:
    mask = np.zeros(result.times.size, bool)
    for seg in result.segments:
        if seg.event == event:
            mask |= (result.times >= seg.start_s) & (result.times < seg.end_s)
    return mask


def evaluate_clips(
    n: int = 4,
    seed: int = 0,
    *,
    thresholds: Sequence[float] = (100.0,),
    tune: bool = True,
    timeline: tuple[tuple[float, float, str, str], ...] = testing.CLIP_TIMELINE,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[ClipResult], dict[str, float]]:
    """Render ``n`` clips, pass them through H.264 and focusmon, and run every method.

    Parameters
    ----------
    n : int
        Clips (cycling through `CLIP_CONFIGS`: bright and dim scenes alternate).
    seed : int
        Seed of the rendering.
    thresholds : sequence of float
        Fixed thresholds of the recipe on ``laplacian_var``.
    tune : bool
        Also run the recipe at a threshold tuned on the first clip (`tune_threshold`).
    timeline : tuple of (start_s, end_s, truth, event)
        The events (see `focusmon.testing.surveillance_clip`); 80 s by default.
    progress : callable, optional
        Called with a short status line after each clip.

    Returns
    -------
    results : list of ClipResult
        With ``states`` for methods ``T=<value>`` and ``focusmon``.
    thresholds : dict of str to float
        The recipe's methods and their thresholds.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="focusmon-bench-") as workdir:
        for k in range(n):
            name, clip = render_clip(k, seed, timeline)
            scores, times, maps = through_video(
                clip.frames, lossless=False, fps=clip.fps, workdir=workdir,
                tiles=AlertSettings().focus_map,
            )  # fmt: skip
            result = ClipResult(
                name,
                clip.segments,
                np.asarray(times),
                clip.radius,
                np.array([s.laplacian_var for s in scores]),
            )
            result.states["focusmon"] = tracker_states(scores, times, maps=maps)
            results.append(result)
            if progress:
                progress(f"clips: {k + 1}/{n}")
    methods = {f"T={t:g}": float(t) for t in thresholds}
    if tune and results:
        tuned = tune_threshold(results[0])
        methods[f"T={tuned:.0f} (tuned on clip 1)"] = tuned
    for result in results:
        for method, threshold in methods.items():
            result.states[method] = recipe_states(result.laplacian_var, threshold)
    return results, methods


@dataclass(frozen=True)
class EventOutcome:
    """How a method did on one event segment."""

    event: str
    start_s: float
    alerted: bool
    delay_s: float | None  # first alert after the event's start
    state: str | None  # the first alert state raised in the segment


@dataclass(frozen=True)
class ClipScore:
    """A method's scorecard on one clip."""

    clip: str
    method: str
    events: list[EventOutcome]
    false_blurred_day: int  # entries into `blurred` during day-ok segments
    false_blurred_night: int  # entries into `blurred` during night segments
    other_false: int  # entries into `obstructed`, `partial` or `moved` during day or night
    night_dark_or_ok: float  # fraction of night frames reported dark or ok
    night_dark: float  # fraction of night frames reported dark
    day_alarm: float  # fraction of day-ok frames in any state but ok

    @property
    def defocus_ok(self) -> bool:
        return all(e.alerted for e in self.events if e.event == "defocus")

    @property
    def cover_ok(self) -> bool:
        return all(e.alerted for e in self.events if e.event == "cover")


def score_clip(result: ClipResult, method: str) -> ClipScore:
    """Score ``method``'s states on ``result`` against the clip's segments.

    A defocus event counts as alerted when the method reports ``blurred`` within it; a
    cover event when it reports ``obstructed`` (focusmon) or, for the recipe, which has no
    other alarm, ``blurred``. False alarms count *entries* into a state, so one long alarm
    is one.
    """
    states = result.states[method]
    t = result.times
    recipe = method != "focusmon"
    entries = [(t[i], s) for i, s in enumerate(states) if s != (states[i - 1] if i else "ok")]
    events, fb_day, fb_night, other = [], 0, 0, 0
    for seg in result.segments:
        inside = [i for i in range(t.size) if seg.start_s <= t[i] < seg.end_s]
        seg_entries = [s for tt, s in entries if seg.start_s <= tt < seg.end_s]
        if seg.event in ("defocus", "cover"):
            want = "blurred" if seg.event == "defocus" or recipe else "obstructed"
            hits = [i for i in inside if states[i] == want]
            first_alarm = next((states[i] for i in inside if states[i] in ALARMS), None)
            delay = float(t[hits[0]] - seg.start_s) if hits else None
            events.append(EventOutcome(seg.event, seg.start_s, bool(hits), delay, first_alarm))
        elif seg.event in ("day", "night"):
            if seg.event == "day":
                fb_day += seg_entries.count("blurred")
            else:
                fb_night += seg_entries.count("blurred")
            other += sum(seg_entries.count(s) for s in ("obstructed", "partial", "moved"))
    night = [i for i in range(t.size) if _in_night(result, t[i])]
    dark_or_ok = float(np.mean([states[i] in ("dark", "ok") for i in night])) if night else 1.0
    dark = float(np.mean([states[i] == "dark" for i in night])) if night else 0.0
    day = np.flatnonzero(_in_segments(result, "day"))
    day_alarm = float(np.mean([states[i] != "ok" for i in day])) if day.size else 0.0
    return ClipScore(
        result.name, method, events, fb_day, fb_night, other, dark_or_ok, dark, day_alarm
    )


def _in_night(result: ClipResult, t: float) -> bool:
    return any(s.start_s <= t < s.end_s for s in result.segments if s.event == "night")


def clip_table(results: Sequence[ClipResult], methods: Sequence[str]) -> str:
    """Per clip and method: events alerted (with delay), false alarms, night states."""
    lines = [
        "| clip | method | defocus alerted (delay s) | cover alerted (delay s) "
        "| false `blurred` day | false `blurred` night | false `obstructed`/`partial`/`moved` "
        "| day time in alarm | night dark / ok |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for method in methods:
            sc = score_clip(result, method)
            lines.append(
                f"| {result.name} | {method} | {_events(sc, 'defocus')} "
                f"| {_events(sc, 'cover')} | {sc.false_blurred_day} "
                f"| {sc.false_blurred_night} | {sc.other_false} | {100 * sc.day_alarm:.0f} % "
                f"| {100 * sc.night_dark:.0f} % / "
                f"{100 * (sc.night_dark_or_ok - sc.night_dark):.0f} % |"
            )
    return "\n".join(lines)


def _events(sc: ClipScore, event: str) -> str:
    cells = []
    for e in sc.events:
        if e.event != event:
            continue
        if e.alerted:
            cells.append(f"yes ({e.delay_s:.1f})")
        else:
            cells.append(f"**no** (said `{e.state}`)" if e.state else "**no**")
    return ", ".join(cells) or "-"


def clip_overall(results: Sequence[ClipResult], methods: Sequence[str]) -> str:
    """Over all clips, per method: events alerted, false alarms, worst delay."""
    lines = [
        "| method | defocus events alerted | cover events alerted | max delay (s) "
        "| false `blurred` day | false `blurred` night | false `obstructed`/`partial`/`moved` "
        "| day time in alarm | night frames dark or ok |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method in methods:
        scores = [score_clip(r, method) for r in results]
        events = [e for sc in scores for e in sc.events]
        defocus = [e for e in events if e.event == "defocus"]
        cover = [e for e in events if e.event == "cover"]
        delays = [e.delay_s for e in events if e.delay_s is not None]
        night = np.mean([sc.night_dark_or_ok for sc in scores])
        day = np.mean([sc.day_alarm for sc in scores])
        lines.append(
            f"| {method} | {sum(e.alerted for e in defocus)}/{len(defocus)} "
            f"| {sum(e.alerted for e in cover)}/{len(cover)} "
            f"| {max(delays) if delays else float('nan'):.1f} "
            f"| {sum(sc.false_blurred_day for sc in scores)} "
            f"| {sum(sc.false_blurred_night for sc in scores)} "
            f"| {sum(sc.other_false for sc in scores)} | {100 * day:.0f} % "
            f"| {100 * night:.0f} % |"
        )
    return "\n".join(lines)


# -- targets --------------------------------------------------------------------------------


def sweep_target_met(rows: Sequence[SweepRow], method: str = "focusmon") -> bool:
    """The peak within +-1 frame in >= 95 % of the sweeps of every condition."""
    return all(r.hit_rate[method] >= TARGET_HIT_RATE for r in rows)


def hard_goal_met(row: SweepRow) -> bool:
    """A hard condition's goal: focusmon within +-1 frame in >= 95 % of its sweeps, never
    below the best raw measure's hit rate, and streaming never stopped on a wrong peak."""
    best = row.hit_rate[row.best_of_all_raw]
    rate = row.hit_rate["focusmon"]
    return rate >= TARGET_HIT_RATE and rate >= best and row.stopped_wrong == 0


def hard_table(rows: Sequence[SweepRow]) -> str:
    """The hard conditions against their goal, as a Markdown table."""
    lines = [
        "| condition | best raw measure (of all four) | focusmon find_peak "
        "| streaming: stopped early (on a wrong peak) | goal |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        best = r.best_of_all_raw
        lines.append(
            f"| {r.condition} | {best}: {_hit(r, best)} | {_hit(r, 'focusmon')} "
            f"| {100 * r.stopped:.0f} % ({r.stopped_wrong}) "
            f"| {'met' if hard_goal_met(r) else 'NOT met'} |"
        )
    return "\n".join(lines)


def clip_target_met(results: Sequence[ClipResult], method: str = "focusmon") -> bool:
    """Every defocus and cover event alerted; no `blurred`, and no `obstructed`, `partial`
    or `moved`, in day or night segments."""
    scores = [score_clip(r, method) for r in results]
    return all(
        sc.defocus_ok
        and sc.cover_ok
        and sc.false_blurred_day == 0
        and sc.false_blurred_night == 0
        and sc.other_false == 0
        for sc in scores
    )
