"""Liveness, readiness and Prometheus metrics.

``/readyz`` says why it is not ready (``reason``: Redis unreachable, or no worker with a fresh
heartbeat) and carries ``Retry-After``. ``/metrics`` shows every tenant's counters, so it is
an operator's: see :func:`service.auth.require_operator`."""

from __future__ import annotations

import redis
from apiflask import APIBlueprint
from flask import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from service.auth import require_operator
from service.backend import backend
from service.errors import STORE_RETRY_AFTER
from worker.contract import QUEUE

bp = APIBlueprint("health", __name__, tag="health")


@bp.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict, int, dict]:
    """Redis answers and at least one worker is alive; else 503 saying why (``reason``)."""
    store = backend().store
    retry = {"Retry-After": str(STORE_RETRY_AFTER)}
    try:
        store.r.ping()
        workers = store.live_workers()
    except redis.RedisError as exc:  # any Redis failure means "not ready"
        return {"status": "unavailable", "redis": "unreachable", "workers": 0,
                "reason": f"redis unreachable: {exc}"}, 503, retry
    if not workers:
        return {"status": "unavailable", "redis": "ok", "workers": 0,
                "reason": "no live worker: no Celery worker has sent a heartbeat lately"}, \
            503, retry
    return {"status": "ok", "redis": "ok", "workers": len(workers)}, 200, {}


class StoreCollector:
    """Reads job counters, durations and queue depth from Redis at scrape time."""

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        stats = self.store.stats()
        jobs = CounterMetricFamily("convscope_jobs", "Job status transitions by kind and status",
                                   labels=["kind", "status"])
        for key, value in sorted(stats["jobs"].items()):
            kind, _, status = key.partition("|")
            jobs.add_metric([kind, status], value)
        yield jobs
        total = CounterMetricFamily("convscope_job_duration_seconds",
                                    "Time workers spent on jobs, by kind", labels=["kind"])
        for kind, seconds in sorted(stats["duration_sum"].items()):
            total.add_metric([kind], seconds)
        yield total
        count = CounterMetricFamily("convscope_job_runs", "Jobs run by workers, by kind",
                                    labels=["kind"])
        for kind, n in sorted(stats["duration_count"].items()):
            count.add_metric([kind], n)
        yield count
        yield GaugeMetricFamily("convscope_queue_depth", "Tasks waiting in the queue",
                                value=self.store.r.llen(QUEUE))
        yield GaugeMetricFamily("convscope_workers_alive", "Workers with a fresh heartbeat",
                                value=len(self.store.live_workers()))


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics: jobs by kind and status, durations, queue depth."""
    require_operator()
    registry = CollectorRegistry()
    registry.register(StoreCollector(backend().store))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
