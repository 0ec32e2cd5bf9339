"""The API's handles on Redis (the job store) and Celery (to enqueue tasks by name), one per
app, and :func:`backend` to reach them from a request."""

from __future__ import annotations

from apiflask import APIFlask
from celery import Celery
from flask import current_app

from service.job_events import JobEvents
from worker.celery_app import make_celery
from worker.settings import Settings
from worker.store import JobStore


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore.from_url(settings.broker_url, settings.result_ttl,
                                       settings.model_ttl)
        self.celery: Celery = make_celery(settings)
        self.events = JobEvents(self.store.r)

    def enqueue(self, task: str, *args: str) -> None:
        self.celery.send_task(task, args=list(args))

    def init_app(self, app: APIFlask) -> None:
        app.extensions["convscope"] = self


def backend() -> Backend:
    """The current app's :class:`Backend`."""
    return current_app.extensions["convscope"]
