"""`convscope up` on a fresh data dir with no CONVSCOPE_REDIS_URL: embedded Redis, a worker,
gunicorn; a Grad-CAM job through `convscope submit`; SIGTERM leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from service.launcher import free_port
from tests.cli.conftest import alive, clean_env, descendants, wait_for_line, write_shape_images

CLI = [sys.executable, "-m", "service.cli"]


def test_up_runs_a_gradcam_job_and_stops_cleanly(data_dir: Path, tmp_path: Path,
                                                 reaper: list) -> None:
    port = free_port()
    env = clean_env(CONVSCOPE_DATA_DIR=str(data_dir))
    up = subprocess.Popen([*CLI, "up", "--port", str(port), "--workers", "1"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    reaper.append(up)
    lines = wait_for_line(up, "try it: curl", timeout=240)
    started = descendants(up.pid)
    names = " ".join(Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                     for p in started if alive(p))
    assert "redis-server" in names and "celery" in names and "gunicorn" in names

    image = write_shape_images(tmp_path / "in", 1)[0]
    out = tmp_path / "out"
    result = subprocess.run(
        [*CLI, "submit", str(image), "--model", "shapes", "--kind", "gradcam",
         "--url", f"http://127.0.0.1:{port}", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "image 0:" in result.stdout
    job_dir = next(out.iterdir())
    overlay = Image.open(job_dir / "overlay.png")
    assert overlay.size == (64, 64)
    heat = np.load(job_dir / "heatmap.npy")
    assert heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0

    first = subprocess.run(lines[-1].split("try it: ", 1)[1], shell=True, capture_output=True,
                           text=True, timeout=120)  # the printed first request, pasted
    assert json.loads(first.stdout)["status"] == "succeeded", first.stdout + first.stderr
    worker_log = (data_dir / "logs" / "worker0.log").read_text()
    assert "running on CPU" in worker_log
    assert "cuInit" not in worker_log and "cuda drivers" not in worker_log

    os.kill(up.pid, signal.SIGTERM)
    up.wait(60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in started):
        time.sleep(0.2)
    assert [p for p in started if alive(p)] == []
    assert (data_dir / "redis").is_dir()  # the embedded Redis kept its data in the data dir
