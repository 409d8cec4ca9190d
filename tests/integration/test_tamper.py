"""A live MJPEG camera over HTTP on 127.0.0.1 that freezes and is turned, watched as a
camera owner runs focusmon: frozen and moved come, and go, while the other camera stays ok
throughout."""

from __future__ import annotations

import numpy as np
import pytest

from focusmon.config import parse
from focusmon.pipeline import Watcher
from focusmon.scheduler import AlertState

from mjpeg_camera import mjpeg_cameras
from servers import wait_until


def state_of(watcher: Watcher, name: str) -> AlertState:
    return {s.name: s.state for s in watcher.snapshot()}[name]


@pytest.mark.network
@pytest.mark.timeout(180)
def test_a_live_camera_freezes_and_is_turned_and_comes_back():
    with mjpeg_cameras(2, size=(320, 240), fps=5.0) as cams:
        alerts = {"frozen_s": 3.0, "moved_s": 3.0, "relearn_s": 0.0, "min_dwell_s": 1.0}
        config = parse({
            "metrics": False,
            "defaults": {"format": "mpjpeg", "timeout_s": 5, "alerts": alerts},
            "streams": [{"name": "hall", "source": cams.url(0)},
                        {"name": "yard", "source": cams.url(1)}],
        })  # fmt: skip
        watcher = Watcher(config)
        seen: set[AlertState] = set()

        def saw(state: AlertState) -> bool:
            now = {s.name: s.state for s in watcher.snapshot()}
            seen.add(now["yard"])
            return now["hall"] is state

        watcher.start()
        try:
            hall = cams.cameras[0]
            wait_until(lambda: all(s.baseline for s in watcher.snapshot()), 30,
                       "both streams learned")  # fmt: skip
            hall.frozen = True
            wait_until(lambda: saw(AlertState.FROZEN), 20, "hall frozen")
            hall.frozen = False
            wait_until(lambda: saw(AlertState.OK), 20, "hall live again")
            # Turned: the view slides a third of the way across.
            hall.sharp = np.ascontiguousarray(np.roll(hall.sharp, 110, axis=1))
            wait_until(lambda: saw(AlertState.MOVED), 30, "hall moved")
            assert state_of(watcher, "yard") is AlertState.OK
        finally:
            watcher.stop()
            watcher.close()
    assert seen == {AlertState.OK}, seen  # the other camera, all along
