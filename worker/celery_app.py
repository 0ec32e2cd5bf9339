"""The Celery app factory, configured from the shared settings.

JSON only, late acknowledgement with re-delivery when a worker dies, prefetch 1, soft and hard
time limits. Importing this module builds nothing: :func:`make_celery` builds an app, and the
module attribute ``app`` (what ``celery -A worker.celery_app`` looks up) is built from the
environment on first access. Nothing here imports TensorFlow: tasks load the engine inside the
worker's child processes, so nothing TensorFlow-related is ever forked.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from worker.contract import QUEUE, TASK_DESCRIBE_MODEL
from worker.settings import Settings, get_settings

log = logging.getLogger("convscope.worker")
HEARTBEAT_SECONDS = 5.0


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (default: the process-wide settings)."""
    settings = settings or get_settings()
    app = Celery("convscope", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit,
        task_time_limit=settings.time_limit,
        task_default_queue=QUEUE,
        broker_transport_options={"visibility_timeout": max(3600, settings.time_limit * 2)},
        broker_connection_retry_on_startup=True,
        # Broker connection lost: running tasks are canceled (their jobs' leases lapse and
        # the sweeper queues them again) rather than run twice when messages come back.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        # Task events cost a Redis publish per task state; Flower turns them on itself.
        worker_send_task_events=settings.task_events,
    )
    return app


@lru_cache(maxsize=1)
def _default_app() -> Celery:
    return make_celery()


def __getattr__(name: str) -> Celery:
    """``worker.celery_app.app``: the worker's app, built on first use (PEP 562)."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_stop = threading.Event()


def _beat(hostname: str, app: Celery) -> None:
    """Every few seconds: say this worker lives, and sweep (:mod:`worker.sweeper`)."""
    from worker.store import JobStore
    from worker.sweeper import Sweeper

    settings = get_settings()
    store = JobStore.from_url(settings.broker_url, settings.result_ttl, settings.model_ttl)
    sweeper = Sweeper(store, app.send_task, settings=settings)
    while not _stop.is_set():
        try:
            store.heartbeat(hostname)
            sweeper.sweep_if_due()
        except Exception:  # Redis may blink; keep beating
            log.warning("heartbeat or sweep failed", exc_info=True)
        _stop.wait(HEARTBEAT_SECONDS)


@worker_ready.connect
def _on_ready(sender: object = None, **_: object) -> None:
    hostname = getattr(sender, "hostname", "worker")
    app = getattr(sender, "app", None) or _default_app()
    threading.Thread(target=_beat, args=(hostname, app), daemon=True, name="heartbeat").start()
    for model_id in get_settings().describe_on_start:
        app.send_task(TASK_DESCRIBE_MODEL, args=[model_id])


@worker_shutdown.connect
def _on_shutdown(**_: object) -> None:
    _stop.set()
