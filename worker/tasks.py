"""Celery tasks: thin. Arguments are ids; the engine is imported inside the task body, so
only the worker's child processes ever load TensorFlow."""

from __future__ import annotations

import logging

from worker.celery_app import app

log = logging.getLogger("convscope.worker")


@app.task(name="convscope.run_job")
def run_job(job_id: str) -> None:
    """Run one queued job (safe to re-run: a finished job is left alone)."""
    from worker.runner import run_job as run

    run(job_id)


@app.task(name="convscope.describe_model")
def describe_model(model_id: str) -> None:
    """Compute and store a model's metadata (input shape, classes, layer table)."""
    from worker.runner import describe_model as describe

    describe(model_id)
