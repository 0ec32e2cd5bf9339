"""What a worker process does for a job or a model: load, compute, store, report.

Imported only inside task bodies (so only in the worker's child processes): it imports the
engine, and with it TensorFlow.
"""

from __future__ import annotations

import io
import logging
import time
from functools import lru_cache

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from models.explain import LayerNotConvError
from models.filters import AscentCanceled
from models.graph import LayerNotFoundError, last_spatial_layer
from models.layer_table import layer_table
from models.safe_load import InvalidModelError, UnsafeModelError
from models.zoo import BUILTIN, UnknownModelError
from worker import kinds
from worker.model_cache import ModelCache
from worker.settings import get_settings
from worker.store import JobStore

log = logging.getLogger("convscope.worker")


@lru_cache(maxsize=1)
def _store() -> JobStore:
    s = get_settings()
    return JobStore.from_url(s.broker_url, s.result_ttl, s.model_ttl)


@lru_cache(maxsize=1)
def _cache() -> ModelCache:
    return ModelCache(get_settings(), _store().get_model)


def _error_code(exc: BaseException) -> str:
    for cls, code in ((UnknownModelError, "unknown_model"), (LayerNotFoundError, "unknown_layer"),
                      (LayerNotConvError, "layer_not_conv"), (IndexError, "out_of_range"),
                      (SoftTimeLimitExceeded, "time_limit"), (ValueError, "invalid_input")):
        if isinstance(exc, cls):
            return code
    return "internal_error"


def _inputs(store: JobStore, job: dict) -> list[np.ndarray]:
    images = []
    for i in range(len(job.get("inputs") or [])):
        raw = store.get_input(job["id"], i)
        if raw is None:
            raise ValueError(f"input image {i} has expired")
        images.append(np.load(io.BytesIO(raw), allow_pickle=False))
    return images


def _compute(store: JobStore, job: dict) -> tuple[dict, dict]:
    job_id, kind, options = job["id"], job["kind"], job.get("options") or {}
    cache = _cache()
    loaded = cache.get(job["model"])
    layer = job.get("layer") or last_spatial_layer(loaded.model)

    def tool(key: tuple, build):  # local adapter
        return cache.tool(job["model"], key, build)

    def progress(fraction: float) -> None:
        store.set_progress(job_id, fraction)

    if kind == "filters":
        return kinds.run_filters(loaded, tool, layer, options, progress,
                                 lambda: store.is_canceled(job_id))
    images = _inputs(store, job)
    if kind == "activations":
        return kinds.run_activations(loaded, tool, layer, options, images, progress)
    if kind == "gradcam":
        return kinds.run_gradcam(loaded, tool, layer, options, images, progress)
    if kind == "explain":
        return kinds.run_explain(loaded, layer, options, images)
    raise ValueError(f"unknown kind {kind!r}")


def run_job(job_id: str) -> None:
    """Run a job to an end state; never raises (the worker must survive any input)."""
    store = _store()
    job = store.get_job(job_id)
    if job is None or not store.transition(job_id, "running", ("queued", "running")):
        return  # expired, canceled before start, or already finished
    started = time.monotonic()
    try:
        result, artifacts = _compute(store, job)
        if store.is_canceled(job_id):
            return  # canceled while computing: keep nothing
        if artifacts:
            store.put_artifacts(job_id, artifacts)
        store.update(job_id, result=result, progress=1.0)
        store.transition(job_id, "succeeded", ("running",))
    except AscentCanceled:
        log.info("job %s canceled while running", job_id)
    except BaseException as exc:  # report every failure on the job
        code = _error_code(exc)
        if code == "internal_error":
            log.exception("job %s failed", job_id)
        store.update(job_id, error={"code": code, "message": str(exc)[:500]})
        store.transition(job_id, "failed", ("running",))
        if not isinstance(exc, Exception):
            raise
    finally:
        store.record_duration(job["kind"], time.monotonic() - started)


def describe_model(model_id: str) -> None:
    """Load a model and store its metadata and layer table (refusals recorded, not raised)."""
    store = _store()
    record = store.get_model(model_id) or {"id": model_id, "tenant": None}
    if model_id not in BUILTIN and record.get("tenant") is None and "file" not in record:
        return
    try:
        loaded = _cache().get(model_id)
    except (UnsafeModelError, InvalidModelError, UnknownModelError) as exc:
        code = "unsafe_model" if isinstance(exc, UnsafeModelError) else "invalid_model"
        record.update(status="refused", error={"code": code, "message": str(exc)[:500]})
        store.put_model(model_id, record)
        _cache().upload_path(model_id).unlink(missing_ok=True)
        return
    except Exception as exc:  # any loader failure refuses the model
        log.exception("describing %s failed", model_id)
        record.update(status="refused", error={"code": "invalid_model", "message": str(exc)[:500]})
        store.put_model(model_id, record)
        return
    info = loaded.info.to_dict()
    record.update(info)
    record.update(status="ready" if info["status"] == "ready" else info["status"],
                  layers=layer_table(loaded.model), error=None,
                  default_layer=_default_layer(loaded.model),
                  num_classes=int(loaded.model.outputs[0].shape[-1]))
    store.put_model(model_id, record)


def _default_layer(model) -> str | None:
    try:
        return last_spatial_layer(model)
    except LayerNotFoundError:
        return None
