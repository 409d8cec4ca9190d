"""The imaging model behind the decision benchmark: optics, sensor, night mode, generators."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

import focusmon
from focusmon import testing

MEASURES = ("laplacian_var", "tenengrad", "sobel_mean", "haar_energy")


def _scores(frame: np.ndarray) -> focusmon.FocusScores:
    scale = 255.0 / 65535.0 if frame.dtype == np.uint16 else 1.0
    return focusmon.measure(frame, backend="numpy", scale=scale)


def _to8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A real photograph, small: 96 x 128 of the camera man, float in [0, 1]."""
    return skimage.data.camera()[150:246, 180:308].astype(np.float32) / 255.0


# -- optics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.001, 0.05, 0.3, 0.5, 1.0, 2.7, 7.5, 20.0])
def test_disk_kernel_sums_to_one_and_is_symmetric(radius: float) -> None:
    k = testing.disk_kernel(radius)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert (k >= 0).all()
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    np.testing.assert_allclose(k, k.T, atol=1e-15)


def test_disk_kernel_area_grows_like_a_disk() -> None:
    # Second moment of a uniform disk: r²/2 (both axes), plus the pixel footprint's tent
    # (box * box, variance 1/6 on each axis): the kernel is a disk, not a Gaussian.
    for radius in (3.0, 6.0, 10.0):
        k = testing.disk_kernel(radius)
        half = k.shape[0] // 2
        y, x = np.mgrid[-half : half + 1, -half : half + 1]
        moment = float((k * (x**2 + y**2)).sum())
        assert moment == pytest.approx(radius**2 / 2 + 2 / 6, rel=0.01)


def test_radius_zero_is_identity(scene: np.ndarray) -> None:
    np.testing.assert_array_equal(testing.defocus(scene, 0.0), scene)
    # And a tiny radius is all but identity: blur grows continuously from 0.
    np.testing.assert_allclose(testing.defocus(scene, 0.001), scene, atol=2e-3)


def test_defocus_lowers_every_measure_monotonically(scene: np.ndarray) -> None:
    radii = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0]
    scores = [_scores(_to8(testing.defocus(scene, r))) for r in radii]
    for m in MEASURES:
        values = [getattr(s, m) for s in scores]
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), (m, values)
    # The mean stays: a blur moves light around, it does not remove it.
    means = [s.mean for s in scores]
    assert max(means) - min(means) < 1.0


def test_sub_pixel_radii_blur_smoothly(scene: np.ndarray) -> None:
    # Steps of 0.05 px change the Laplacian variance by small, similar amounts: no jump
    # where a kernel grows by a whole pixel ring (what an aliased disk does).
    radii = np.arange(0.0, 2.0001, 0.05)
    values = np.array(
        [float(np.var(np.diff(testing.defocus(scene, r), 2, axis=1))) for r in radii]
    )
    ratios = values[1:] / values[:-1]
    assert (ratios < 1.0).all()
    assert ratios.min() > 0.8, ratios.min()


# -- sensor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("photons", [20.0, 200.0, 2000.0, 20000.0])
@pytest.mark.parametrize("bits", [8, 16])
def test_expose_noise_is_poisson_plus_read_noise(photons: float, bits: int) -> None:
    read = 3.0
    flat = np.full((256, 256), 0.4)
    frame = testing.expose(flat, photons_at_white=photons, read_noise_e=read, bits=bits, rng=1)
    assert frame.dtype == (np.uint8 if bits == 8 else np.uint16)
    full = 2**bits - 1
    per_e = full / photons  # samples per electron at unity gain
    mean_e = 0.4 * photons
    assert frame.mean() / per_e == pytest.approx(mean_e, rel=0.02, abs=0.1)
    # Variance in electrons: Poisson (= mean) + read² + quantisation (1/12 sample²).
    expected = mean_e + read**2 + 1 / 12 / per_e**2
    assert frame.var() / per_e**2 == pytest.approx(expected, rel=0.06)


def test_expose_scales_with_bit_depth_and_gain() -> None:
    flat = np.full((128, 128), 0.25)
    m8 = testing.expose(flat, photons_at_white=1e6, read_noise_e=0, bits=8, rng=0).mean()
    m16 = testing.expose(flat, photons_at_white=1e6, read_noise_e=0, bits=16, rng=0).mean()
    assert m8 == pytest.approx(0.25 * 255, abs=0.6)
    assert m16 == pytest.approx(0.25 * 65535, rel=1e-3)
    boosted = testing.expose(flat, light=0.1, gain=4.0, photons_at_white=1e6, rng=0)
    assert boosted.mean() == pytest.approx(0.1 * 4 * 0.25 * 255, abs=0.6)


def test_expose_clips_at_full_scale() -> None:
    frame = testing.expose(np.full((32, 32), 0.9), light=2.0, rng=0)
    assert frame.max() == 255 and (frame == 255).mean() > 0.99


def test_night_noise_reduction_removes_noise_and_detail(scene: np.ndarray) -> None:
    noisy = testing.expose(scene, light=0.05, gain=16.0, photons_at_white=4000, rng=2)
    cleaned = testing.night_noise_reduction(noisy, 1.0)
    assert cleaned.dtype == noisy.dtype and cleaned.shape == noisy.shape
    assert abs(float(cleaned.mean()) - float(noisy.mean())) < 2.0
    assert _scores(cleaned).laplacian_var < 0.2 * _scores(noisy).laplacian_var
    # On a clean picture it still takes fine detail away, as real night modes do.
    sharp = _to8(scene)
    assert _scores(testing.night_noise_reduction(sharp)).laplacian_var < (
        0.5 * _scores(sharp).laplacian_var
    )
    assert np.array_equal(testing.night_noise_reduction(sharp, 0.0), sharp)


# -- generators -----------------------------------------------------------------------------


@pytest.mark.parametrize("focus", [4.3, 10.0, 17.6])
@pytest.mark.parametrize("bits", [8, 16])
def test_sweep_truth_is_where_the_measures_peak(
    scene: np.ndarray, focus: float, bits: int
) -> None:
    sweep = testing.focus_sweep(scene, n_frames=21, focus=focus, step_px=1.0, bits=bits, rng=3)
    assert sweep.focus_index == round(focus)
    assert len(sweep.frames) == 21 and sweep.frames[0].dtype == np.dtype(f"uint{bits}")
    scores = [_scores(f) for f in sweep.frames]
    for m in MEASURES:
        assert int(np.argmax([getattr(s, m) for s in scores])) == sweep.focus_index, m


def test_sweep_drift_and_flicker_change_the_light(scene: np.ndarray) -> None:
    drift = testing.focus_sweep(scene, n_frames=11, focus=5, drift=0.4, rng=0)
    np.testing.assert_allclose(drift.light[[0, -1]], [1.0, 0.6])
    assert _scores(drift.frames[-1]).mean < 0.7 * _scores(drift.frames[0]).mean
    rising = testing.focus_sweep(scene, n_frames=11, focus=5, drift=-0.4, rng=0)
    np.testing.assert_allclose(rising.light[[0, -1]], [0.6, 1.0])
    flicker = testing.focus_sweep(scene, n_frames=200, focus=5, step_px=0.01, flicker=0.3, rng=0)
    assert flicker.light.min() >= 0.7 and flicker.light.max() <= 1.3
    assert flicker.light.std() > 0.13  # uniform on +-0.3: std 0.17


def test_sweep_low_light_is_noisy(scene: np.ndarray) -> None:
    bright = testing.focus_sweep(scene, n_frames=5, focus=2, rng=0)
    dim = testing.focus_sweep(scene, n_frames=5, focus=2, photons_at_white=30, rng=0)
    # Far from focus the picture is smooth: what is left is noise, far larger in low light.
    assert _scores(dim.frames[0]).laplacian_var > 20 * _scores(bright.frames[0]).laplacian_var


SHORT = (
    (0.0, 4.0, "ok", "day"),
    (4.0, 8.0, "blurred", "defocus"),
    (8.0, 10.0, "ok", "day"),
    (10.0, 12.0, "obstructed", "cover"),
    (12.0, 14.0, "ok", "day"),
    (14.0, 20.0, "dark", "night"),
    (20.0, 22.0, "ok", "day"),
)


@pytest.fixture(scope="module")
def clip() -> testing.Clip:
    photo = skimage.data.astronaut().mean(axis=2).astype(np.float32) / 255.0
    return testing.surveillance_clip(photo, timeline=SHORT, defocus_radius=3.0, rng=5)


def test_clip_segments_cover_the_clip(clip: testing.Clip) -> None:
    segs = clip.segments
    assert segs[0].start_s == 0.0 and segs[-1].end_s == pytest.approx(clip.duration_s)
    assert all(a.end_s == b.start_s for a, b in zip(segs, segs[1:], strict=False))
    assert {s.truth for s in segs} <= set(testing.TRUTHS)
    assert len(clip.frames) == 220 and clip.frames[0].shape == (240, 320)
    assert [clip.truth_at(t) for t in (1, 5, 9, 11, 16, 21)] == [
        "ok", "blurred", "ok", "obstructed", "dark", "ok",
    ]  # fmt: skip


def test_clip_frames_show_their_truth(clip: testing.Clip) -> None:
    def stats(start: float, end: float) -> tuple[float, float, float]:
        frames = clip.frames[int(start * clip.fps) : int(end * clip.fps)]
        s = [_scores(f) for f in frames]
        return (
            float(np.median([x.laplacian_var for x in s])),
            float(np.median([x.mean for x in s])),
            float(np.median([x.std for x in s])),
        )

    day_lap, day_mean, day_std = stats(1, 4)
    blur_lap, blur_mean, _ = stats(5.5, 7.5)  # the blur held at its full radius
    _, cover_mean, cover_std = stats(10.5, 11.5)
    night_lap, night_mean, _ = stats(16, 18)  # the deep night, between dusk and dawn
    assert blur_lap < 0.3 * day_lap and abs(blur_mean - day_mean) < 3
    assert cover_std < 0.3 * day_std and cover_mean < 0.7 * day_mean
    assert night_lap < 0.2 * day_lap  # noise reduction took the detail
    assert night_mean < day_mean
    night = slice(int(16 * clip.fps), int(18 * clip.fps))
    assert clip.night_mode[night].all() and not clip.night_mode[: int(14 * clip.fps)].any()
    assert clip.light[night].max() == pytest.approx(1 / 20)
    assert clip.gain[night].min() > 8 * clip.gain[:40].max()
    assert clip.radius[: int(4 * clip.fps)].max() == 0 and clip.radius.max() == 3.0


def test_dim_scene_is_darker_and_its_night_darker_still() -> None:
    photo = skimage.data.coffee().mean(axis=2).astype(np.float32) / 255.0
    dim = testing.surveillance_clip(photo, timeline=SHORT, day_light=0.2, rng=1)
    day = np.mean([f.mean() for f in dim.frames[10:40]])
    night = np.mean([f.mean() for f in dim.frames[160:180]])
    assert day < 60 and night < 0.6 * day


def test_generators_are_deterministic_by_seed(scene: np.ndarray) -> None:
    a = testing.focus_sweep(scene, n_frames=6, focus=2.5, flicker=0.2, rng=7)
    b = testing.focus_sweep(scene, n_frames=6, focus=2.5, flicker=0.2, rng=7)
    c = testing.focus_sweep(scene, n_frames=6, focus=2.5, flicker=0.2, rng=8)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    np.testing.assert_array_equal(a.light, b.light)
    assert not np.array_equal(a.frames[0], c.frames[0])
    timeline = SHORT[:2]
    one = testing.surveillance_clip(scene, size=(64, 96), timeline=timeline, rng=3)
    two = testing.surveillance_clip(scene, size=(64, 96), timeline=timeline, rng=3)
    assert all(np.array_equal(x, y) for x, y in zip(one.frames, two.frames, strict=True))


def test_bad_arguments_are_refused(scene: np.ndarray) -> None:
    with pytest.raises(ValueError, match="radius_px"):
        testing.defocus(scene, -1.0)
    with pytest.raises(ValueError, match="bits"):
        testing.expose(scene, bits=12)
    with pytest.raises(ValueError, match="focus"):
        testing.focus_sweep(scene, n_frames=5, focus=7.0)


def test_the_streaming_camera_renders_the_clip_frame_for_frame():
    """`surveillance_clip` is `SurveillanceCamera` collected: one camera model, two uses."""
    scene = skimage.data.camera().astype(np.float32) / 255.0
    timeline = ((0.0, 2.0, "ok", "day"), (2.0, 3.0, "blurred", "defocus"),
                (3.0, 4.0, "obstructed", "cover"), (4.0, 6.0, "dark", "night"))  # fmt: skip
    clip = testing.surveillance_clip(scene, size=(48, 64), timeline=timeline, rng=4)
    camera = testing.SurveillanceCamera(scene, size=(48, 64), timeline=timeline, rng=4)
    for i, frame in enumerate(clip.frames):
        assert np.array_equal(camera.render(i / clip.fps), frame), i
    assert camera.conditions(2.6)[0] > 0  # defocused then ...
    looping = testing.SurveillanceCamera(scene, size=(48, 64), timeline=timeline, repeat=True)
    radius, light, cover, night = looping.conditions(np.array([2.6, 8.6, 5.0, 11.0]))
    assert radius[0] == pytest.approx(radius[1]) and radius[0] > 0 and not cover.any()
    assert light[2] == pytest.approx(light[3]) and light[2] < 0.25
    assert night.tolist() == [False, False, True, True]  # ... and again a cycle later


def test_the_demo_camera_is_the_model_over_its_own_scene():
    camera = testing.demo_camera(size=(72, 128), fps=5.0, seed=1)
    frames = {t: camera.render(t) for t in (0.0, 0.2, 19.0, 33.0, 47.0)}
    day, covered, night = frames[0.2], frames[33.0], frames[47.0]
    assert day.dtype == np.uint8 and day.shape == (72, 128)
    lap = {k: _scores(v).laplacian_var for k, v in frames.items()}
    assert lap[19.0] < 0.3 * lap[0.2]  # the knocked lens
    assert covered.std() < 0.3 * day.std()  # the hand
    assert night.mean() < 20  # a real night: dark
    with pytest.raises(ValueError, match="unknown event"):
        testing.SurveillanceCamera(day / 255.0, timeline=((0.0, 1.0, "ok", "fog"),))
