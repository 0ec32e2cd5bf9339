"""Job control on a real worker: progress, cancel while running, cancel while queued,
idempotent submits.

Nothing here is timed: each test waits for a state (in Redis or in the API), and its
timeouts only bound how long a failing test takes.
"""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
import redis

from tests.pipeline import child_pids, wait_until
from tests.service.job_http import NS, Broker, QueueCount, encode, poll, run, submit

LONG_FILTERS = {"filters": list(range(16)), "steps": 200, "size": 64, "seed": 0}


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def check_every() -> int:
    """Steps between the ascent's cancel checks (and progress reports)."""
    from models.filters.ascent import AscentOptions

    return AscentOptions().check_every


def runs(r: redis.Redis, kind: str) -> int:
    """How many jobs of ``kind`` a worker has finished with (any end state): counted when the
    task returns, so after it nothing more is written to the job."""
    raw = r.hget(f"{NS}:stats:duration_count", kind)
    return int(raw or 0)


def job(client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").get_json()


def start_long_filters(client) -> str:
    res = submit(client, "filters", layer="conv4", options=LONG_FILTERS)
    assert res.status_code == 202
    return res.get_json()["id"]


class ProgressWrites:
    """Every progress value written to the job records while open, in the order Redis ran the
    writes (Redis's MONITOR: unlike polling, it cannot miss a value however fast the job)."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=120)
        self.commands: list[str] = []

    def __enter__(self) -> ProgressWrites:
        self.monitor = self.r.monitor().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        mark = f"progress-writes-end-{uuid.uuid4().hex}"
        self.r.echo(mark)  # MONITOR shows it after every command run before it
        try:
            while not self.commands or mark not in self.commands[-1]:
                self.commands.append(self.monitor.next_command()["command"])
        finally:
            self.monitor.__exit__()

    def of(self, job_id: str) -> list[float]:
        prefix = f"HSET {NS}:job:{job_id} "
        return [float(m[1]) for c in self.commands if c.startswith(prefix)
                for m in [re.search(r"(?:^| )progress (\S+)", c[len(prefix):])] if m]


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
    at_cancel = job(client, job_id)["progress"]
    wait_until(lambda: runs(r, "filters") == before + 1, 120,
               "the worker to leave the canceled ascent")
    body = job(client, job_id)  # final: the task has returned
    assert body["status"] == "canceled"
    # The ascent stopped at its next cancel check: at most one report was in flight.
    assert at_cancel <= body["progress"] <= at_cancel + check_every() / LONG_FILTERS["steps"]
    assert body["progress"] < 1.0
    assert body["result"] is None and body["artifacts"] == [] and body["error"] is None
    again = client.delete(f"/v1/jobs/{job_id}")  # already over: nothing to cancel
    assert again.status_code == 200 and again.get_json()["status"] == "canceled"


def test_cancel_queued_job_never_runs(client, r: redis.Redis, worker) -> None:
    # The worker runs `concurrency` jobs at once (prefork children, late acks, prefetch 1):
    # with that many long ascents running, a new job has to wait in the queue.
    slots = worker.concurrency
    assert len(child_pids(worker.pid)) == slots, "the prefork pool should have one child per slot"
    image = encode(np.full((64, 64, 3), 90, np.uint8))
    before = runs(r, "filters")
    busy = [start_long_filters(client) for _ in range(slots)]
    # Every ascent is past loading and tracing, into its steps: every child is busy.
    wait_until(lambda: all(job(client, b)["progress"] > 0 for b in busy), 180,
               f"all {slots} worker children to be busy")
    res = submit(client, "activations", [image], layer="conv1")
    queued = res.get_json()["id"]
    broker = Broker.read(r)
    assert set(busy) <= set(broker.reserved), broker  # running, unacknowledged
    assert queued in broker.waiting, broker  # no worker child has taken it
    assert job(client, queued)["status"] == "queued"
    res = client.delete(f"/v1/jobs/{queued}")
    assert res.status_code == 202 and res.get_json()["status"] == "canceled"
    for b in busy:
        assert client.delete(f"/v1/jobs/{b}").status_code == 202
    wait_until(lambda: runs(r, "filters") == before + slots, 120, "the busy jobs to stop")
    # A job sent after the canceled one runs, so the queue has moved past it ...
    after = run(client, "activations", [image], layer="conv1")
    assert after["status"] == "succeeded"
    # ... and the canceled job's task was taken and acknowledged (returned) by a child.
    wait_until(lambda: not Broker.read(r).holds(queued), 60,
               "the canceled job's task to be taken and acknowledged")
    body = job(client, queued)
    assert body["status"] == "canceled"
    assert body["started"] is None and body["progress"] == 0.0
    assert body["result"] is None and body["artifacts"] == []


def test_filters_progress_rises_to_one(client, settings) -> None:
    steps = 40
    with ProgressWrites(settings.redis_url) as writes:
        res = submit(client, "filters", layer="conv3",
                     options={"filters": [0, 1], "steps": steps, "size": 48})
        assert res.status_code == 202, res.get_json()
        job_id = res.get_json()["id"]
        body = poll(client, job_id)
    assert body["status"] == "succeeded", body
    assert body["result"]["steps"] == steps
    samples = writes.of(job_id)
    assert samples == sorted(samples)
    every = check_every()
    reports = {round(done / steps, 4) for done in range(every, steps, every)}
    assert reports <= set(samples), samples  # one report per cancel check while it ran
    assert samples[-1] == body["progress"] == 1.0


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


def test_an_idempotency_key_reused_for_another_job_is_422(client, r: redis.Redis) -> None:
    key = uuid.uuid4().hex
    first = submit(client, "activations", [encode(np.full((64, 64, 3), 40, np.uint8))],
                   layer="conv1", headers={"Idempotency-Key": key})
    assert first.status_code == 202
    before = QueueCount.read(r)
    for other in ({"images": [encode(np.full((64, 64, 3), 41, np.uint8))], "layer": "conv1"},
                  {"images": [encode(np.full((64, 64, 3), 40, np.uint8))], "layer": "conv2"}):
        res = submit(client, "activations", other["images"], layer=other["layer"],
                     headers={"Idempotency-Key": key})
        assert res.status_code == 422, res.get_json()
        assert res.get_json()["code"] == "idempotency_key_reused"
        assert res.headers["Content-Type"] == "application/problem+json"
    assert QueueCount.read(r) == before  # nothing stored, nothing queued
