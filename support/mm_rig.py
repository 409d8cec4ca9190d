"""A real `CMMCorePlus` (pymmcore-plus's `UniMMCore`) whose camera, focus drive, XY stage and
shutter are Python devices rendering focusmon's simulated microscope: Micro-Manager's own
device adapters cannot be downloaded here. A slide tilted across x: each stage position
has its own focal plane."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    UniMMCore,
    XYStageDevice,
)

from focusmon.testing import SimulatedMicroscope


class Camera(SimpleCameraDevice):
    def __init__(self, scope: SimulatedMicroscope) -> None:
        super().__init__()
        self.scope, self._exposure = scope, 10.0

    def sensor_shape(self) -> tuple[int, int]:
        return tuple(self.scope.specimen.shape)  # type: ignore[return-value]

    def dtype(self):
        return np.uint16

    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        self._exposure = float(exposure)

    def snap(self, buffer: np.ndarray):
        buffer[:] = self.scope.snap()
        return {}


class FocusDrive(StageDevice):
    def __init__(self, scope: SimulatedMicroscope) -> None:
        super().__init__()
        self.scope = scope

    def get_position_um(self) -> float:
        return self.scope.position()

    def set_position_um(self, val: float) -> None:
        self.scope.move_to(val)

    def home(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        pass


class SlideStage(XYStageDevice):
    """Moving the slide moves the focal plane: ``plane(x, y)`` in µm."""

    def __init__(self, scope: SimulatedMicroscope, plane: Callable[[float, float], float]):
        super().__init__()
        self.scope, self.plane, self._xy = scope, plane, (0.0, 0.0)
        scope.z_focus_um = plane(0.0, 0.0)

    def get_position_um(self) -> tuple[float, float]:
        return self._xy

    def set_position_um(self, x: float, y: float) -> None:
        self._xy = (float(x), float(y))
        self.scope.z_focus_um = self.plane(*self._xy)

    def home(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def set_origin_x(self) -> None:
        pass

    def set_origin_y(self) -> None:
        pass


class Shutter(ShutterDevice):
    def __init__(self) -> None:
        super().__init__()
        self._open = False

    def get_open(self) -> bool:
        return self._open

    def set_open(self, value: bool) -> None:
        self._open = bool(value)


@contextmanager
def simulated_core(
    scope: SimulatedMicroscope, plane: Callable[[float, float], float] = lambda x, y: 0.0
) -> Iterator[UniMMCore]:
    """A `UniMMCore` over ``scope``: its camera, its focus drive ``Z``, an XY stage that
    moves the focal plane to ``plane(x, y)``, and a shutter."""
    core = UniMMCore()
    for label, device in (("Camera", Camera(scope)), ("Z", FocusDrive(scope)),
                          ("XY", SlideStage(scope, plane)), ("Shutter", Shutter())):  # fmt: skip
        core.loadPyDevice(label, device)
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    core.setFocusDevice("Z")
    core.setXYStageDevice("XY")
    core.setShutterDevice("Shutter")
    try:
        yield core
    finally:
        # A UniMMCore alive at interpreter exit after an MDA run aborts the process.
        del core
        gc.collect()
