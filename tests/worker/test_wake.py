"""The wake lists (worker/wake.py) on a real Redis: a job stored into a batch queue leaves a
token there in the same round trip, a waiter returns as soon as a token arrives (for its own
queue or the global list) and not for another queue's, and a list never holds more than one
token, nor keeps it forever."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.pipeline import empty_database
from worker import wake
from worker.store import JobStore


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    with empty_database(redis_url, "the wake tests") as url:
        yield JobStore.from_url(url, ttl=600)


def test_a_job_joining_a_batch_queue_leaves_one_token(store: JobStore) -> None:
    for _ in range(3):
        store.create_job("public", "gradcam", "shapes", "conv4", {}, [b"x"], [{}], batch="key")
    store.create_job("public", "filters", "shapes", "conv4", {}, [], [], batch=None)
    assert store.r.lrange(wake.wake_key("key"), 0, -1) == [b"1"]
    assert 0 < store.r.ttl(wake.wake_key("key")) <= wake.TOKEN_SECONDS
    assert not store.r.exists(wake.WAKE)  # a job without a batch key wakes nobody here
    wake.wake_workers(store.r)  # what the API does after sending a task message
    wake.wake_workers(store.r)
    assert store.r.lrange(wake.WAKE, 0, -1) == [b"1"]
    assert 0 < store.r.ttl(wake.WAKE) <= wake.TOKEN_SECONDS


def test_a_waiter_takes_a_token_at_once_or_times_out(store: JobStore) -> None:
    store.create_job("public", "gradcam", "shapes", "conv4", {}, [b"x"], [{}], batch="key")
    assert wake.wait(store.r, "key", 5.0)  # the job's token
    assert not store.r.exists(wake.wake_key("key"))  # taken
    wake.wake_workers(store.r)
    assert wake.wait(store.r, "key", 5.0)  # a task message waits: the global token
    store.create_job("public", "gradcam", "shapes", "conv4", {}, [b"x"], [{}], batch="other")
    assert not wake.wait(store.r, "key", 0.05)  # another queue's token is not this one's
    assert store.r.llen(wake.wake_key("other")) == 1


def test_a_blocked_waiter_is_woken_by_a_new_job(store: JobStore) -> None:
    """A waiter looks again every slice (wake.IDLE_SLICE) until the job's token arrives."""
    woken: list[bool] = []

    def waiter() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if wake.wait(store.r, "key", 30.0):
                woken.append(True)
                return

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.6)  # blocked in BLPOP, past a slice or two
    assert woken == []
    store.create_job("public", "gradcam", "shapes", "conv4", {}, [b"x"], [{}], batch="key")
    thread.join(10)
    assert woken == [True]
    assert not store.r.exists(wake.wake_key("key"))  # the token was taken
