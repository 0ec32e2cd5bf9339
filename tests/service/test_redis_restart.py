"""Redis killed (SIGKILL) under load and restarted on the same port and files (AOF, fsync
every second, as the launcher and the compose file run it): every job accepted more than the
AOF window before the kill ends ``succeeded``. The worker reconnects by itself, and a job that
was running at the kill (its worker lost Redis mid-job) is queued again by the sweeper when
its lease lapses, not left ``running``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from service.launcher import free_port, stop
from tests.pipeline import start_worker, wait_ready, wait_until
from tests.service.job_http import encode, poll, submit
from tests.service.test_redis_outage import start_redis_on

AOF_WINDOW = 1.5  # appendfsync everysec: at most the last second is lost on a kill


def redis_on(port: int, folder: Path) -> subprocess.Popen:
    """AOF fsynced every second, as the launcher and the compose file run Redis."""
    return start_redis_on(port, folder, fsync="everysec")


def test_jobs_accepted_before_a_redis_kill_all_succeed(settings, tmp_path: Path) -> None:
    from service.app import create_app

    port, folder = free_port(), tmp_path / "redis"
    server = redis_on(port, folder)
    own = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    worker = start_worker(own, tmp_path / "worker.log", 1)
    try:
        wait_ready(redis.Redis(port=port), timeout=180)
        client = create_app(own).test_client()
        rng = __import__("numpy").random.default_rng(5)
        slow = submit(client, "filters", layer="conv3",
                      options={"filters": [0, 1, 2, 3], "steps": 200, "seed": 2})
        ids = [slow.get_json()["id"]]
        wait_until(lambda: client.get(f"/v1/jobs/{ids[0]}").get_json()["status"] == "running",
                   120, "the long job to run")
        for _ in range(12):  # these wait behind the long job
            res = submit(client, "gradcam", [encode(rng.integers(0, 256, (64, 64, 3),
                                                                 dtype="uint8"))])
            assert res.status_code == 202, res.get_json()
            ids.append(res.get_json()["id"])
        time.sleep(AOF_WINDOW)  # past the AOF window: these must survive the kill
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        server = redis_on(port, folder)
        jobs = [poll(client, job_id, timeout=240) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * len(ids), (jobs[0]["error"],
            (tmp_path / "worker.log").read_text()[-3000:])
        assert jobs[0]["attempts"] == 1, jobs[0]  # it lost its worker's Redis mid-job: run again
        assert worker.poll() is None  # the worker lived through it and reconnected
    finally:
        stop(worker)
        stop(server)
