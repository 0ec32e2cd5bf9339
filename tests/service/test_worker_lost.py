"""A whole worker killed (its main process and its child, SIGKILL, as a lost host or an OOM
kill of the container does) while a job runs: the job is not stuck ``running`` until the
broker's visibility timeout. Its lease lapses, a live worker's sweeper queues it again with
``attempts: 1``, and it runs to ``succeeded`` there.

Its own workers on an empty Redis database, so nothing else is killed or swept."""

from __future__ import annotations

import dataclasses
import os
import signal

import redis

from service.launcher import stop as stop_process_group
from tests.pipeline import empty_database, start_worker, wait_ready, wait_until
from tests.service.job_http import artifacts, poll, submit


def test_a_job_of_a_killed_worker_is_run_again_by_another(settings, tmp_path) -> None:
    from service.app import create_app

    with empty_database(settings.redis_url, "the worker-lost test") as url:
        own = dataclasses.replace(settings, redis_url=url)
        r = redis.Redis.from_url(url)
        first = start_worker(own, tmp_path / "first.log", 1)
        second = None
        try:
            wait_ready(r, timeout=180)
            client = create_app(own).test_client()
            res = submit(client, "filters", layer="conv2",
                         options={"filters": [1, 2, 3, 4], "steps": 200, "size": 64, "seed": 5})
            assert res.status_code == 202, res.get_json()
            job_id = res.get_json()["id"]

            def under_way() -> bool:
                job = client.get(f"/v1/jobs/{job_id}").get_json()
                return job["status"] == "running" and job["progress"] > 0

            wait_until(under_way, 120, "the job to run on the first worker")
            os.killpg(first.pid, signal.SIGKILL)  # main process and child, no goodbye
            first.wait(10)
            assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "running"
            second = start_worker(own, tmp_path / "second.log", 1)
            job = poll(client, job_id, timeout=240)
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 1
            assert len([n for n in artifacts(client, job) if n.startswith("filter_")]) == 4
        finally:
            for proc in (first, second):
                if proc is not None:
                    stop_process_group(proc)
