"""Long-polling: the ``?wait=S`` query every waiting endpoint takes; jobs are waited for by
their change announcements, models (rarely waited for) by re-reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from apiflask import Schema
from apiflask.fields import Float

from service.backend import backend
from service.job_events import FALLBACK_SECONDS
from worker.contract import TERMINAL

T = TypeVar("T")


class WaitQuery(Schema):
    wait = Float(load_default=0.0)


def wait_for_job(job_id: str, read: Callable[[], dict], seconds: float) -> dict:
    """The job once it has ended, or as it is after ``seconds`` (capped by ``max_wait``):
    woken by the job's own change announcements, not by polling."""
    deadline = time.monotonic() + max(0.0, min(seconds, backend().settings.max_wait))
    with backend().events.watch(job_id) as changed:
        job = read()
        while job["status"] not in TERMINAL and (left := deadline - time.monotonic()) > 0:
            changed.wait(min(left, FALLBACK_SECONDS))
            changed.clear()
            job = read()
    return job


def wait_for(read: Callable[[], T], done: Callable[[T], bool], seconds: float,
             interval: float = 0.1) -> T:
    """``read()`` until ``done`` holds or ``seconds`` (capped by ``max_wait``) have passed."""
    deadline = time.monotonic() + max(0.0, min(seconds, backend().settings.max_wait))
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value
