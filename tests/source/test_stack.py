"""TIFF stacks read along their axes: ImageJ and OME metadata give the z spacing and the
channels, and `focusmon peak` answers each channel's focus as a z index and in µm."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data
import tifffile

from focusmon.cli import main
from focusmon.source import stack_layout

FOCUS = {0: 3, 1: 7}  # each channel's in-focus plane: a chromatic focal shift


def hyperstack(planes: int = 11, times: int = 1) -> np.ndarray:
    """(T, Z, C, Y, X) uint16: channel c sharpest at plane FOCUS[c]."""
    image = skimage.data.camera()[100:228, 150:278].astype(np.float32)
    data = np.zeros((times, planes, 2, 128, 128), np.uint16)
    for z in range(planes):
        for c, focus in FOCUS.items():
            sigma = 1.2 * abs(z - focus)
            blurred = cv2.GaussianBlur(image, (0, 0), sigma) if sigma else image
            data[:, z, c] = (blurred * 200 + 100).astype(np.uint16)
    return data


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stacks")
    data = hyperstack()[0]
    paths = {
        "imagej": folder / "hyper.tif", "ome": folder / "stack.ome.tif",
        "plain": folder / "plain.tif", "nm": folder / "nm.tif", "timed": folder / "timed.tif",
    }  # fmt: skip
    tifffile.imwrite(paths["imagej"], data, imagej=True,
                     metadata={"axes": "ZCYX", "spacing": 0.5, "unit": "micron"})  # fmt: skip
    tifffile.imwrite(paths["ome"], data, ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeZ": 0.5})  # fmt: skip
    tifffile.imwrite(paths["plain"], data.reshape(22, 128, 128))  # no metadata: 22 pages
    tifffile.imwrite(paths["nm"], data, imagej=True,
                     metadata={"axes": "ZCYX", "spacing": 500.0, "unit": "nm"})  # fmt: skip
    tifffile.imwrite(paths["timed"], hyperstack(planes=5, times=2), imagej=True,
                     metadata={"axes": "TZCYX"})  # fmt: skip
    return paths


def test_the_layout_comes_from_imagej_or_ome_metadata(stacks):
    for kind in ("imagej", "ome"):
        layout = stack_layout(stacks[kind])
        assert (layout.axes, layout.shape, layout.z_step_um) == ("ZC", (11, 2), 0.5), kind
        assert layout.coords(1) == {"Z": 0, "C": 1} and layout.coords(2) == {"Z": 1, "C": 0}
    assert stack_layout(stacks["nm"]).z_step_um == pytest.approx(0.5)
    assert stack_layout(stacks["plain"]) is None  # no metadata: a plain sequence of pages
    assert stack_layout(stacks["timed"]).axes == "TZC"


def peak(capsys, *args) -> dict:
    assert main(["peak", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_peak_gives_each_channel_s_focus_in_planes_and_microns(capsys, stacks, kind):
    first = peak(capsys, stacks[kind])
    assert first["channel"] == 0 and first["z_step_um"] == 0.5
    assert first["peak_z_index"] == pytest.approx(FOCUS[0], abs=0.3)
    assert first["peak_z_um"] == pytest.approx(0.5 * FOCUS[0], abs=0.15)
    assert first["best_index"] == 2 * FOCUS[0]  # a page index: channel 0's pages are even
    assert len(first["scores"]) == 11  # one channel's curve, not the 22 pages interleaved
    found = {c["channel"]: c for c in first["channels"]}
    assert {c: found[c]["best_z_index"] for c in found} == FOCUS
    assert all(len(c["scores"]) == 11 for c in first["channels"])
    second = peak(capsys, stacks[kind], "--channel", 1)
    assert second["channel"] == 1 and second["best_index"] == 2 * FOCUS[1] + 1
    assert second["peak_z_um"] == pytest.approx(0.5 * FOCUS[1], abs=0.15)


def test_a_plain_stack_is_its_pages_and_wrong_channels_are_refused(capsys, stacks):
    plain = peak(capsys, stacks["plain"])
    assert "channels" not in plain and len(plain["scores"]) == 22
    for args, said in (([stacks["imagej"], "--channel", "2"], "from 0 to 1"),
                       ([stacks["plain"], "--channel", "0"], "not a stack"),
                       ([stacks["timed"]], "time points")):  # fmt: skip
        assert main(["peak", *map(str, args)]) == 2
        assert said in capsys.readouterr().err


def test_peak_plots_each_channel_s_curve(capsys, stacks, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    png = tmp_path / "curve.png"
    peak(capsys, stacks["imagej"], "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
