"""Nobody starved by slow clients, against the launcher's own gunicorn (one worker process):
500 open long-polls and 150 slow-header (slowloris) connections hold no request thread, so
``/healthz`` answers, new jobs are accepted, and a long-poll still ends when its job does.

Before: gunicorn's 32 threads per worker were all held by waiters and everything timed out.
The timeouts below only bound a failure; nothing here measures how fast an answer came."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import requests

from tests.pipeline import serve_api, worker_env
from worker.store import JobStore

WAITERS = 500
SLOW_HEADERS = 150


@contextmanager
def open_connections(url: str, count: int, request: bytes) -> Iterator[list[socket.socket]]:
    host, port = url.removeprefix("http://").split(":")
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
            sock.sendall(request)
            socks.append(sock)
        yield socks


def test_waiters_and_slow_clients_starve_nobody(settings, worker, tmp_path) -> None:
    store = JobStore.from_url(settings.redis_url)
    # A job nobody computes (no task message is sent for it): its long-polls wait it out.
    waited = store.create_job("public", "filters", "shapes", "conv1", {}, [], []).id
    with serve_api(worker_env(settings), tmp_path / "api.log") as url:
        poll = f"GET /v1/jobs/{waited}?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "  # headers never finished
        with open_connections(url, WAITERS, poll) as waiters, \
                open_connections(url, SLOW_HEADERS, slow):
            started = time.perf_counter()
            assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
            print(f"\n/healthz with {WAITERS} long-polls and {SLOW_HEADERS} slow-header "
                  f"connections open: {1000 * (time.perf_counter() - started):.0f} ms")
            job = requests.post(f"{url}/v1/jobs?wait=60", timeout=60, data={
                "model": "shapes", "kind": "filters", "layer": "conv1",
                "options": '{"filters": [0], "steps": 2}'})
            assert job.status_code == 200 and job.json()["status"] == "succeeded", job.text
            store.cancel(waited)  # the waiters' job ends: each long-poll answers with it
            for sock in waiters[:20]:
                head = sock.recv(65536)
                assert head.startswith(b"HTTP/1.1 200"), head[:600]
                assert b'"canceled"' in head or b"canceled" in sock.recv(65536)
