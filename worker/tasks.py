"""Celery tasks: thin. Arguments are ids; the engine is imported inside the task body, so
only the worker's child processes ever load TensorFlow. Tasks are shared (bound to whichever
app :func:`worker.celery_app.make_celery` built), under the names in :mod:`worker.contract`."""

from __future__ import annotations

from celery import shared_task

from worker.contract import (
    TASK_DESCRIBE_MODEL,
    TASK_INGEST_DATASET,
    TASK_RUN_BATCH,
    TASK_RUN_CHUNK,
    TASK_RUN_DATASET_JOB,
    TASK_RUN_JOB,
)
from worker.tensorflow_startup import start_tensorflow


@shared_task(name=TASK_RUN_JOB, bind=True)
def run_job(self, job_id: str) -> None:
    """Run one queued job, and the jobs waiting to be computed with it (safe to re-run: a
    job that is not queued is left alone)."""
    start_tensorflow()
    from worker.runner import run_job as run

    run(job_id, self.app.send_task)


@shared_task(name=TASK_RUN_BATCH, bind=True)
def run_batch(self, batch_key: str) -> None:
    """Run the jobs waiting in one batch queue (a batch at a time)."""
    start_tensorflow()
    from worker.runner import run_batch as run

    run(batch_key, self.app.send_task)


@shared_task(name=TASK_RUN_DATASET_JOB, bind=True)
def run_dataset_job(self, job_id: str) -> None:
    """Plan a queued dataset job and send one task per chunk (safe to re-run)."""
    start_tensorflow()
    from worker.dataset_jobs import start_dataset_job

    start_dataset_job(job_id, self.app.send_task)


@shared_task(name=TASK_RUN_CHUNK, bind=True)
def run_chunk(self, job_id: str, unit: int) -> None:
    """Compute one chunk of a dataset job, or (the last unit) merge them (safe to re-run)."""
    start_tensorflow()
    from worker.dataset_jobs import run_chunk as run

    run(job_id, unit, self.app.send_task)


@shared_task(name=TASK_DESCRIBE_MODEL)
def describe_model(model_id: str) -> None:
    """Compute and store a model's metadata (input shape, classes, layer table)."""
    start_tensorflow()
    from worker.runner import describe_model as describe

    describe(model_id)


@shared_task(name=TASK_INGEST_DATASET)
def ingest_dataset(dataset_id: str) -> None:
    """Read an uploaded archive or a registered folder into a dataset (no TensorFlow)."""
    from worker.dataset_ingest import run_ingest

    run_ingest(dataset_id)
