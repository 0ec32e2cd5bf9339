"""Completion is pushed: a waiter sleeps until the job's announcement wakes it (not a poll),
and ``GET /v1/jobs/{id}/events`` streams every change of status and progress until the end."""

from __future__ import annotations

import json
import threading

import pytest

from tests.pipeline import wait_until
from tests.service.job_http import run, submit


def subscribed(backend) -> None:
    """The API's subscription is up, and its first wake-up of everyone (after connecting,
    anything missed is read again) is over."""
    with backend.events.watch("warm-up"):
        wait_until(backend.events.subscribed.is_set, 20, "the subscription")
    threading.Event().wait(0.2)


def stored_job(app) -> str:
    """A queued job no worker will take (it is never enqueued)."""
    store = app.extensions["convscope"].store
    job_id = store.create_job("public", "gradcam", "shapes", "conv4", {}, [], []).id
    return job_id


def test_a_waiter_is_woken_by_the_announcement(app, monkeypatch) -> None:
    import service.api.waiting as waiting

    monkeypatch.setattr(waiting, "FALLBACK_SECONDS", 3600.0)  # no re-reading on a timer
    backend = app.extensions["convscope"]
    job_id = stored_job(app)
    subscribed(backend)
    reads = []
    original = backend.store.get_job

    def counting(job):
        reads.append(job)
        return original(job)

    monkeypatch.setattr(backend.store, "get_job", counting)
    answer: dict = {}

    def wait() -> None:
        answer["job"] = app.test_client().get(f"/v1/jobs/{job_id}?wait=60").get_json()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    wait_until(lambda: job_id in backend.events._waiters, 20, "the waiter to register")
    assert backend.store.transition(job_id, "running", ("queued",))
    backend.store.set_progress(job_id, 0.5)
    backend.store.transition(job_id, "failed", ("running",), error={"code": "x", "message": ""})
    waiter.join(30)
    assert not waiter.is_alive(), "the waiter slept through the announcements"
    assert answer["job"]["status"] == "failed"
    # The first read, then one for the end: not one per announcement (running and progress
    # say the job is under way), and none on a timer.
    assert len(reads) == 2


def test_a_post_that_waits_reads_the_job_only_when_it_ends(app, monkeypatch) -> None:
    """POST ?wait registers its waiter before the job exists, so it reads nothing until an
    announcement of the end; a wait that runs out answers the job as it is then."""
    import numpy as np

    import service.api.waiting as waiting
    from tests.service.job_http import encode

    image = encode(np.full((64, 64, 3), 200, np.uint8))
    monkeypatch.setattr(waiting, "FALLBACK_SECONDS", 3600.0)
    backend = app.extensions["convscope"]
    monkeypatch.setattr(backend, "enqueue", lambda *args, **kwargs: None)  # no worker runs it
    subscribed(backend)
    reads = []
    original = backend.store.get_job
    monkeypatch.setattr(backend.store, "get_job", lambda job: reads.append(job) or original(job))
    answer: dict = {}

    def post() -> None:
        answer["res"] = submit(app.test_client(), "gradcam", [image], wait=60)

    waiter = threading.Thread(target=post, daemon=True)
    waiter.start()
    wait_until(lambda: backend.events._waiters, 20, "the waiter to register")
    job_id = next(iter(backend.events._waiters))
    wait_until(lambda: backend.store.get_job(job_id) is not None, 20, "the job to be stored")
    reads.clear()
    assert backend.store.transition(job_id, "running", ("queued",))
    backend.store.set_progress(job_id, 0.5)
    threading.Event().wait(0.3)
    assert reads == [] and waiter.is_alive()
    backend.store.transition(job_id, "failed", ("running",), error={"code": "x", "message": ""})
    waiter.join(30)
    assert answer["res"].status_code == 200 and answer["res"].get_json()["status"] == "failed"
    assert reads == [job_id]

    res = submit(app.test_client(), "gradcam", [image], wait=0.2)
    assert res.status_code == 202 and res.get_json()["status"] == "queued"


def test_an_end_before_the_wait_is_seen_at_once(app) -> None:
    job_id = stored_job(app)
    store = app.extensions["convscope"].store
    store.transition(job_id, "canceled", ("queued",))
    assert app.test_client().get(f"/v1/jobs/{job_id}?wait=60").get_json()["status"] == \
        "canceled"


def read_events(client, job_id: str) -> list[dict]:
    res = client.get(f"/v1/jobs/{job_id}/events", buffered=False)
    assert res.status_code == 200 and res.mimetype == "text/event-stream"
    events, text = [], b"".join(res.response).decode()
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if lines:
            assert lines[0] == "event: status"
            events.append(json.loads(lines[1].removeprefix("data: ")))
    return events


def test_events_stream_progress_until_the_end(client) -> None:
    res = submit(client, "filters", layer="conv2",
                 options={"filters": [0, 1, 2, 3], "steps": 48, "size": 48, "seed": 2})
    job_id = res.get_json()["id"]
    events = read_events(client, job_id)
    assert events[-1]["status"] == "succeeded"
    assert events[-1] == client.get(f"/v1/jobs/{job_id}").get_json()
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and len(set(progress)) >= 3  # several steps seen
    statuses = [e["status"] for e in events]
    assert statuses.index("succeeded") == len(statuses) - 1
    assert len({(e["status"], e["progress"]) for e in events}) == len(events)  # changes only


def test_events_of_a_finished_job_is_one_event(client) -> None:
    job = run(client, "filters", layer="conv1", options={"filters": [0], "steps": 2, "size": 16})
    assert read_events(client, job["id"]) == [client.get(f"/v1/jobs/{job['id']}").get_json()]


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job"])
def test_events_of_an_unknown_job_is_404(client, job_id: str) -> None:
    assert client.get(f"/v1/jobs/{job_id}/events").status_code == 404


def test_events_are_in_the_openapi_spec(client) -> None:
    assert "/v1/jobs/{job_id}/events" in client.get("/openapi.json").get_json()["paths"]
