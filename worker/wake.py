"""Waking a worker that serves a batch queue, without a task message.

A worker that has just computed a batch keeps serving its batch queue for a while
(:func:`worker.runner._serve`): while it does, the queue's marker stays set, so new jobs of the
queue send no Celery message, and the worker blocks on the queue's *wake list* (``BLPOP``).
Every job stored into a batch queue pushes a token there, in the same round trip that stores
it, so the job is claimed about a Redis round trip after it was stored, instead of after a
task message's trip through the broker, Celery's main process and the pool's pipe (measured:
6.3 ms of a 24 ms job, one job at a time).

A worker serving a queue must not keep other work waiting: it hands its queue back as soon as
a task message waits in the task queue. The API pushes a token to the *global* wake list after
each task message it sends, so a serving worker notices at once; messages sent by workers
(dataset chunks, a queue's hand-back) are noticed within :data:`IDLE_SLICE` seconds.

The lists hold at most one token each and expire: a token is only a hint to look again (the
batch queue and the task queue stay the truth), so a lost or stale one costs a look.
"""

from __future__ import annotations

import redis

from worker.contract import KEY_PREFIX

WAKE = f"{KEY_PREFIX}:wake"  # the global wake list: a task message was sent
TOKEN_SECONDS = 5  # an unread token lapses after this long
IDLE_SLICE = 0.25  # seconds a serving worker waits on its wake lists before looking again


def wake_key(batch: str) -> str:
    """The wake list of the batch queue ``batch``."""
    return f"{KEY_PREFIX}:wake:{batch}"


def push(pipe: redis.client.Pipeline, key: str) -> None:
    """Queue on ``pipe``: one token in the wake list ``key`` (never more than one). A new
    job's token is pushed the same way by :data:`worker.create_job_script.CREATE_JOB`."""
    pipe.rpush(key, b"1")
    pipe.ltrim(key, -1, -1)
    pipe.expire(key, TOKEN_SECONDS)


def wake_workers(r: redis.Redis) -> None:
    """Tell serving workers that a task message waits (after sending it)."""
    pipe = r.pipeline(transaction=False)
    push(pipe, WAKE)
    pipe.execute()


def wait(r: redis.Redis, batch: str, seconds: float) -> bool:
    """Block until a token arrives for the batch queue ``batch`` or in the global list, or
    ``seconds`` pass; True if woken."""
    timeout = max(0.01, min(IDLE_SLICE, seconds))
    return r.blpop([wake_key(batch), WAKE], timeout=timeout) is not None
