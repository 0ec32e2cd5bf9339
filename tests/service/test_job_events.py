"""Completion is pushed: a waiter sleeps until the job's announcement wakes it (not a poll),
and ``GET /v1/jobs/{id}/events`` streams every change of status and progress until the end."""

from __future__ import annotations

import json
import threading

import pytest

from tests.pipeline import wait_until
from tests.service.job_http import run, submit


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
    backend.store.transition(job_id, "failed", ("running",), error={"code": "x", "message": ""})
    waiter.join(30)
    assert not waiter.is_alive(), "the waiter slept through the announcements"
    assert answer["job"]["status"] == "failed"
    assert 2 <= len(reads) <= 4  # the first read, then one per announcement: no polling


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
