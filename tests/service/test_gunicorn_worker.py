"""The API's gunicorn response sends a whole body with its head in one write, byte for byte
what gunicorn's own response sends in two; streamed bodies are left to gunicorn."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from urllib.parse import urlsplit

from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from service.api.atlas import POLL_AFTER
from service.gunicorn_worker import OneWriteResponse
from service.launcher import KEEP_ALIVE, api_command
from tests.pipeline import serve_api, worker_env
from worker.settings import Settings


class Socket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class Request:
    version = (1, 1)
    method = "GET"
    headers: list = []

    def should_close(self) -> bool:
        return False


def respond(response_class: type, headers: list, body: list[bytes]) -> list[bytes]:
    sock = Socket()
    resp = response_class(Request(), sock, Config())
    resp.start_response("200 OK", headers)
    for chunk in body:
        resp.write(chunk)
    resp.close()
    return sock.writes


def test_a_whole_body_leaves_with_its_head(monkeypatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda *a: "Tue, 01 Dec 2026 06:00:00 GMT")
    body = b'{"status": "succeeded"}'
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    theirs = respond(wsgi.Response, headers, [body])
    ours = respond(OneWriteResponse, headers, [body])
    assert len(theirs) == 2 and len(ours) == 1
    assert ours[0] == b"".join(theirs)
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours[0].endswith(b"\r\n\r\n" + body)


def test_streamed_and_chunked_bodies_are_written_as_gunicorn_writes_them(monkeypatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda *a: "Tue, 01 Dec 2026 06:00:00 GMT")
    parts = [b"event: status\n\n", b"data: {}\n\n"]
    for headers in ([("Content-Type", "text/event-stream")],  # chunked
                    [("Content-Length", str(sum(map(len, parts))))]):  # length, two pieces
        assert respond(OneWriteResponse, headers, parts) == \
            respond(wsgi.Response, headers, parts)


def test_the_api_runs_on_this_worker() -> None:
    command = api_command("127.0.0.1", 8000)
    assert command[command.index("--worker-class") + 1] == \
        "service.gunicorn_worker.OneWriteGeventWorker"


def test_a_connection_idle_as_long_as_a_retry_after_is_still_open(redis_url: str,
                                                                    tmp_path: Path) -> None:
    """A client that waits out a Retry-After the API sends and asks again on its kept-alive
    connection gets its answer: the API keeps an idle connection open longer than that
    (gunicorn's default, 2 s, closed it as the client asked)."""
    from service.errors import STORE_RETRY_AFTER

    assert KEEP_ALIVE > max(POLL_AFTER, STORE_RETRY_AFTER)
    env = worker_env(Settings(redis_url=redis_url, data_dir=tmp_path / "data"))
    with serve_api(env, tmp_path / "api.log") as url:
        where = urlsplit(url)
        conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
        try:
            statuses, sockets = [], []
            for wait in (0.0, POLL_AFTER + 0.5):
                time.sleep(wait)
                conn.request("GET", "/healthz")
                answer = conn.getresponse()
                answer.read()
                statuses.append((answer.status, answer.will_close))
                sockets.append(conn.sock)
            assert statuses == [(200, False)] * 2
            assert sockets[0] is sockets[1]  # the same connection, not a new one
        finally:
            conn.close()
