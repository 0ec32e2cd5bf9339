"""Job control on a real worker: progress, cancel while running, cancel while queued,
idempotent submits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest
import redis

from tests.service.job_http import NS, QueueCount, encode, poll, run, submit

LONG_FILTERS = {"filters": list(range(16)), "steps": 200, "size": 64, "seed": 0}


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def runs(r: redis.Redis, kind: str) -> int:
    """How many jobs of ``kind`` a worker has finished with (any end state)."""
    raw = r.hget(f"{NS}:stats:duration_count", kind)
    return int(raw or 0)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def job(client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").get_json()


def start_long_filters(client) -> str:
    res = submit(client, "filters", layer="conv4", options=LONG_FILTERS)
    assert res.status_code == 202
    return res.get_json()["id"]


def test_cancel_running_filters_stops_the_ascent(client, r: redis.Redis) -> None:
    before = runs(r, "filters")
    job_id = start_long_filters(client)
    seen: list[float] = []

    def progressed() -> bool:
        body = job(client, job_id)
        assert body["status"] in ("queued", "running"), body
        seen.append(body["progress"])
        return body["progress"] > 0

    wait_until(progressed, 120, "the ascent to report progress")
    assert seen == sorted(seen)
    res = client.delete(f"/v1/jobs/{job_id}")
    assert res.status_code == 202
    assert res.get_json()["status"] == "canceled"
    # The worker leaves the task (and records its run) within a second or two.
    took = wait_until(lambda: runs(r, "filters") == before + 1, 10, "the worker to stop")
    assert took < 5
    settled = job(client, job_id)["progress"]
    time.sleep(1.5)
    body = job(client, job_id)
    assert body["status"] == "canceled"
    assert body["progress"] == settled < 1.0
    assert body["result"] is None and body["artifacts"] == [] and body["error"] is None
    again = client.delete(f"/v1/jobs/{job_id}")  # already over: nothing to cancel
    assert again.status_code == 200 and again.get_json()["status"] == "canceled"


def test_cancel_queued_job_never_runs(client, r: redis.Redis) -> None:
    image = encode(np.full((64, 64, 3), 90, np.uint8))
    before = runs(r, "filters")
    busy = [start_long_filters(client) for _ in range(2)]  # one per worker child
    # Both ascents are past loading and tracing, into their steps: the children are busy.
    wait_until(lambda: all(job(client, b)["progress"] > 0 for b in busy), 120,
               "both worker children to be busy")
    res = submit(client, "activations", [image], layer="conv1")
    queued = res.get_json()["id"]
    assert job(client, queued)["status"] == "queued"
    res = client.delete(f"/v1/jobs/{queued}")
    assert res.status_code == 202 and res.get_json()["status"] == "canceled"
    for b in busy:
        assert client.delete(f"/v1/jobs/{b}").status_code == 202
    wait_until(lambda: runs(r, "filters") == before + 2, 10, "the busy jobs to stop")
    # A job sent after the canceled one runs, so the queue has moved past it.
    after = run(client, "activations", [image], layer="conv1")
    assert after["status"] == "succeeded"
    wait_until(lambda: r.llen("convscope") == 0, 10, "the queue to drain")
    time.sleep(0.3)
    body = job(client, queued)
    assert body["status"] == "canceled"
    assert body["started"] is None and body["progress"] == 0.0
    assert body["result"] is None and body["artifacts"] == []


def test_filters_progress_rises_to_one(client) -> None:
    res = submit(client, "filters", layer="conv3",
                 options={"filters": [0, 1], "steps": 40, "size": 48})
    job_id = res.get_json()["id"]
    samples = []
    while True:
        body = job(client, job_id)
        samples.append(body["progress"])
        if body["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.02)
    assert body["status"] == "succeeded", body
    assert samples == sorted(samples)
    assert any(0 < p < 1 for p in samples)  # reported while the ascent ran
    assert samples[-1] == 1.0
    assert body["result"]["steps"] == 40


def test_idempotency_key_returns_the_same_job(client, r: redis.Redis) -> None:
    image = encode(np.full((64, 64, 3), 30, np.uint8))
    key = uuid.uuid4().hex
    before = QueueCount.read(r)
    first = submit(client, "activations", [image], layer="conv1",
                   headers={"Idempotency-Key": key})
    second = submit(client, "activations", [image], layer="conv1",
                    headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    job_id = first.get_json()["id"]
    assert second.get_json()["id"] == job_id
    assert second.headers["Location"] == f"/v1/jobs/{job_id}"
    after = QueueCount.read(r)
    assert after.jobs == before.jobs + 1 and after.queued == before.queued + 1
    listed = [j["id"] for j in client.get("/v1/jobs?limit=500").get_json()["jobs"]]
    assert listed.count(job_id) == 1
    assert poll(client, job_id)["status"] == "succeeded"
    other = submit(client, "activations", [image], layer="conv1",
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert other.get_json()["id"] != job_id
    assert poll(client, other.get_json()["id"])["status"] == "succeeded"
