"""``focusmon fleet`` on one box: without --address it starts Ray here, runs the streams in
shards, serves http_sd; ``focusmon fleet status`` says where each stream runs; SIGTERM
stops it all (exit 0, no Ray process left)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray", reason="Ray missing: pip install 'focusmon[fleet]'")

from mjpeg_camera import mjpeg_cameras  # noqa: E402
from servers import Process, fetch, free_port, wait_until  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(300)]


def ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_fleet_on_one_box_runs_reports_and_stops_cleanly(tmp_path):
    before = ray_processes()
    sd = free_port()
    with mjpeg_cameras(3, size=(160, 120), fps=5.0) as cams:
        streams = "\n".join(
            f'[[streams]]\nname = "cam{k}"\nsource = "{cams.url(k)}"\nformat = "mpjpeg"\n'
            for k in range(3)
        )
        config = tmp_path / "streams.toml"
        config.write_text(f'backend = "numpy"\n\n{streams}\n[fleet]\nstreams_per_shard = 2\n')
        env_home = {"XDG_STATE_HOME": str(tmp_path / "state")}
        fleet = Process([sys.executable, "-m", "focusmon", "fleet", "--config", str(config),
                         "--sd-addr", f"127.0.0.1:{sd}"], env=env_home)  # fmt: skip
        try:

            def targets() -> list:
                try:
                    return json.loads(fetch(f"http://127.0.0.1:{sd}/targets", timeout=2)[1])
                except (OSError, ValueError):
                    return []

            wait_until(lambda: len(targets()) == 2, 120, "two shards in service discovery")
            shard_metrics = [fetch(f"http://{t['targets'][0]}/metrics")[1] for t in targets()]
            served = sorted(
                line.split('stream="')[1].split('"')[0]
                for text in shard_metrics
                for line in text.splitlines()
                if line.startswith("focusmon_frames_decoded_total{")
            )
            assert served == ["cam0", "cam1", "cam2"]  # each stream on exactly one shard
            fleet_metrics = fetch(f"http://127.0.0.1:{sd}/metrics")[1]
            assert 'focusmon_fleet_shards{state="running"} 2.0' in fleet_metrics
            status = subprocess.run(
                [sys.executable, "-m", "focusmon", "fleet", "status"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            lines = status.stdout.splitlines()
            assert lines[0].split()[:3] == ["shard", "state", "host"]
            assert sum("running" in line for line in lines[1:]) == 2
            assert all(f"cam{k}" in status.stdout for k in range(3))
        finally:
            fleet.proc.send_signal(signal.SIGTERM)  # the command, not its group
            try:
                fleet.proc.wait(timeout=60)
            finally:
                fleet.stop()
    assert fleet.proc.returncode == 0
    deadline = time.monotonic() + 30
    while ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ray_processes() - before, "Ray processes left behind"


def test_fleet_status_without_a_fleet_says_so():
    proc = subprocess.run(
        [sys.executable, "-m", "focusmon", "fleet", "status", "--address", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("focusmon: error: cannot reach the Ray cluster"), proc.stderr
    assert "Traceback" not in proc.stderr
