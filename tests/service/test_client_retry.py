"""The Python client (and so the CLI and ``convscope batch``) retries transient answers with
its session's retry policy (``service.http_client``): after Retry-After, with the same
Idempotency-Key, and never retries a client error."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from service.client import ApiError, Client


@pytest.fixture()
def flaky() -> Iterator[tuple[str, list[dict], list]]:
    """A server answering POST /v1/jobs from a script of statuses, recording each request."""
    app = Flask("flaky")
    seen: list[dict] = []
    script: list = []

    @app.post("/v1/jobs")
    def jobs():  # the scripted answer
        seen.append({"key": request.headers.get("Idempotency-Key"),
                     "model": request.form.get("model")})
        status = script.pop(0) if script else 202
        headers = {"Retry-After": "0"} if status in (429, 503) else {}
        body = {"id": "j1", "status": "queued"} if status == 202 else \
            {"code": f"c{status}", "detail": "scripted"}
        return body, status, headers

    @app.get("/readyz")
    def readyz():  # never ready
        seen.append({"key": None, "model": "readyz"})
        return {"status": "unavailable"}, 503, {"Retry-After": "0"}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen, script
    server.shutdown()


def test_transient_answers_are_retried_with_one_key(flaky) -> None:
    url, seen, script = flaky
    script.extend([503, 429, 502])
    job = Client(url).submit(model="shapes", kind="filters")
    assert job == {"id": "j1", "status": "queued"}
    assert len(seen) == 4
    assert len({s["key"] for s in seen}) == 1 and seen[0]["key"]


def test_client_errors_are_not_retried(flaky) -> None:
    url, seen, script = flaky
    script.append(400)
    with pytest.raises(ApiError) as caught:
        Client(url).submit(model="shapes", kind="filters")
    assert caught.value.status == 400 and caught.value.code == "c400"
    assert len(seen) == 1


def test_ready_asks_once(flaky) -> None:
    url, seen, _ = flaky
    assert Client(url).ready() is False  # 503 with Retry-After: not retried
    assert seen == [{"key": None, "model": "readyz"}]
    assert Client(url).session.request("GET", "/readyz").status_code == 503
    assert len(seen) == 6  # the session itself would have retried four times


def test_retries_are_bounded(flaky) -> None:
    from service.client import retry_policy

    url, seen, script = flaky
    script.extend([503] * 10)
    with pytest.raises(ApiError) as caught:
        Client(url, retry=retry_policy(attempts=3)).submit(model="shapes", kind="filters")
    assert caught.value.status == 503
    assert len(seen) == 4  # the first try and three retries
