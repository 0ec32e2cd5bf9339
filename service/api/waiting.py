"""Long-polling: the ``?wait=S`` query every waiting endpoint takes; jobs are waited for by
their change announcements, models (rarely waited for) by re-reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

from apiflask import Schema

from service.backend import backend
from service.job_events import FALLBACK_SECONDS, Change
from service.query_fields import AsciiFloat
from worker.contract import TERMINAL

T = TypeVar("T")


class WaitQuery(Schema):
    wait = AsciiFloat(load_default=0.0)


def wait_for_job(job_id: str, read: Callable[[], dict], seconds: float,
                 changed: Change | None = None) -> dict:
    """The job once it has ended, or as it is after ``seconds`` (capped by ``max_wait``):
    woken by the job's own change announcements, not by polling. Announcements of a job
    still under way are not read (only the last state is answered); one of an end is.

    ``changed``: a watch registered before the job was made (it is queued, so there is
    nothing to read until it changes)."""
    deadline = time.monotonic() + max(0.0, min(seconds, backend().settings.max_wait))
    with nullcontext(changed) if changed else backend().events.watch(job_id) as changes:
        job, current = (None, False) if changed else (read(), True)
        while job is None or job["status"] not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                return job if job is not None and current else read()
            woken = changes.wait(min(left, FALLBACK_SECONDS))
            changes.clear()  # before looking at ``ended``: a later announcement sets both
            if changes.ended or not woken:  # an end, or the fallback's time
                changes.ended = False
                job, current = read(), True
            else:
                current = False
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
