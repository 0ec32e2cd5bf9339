"""A worker child killed in the middle of a job: the job is not lost. Celery re-delivers the
task (late acknowledgement, ``reject_on_worker_lost``), the pool starts a new child, and the
job runs again from the start to ``succeeded``.

It runs its own worker (one child) on its own Redis database, so killing that child cannot
touch the session's worker or other tests' jobs.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from service.launcher import stop as stop_process_group
from tests.pipeline import start_worker, wait_ready, wait_until
from tests.service.job_http import artifacts, poll, submit
from tests.service.test_worker_safety import children


def other_database(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="module")
def lone_worker(settings, tmp_path_factory):
    """(settings, worker process) on Redis database 7, emptied first."""
    own = dataclasses.replace(settings, redis_url=other_database(settings.redis_url, 7))
    r = redis.Redis.from_url(own.redis_url)
    r.flushdb()
    log = tmp_path_factory.mktemp("lone-worker") / "worker.log"
    proc = start_worker(own, log, concurrency=1)
    try:
        wait_ready(r, timeout=180)
        yield own, proc, log
    finally:
        stop_process_group(proc)
        r.flushdb()


def test_killed_child_job_is_redelivered_and_succeeds(lone_worker) -> None:
    from service.app import create_app

    own, proc, log = lone_worker
    client = create_app(own).test_client()
    res = submit(client, "filters", layer="conv2",
                 options={"filters": [0, 3, 5, 7], "steps": 200, "size": 64, "seed": 4})
    assert res.status_code == 202, res.get_json()
    job_id = res.get_json()["id"]

    def mid_ascent() -> bool:
        job = client.get(f"/v1/jobs/{job_id}").get_json()
        assert job["status"] in ("queued", "running"), job
        return job["status"] == "running" and 0 < job["progress"] < 0.5

    wait_until(mid_ascent, 120, "the ascent to be under way")
    (child,) = children(proc.pid)
    os.kill(child, signal.SIGKILL)

    job = poll(client, job_id, timeout=180)
    assert job["status"] == "succeeded", (job, log.read_text()[-3000:])
    assert proc.poll() is None  # the worker itself lives on ...
    (new_child,) = children(proc.pid)
    assert new_child != child  # ... with a new pool child, which ran the job again
    got = artifacts(client, job)
    assert len([name for name in got if name.startswith("filter_")]) == 4
    text = log.read_text()
    assert "SIGKILL" in text or "WorkerLostError" in text, text[-3000:]
    assert Path(f"/proc/{child}").exists() is False
