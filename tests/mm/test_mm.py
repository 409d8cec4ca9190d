"""focusmon inside Micro-Manager: a real `CMMCorePlus` (pymmcore-plus's `UniMMCore`) whose
devices render the simulated microscope (support/mm_rig.py), a `useq` MDA with an
autofocus plan over positions whose focal planes differ, and a time-lapse tracked."""

from __future__ import annotations

import pytest

pytest.importorskip("pymmcore_plus", reason="pymmcore-plus is the 'mm' extra (CI installs it)")
useq = pytest.importorskip("useq", reason="useq-schema is the 'mm' extra (CI installs it)")

from mm_rig import simulated_core  # noqa: E402

from focusmon.mm import FocusmonEngine, MMCamera, MMStage, use_focusmon_autofocus  # noqa: E402
from focusmon.testing import SimulatedMicroscope, specimen  # noqa: E402

DEPTH_OF_FIELD_UM = 0.3  # as the autofocus tests: the drive within this of the focal plane


def tilted(x: float, y: float) -> float:
    return 5.0 + 0.01 * x - 0.004 * y  # a slide tilted across the stage: µm per µm


def acquire(core, sequence, scope) -> list[tuple[dict, float, dict]]:
    frames = []

    def ready(image, event, meta):
        frames.append((dict(event.index), scope.defocus_um(), dict(meta)))

    core.mda.events.frameReady.connect(ready)
    core.mda.run(sequence)
    return frames


@pytest.mark.timeout(300)
def test_an_mda_with_an_autofocus_plan_images_every_position_in_focus():
    scope = SimulatedMicroscope(specimen(), blur_px_per_um=0.5, backlash_um=1.5, flicker=0.05,
                                seed=3)  # fmt: skip
    positions = [(0.0, 0.0, 0.0), (1200.0, 300.0, 0.0), (-900.0, -500.0, 0.0)]
    with simulated_core(scope, tilted) as core:
        engine = use_focusmon_autofocus(core, range_um=25.0)
        assert isinstance(core.mda.engine, FocusmonEngine)
        sequence = useq.MDASequence(
            stage_positions=positions,
            autofocus_plan=useq.AxesBasedAF(autofocus_device_name="Z", axes=("p",)),
        )
        frames = acquire(core, sequence, scope)
        assert sorted(engine.results) == [0, 1, 2]
        for p, (x, y, _) in enumerate(positions):
            result = engine.results[p]
            assert result.ok and result.snaps < 60, result.reason
            # Told nothing of the drive's play: reached from below by default, so the
            # command is the plane plus the play, and the drive is at the plane.
            assert result.z == pytest.approx(tilted(x, y) + 1.5, abs=DEPTH_OF_FIELD_UM)
    assert [f[0]["p"] for f in frames] == [0, 1, 2]
    for index, defocus, meta in frames:
        assert abs(defocus) <= DEPTH_OF_FIELD_UM, (index, defocus)
        assert meta["focusmon_autofocus"]["snaps"] == engine.results[index["p"]].snaps


@pytest.mark.timeout(300)
def test_a_time_lapse_tracks_the_drift_between_time_points_with_few_snaps():
    scope = SimulatedMicroscope(specimen(), blur_px_per_um=0.5, flicker=0.05, seed=4,
                                drift_um=0.02)  # fmt: skip
    with simulated_core(scope) as core:
        engine = use_focusmon_autofocus(
            core, range_um=25.0, backlash_um=0.0, roi=(32, 32, 192, 192)
        )
        engine.track()  # probes sized from the first search's curve
        sequence = useq.MDASequence(
            time_plan=useq.TIntervalLoops(interval=0, loops=8),
            autofocus_plan=useq.AxesBasedAF(autofocus_device_name="Z", axes=("t",)),
        )
        snaps_before = scope.snaps
        frames = acquire(core, sequence, scope)
        searched = scope.snaps - snaps_before - len(frames)  # the autofocus's snaps
    assert len(frames) == 8
    assert all(abs(defocus) <= 2 * DEPTH_OF_FIELD_UM for _, defocus, _ in frames), frames
    assert engine.results[None].reason == "tracked"
    # The probes a third of the curve's half width apart (a tracked result's uncertainty).
    assert 0.2 < engine.results[None].uncertainty_um < 3.0
    # Each frame's metadata: the snaps of the autofocus event that placed it.
    assert [meta["focusmon_autofocus"]["snaps"] for _, _, meta in frames[1:]] == [3] * 7
    # The first a search (~35 snaps), the other seven three probe snaps each: a search at
    # every time point would be over 200.
    assert searched < 35 + 7 * 3 + 15, searched


def test_the_adapters_refuse_what_they_cannot_use():
    scope = SimulatedMicroscope(specimen(), seed=5)
    with simulated_core(scope) as core:
        stage, camera = MMStage(core), MMCamera(core, roi=(10, 20, 30, 40))
        stage.move_to(3.5)
        assert stage.position() == 3.5 == scope.position()
        assert camera.snap().shape == (40, 30) and camera.bit_depth == 16
        with pytest.raises(ValueError, match="roi"):
            MMCamera(core, roi=(0, 0, 2, 2))
        with pytest.raises(ValueError, match="range_um"):
            FocusmonEngine(core, range_um=0)
        with pytest.raises(ValueError, match="step_um"):
            FocusmonEngine(core).track(step_um=float("nan"))
