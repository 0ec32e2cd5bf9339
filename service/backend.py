"""The API's handles on Redis (the job store) and Celery (to enqueue tasks by name), one per
app, and :func:`backend` to reach them from a request."""

from __future__ import annotations

import logging

import redis
from apiflask import APIFlask
from celery import Celery
from flask import current_app

from service.job_events import JobEvents
from worker import wake
from worker.celery_app import make_celery
from worker.redis_client import blocking_pool, connect
from worker.settings import Settings
from worker.store import JobStore

log = logging.getLogger("convscope.api")
REDIS_CONNECTIONS = 64  # per API process
REDIS_WAIT_SECONDS = 20.0  # longest a request waits for a free connection


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Many requests wait at once (greenlets: long-polls, event streams): they share a
        # bounded set of connections, and one that finds them all busy waits its turn
        # instead of failing with "Too many connections".
        # Timeouts: a Redis that hangs (not one that refuses) gives 503s, not hung requests.
        pool = blocking_pool(
            settings.broker_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_SECONDS,
            socket_connect_timeout=2, socket_timeout=10)
        self.store = JobStore(redis.Redis(connection_pool=pool), settings.result_ttl,
                              settings.model_ttl)
        self.celery: Celery = make_celery(settings)
        # The event listener blocks reading its subscription: a client of its own, no timeout.
        self.events = JobEvents(connect(settings.broker_url))

    def enqueue(self, task: str, *args: str) -> None:
        self.celery.send_task(task, args=list(args))
        try:  # a worker serving a batch queue hands it back (a hint: it also looks by itself)
            wake.wake_workers(self.store.r)
        except redis.RedisError as exc:
            log.warning("could not wake serving workers (%s); they look within %.2f s", exc,
                        wake.IDLE_SLICE)

    def init_app(self, app: APIFlask) -> None:
        app.extensions["convscope"] = self


def backend() -> Backend:
    """The current app's :class:`Backend`."""
    return current_app.extensions["convscope"]
