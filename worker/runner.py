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
from PIL import Image

from models.errors import InvalidInputError
from models.explain import LayerNotConvError, UnitOutOfRangeError
from models.filters import AscentCanceled
from models.graph import LayerNotFoundError, last_spatial_layer
from models.layer_table import layer_table
from models.safe_load import InvalidModelError, UnsafeModelError
from models.zoo import BUILTIN, ModelInfo, UnknownModelError
from worker.contract import ACTIVE, RESIZE
from worker.kinds import KINDS, JobContext
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


INPUT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (UnknownModelError, "unknown_model"), (LayerNotFoundError, "unknown_layer"),
    (LayerNotConvError, "layer_not_conv"), (UnitOutOfRangeError, "position_out_of_range"),
    (InvalidInputError, "invalid_input"),
    (SoftTimeLimitExceeded, "time_limit"),
)


def _error_code(exc: BaseException) -> str:
    """The job's error code: the engine's own input errors by type, anything else internal."""
    for cls, code in INPUT_ERRORS:
        if isinstance(exc, cls):
            return code
    return "internal_error"


def _decode(raw: bytes | None, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"{what} has expired")
    return np.load(io.BytesIO(raw), allow_pickle=False)


def _decode_png(raw: bytes | None, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"{what} has expired")
    with Image.open(io.BytesIO(raw)) as img:
        pixels = np.asarray(img, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _keep_record_current(store: JobStore, model_id: str, info: ModelInfo) -> None:
    """Describe a built-in model again when it was reloaded as something else (trained, or
    given weights since): the list and the UI must not keep saying "random weights"."""
    if model_id not in BUILTIN:
        return
    record = store.get_model(model_id) or {}
    if any(record.get(k) != v for k, v in info.to_dict().items()):
        describe_model(model_id)


def _context(store: JobStore, job: dict) -> JobContext:
    """The job's model, layer, options and images, with progress and cancel hooks."""
    job_id, cache = job["id"], _cache()
    if not job.get("layer"):
        raise InvalidInputError("the job names no layer")
    images, originals = [], []
    for i, info in enumerate(job.get("inputs") or []):
        images.append(_decode(store.get_input(job_id, i), f"input image {i}"))
        originals.append(_decode_png(store.get_original(job_id, i), f"original image {i}")
                         if info.get("original_stored") else images[-1])
    loaded = cache.get(job["model"])
    _keep_record_current(store, job["model"], loaded.info)
    return JobContext(
        loaded=loaded, layer=job["layer"], options=job.get("options") or {},
        tool=lambda key, build: cache.tool(job["model"], key, build),
        progress=lambda fraction: store.set_progress(job_id, fraction),
        should_cancel=lambda: store.is_canceled(job_id), images=images, originals=originals,
        resize=((job.get("inputs") or [{}])[0]).get("resize", RESIZE))


def _compute(store: JobStore, job: dict) -> tuple[dict, dict]:
    run = KINDS.get(job["kind"])
    if run is None:
        raise InvalidInputError(f"unknown kind {job['kind']!r}")
    ctx = _context(store, job)
    result, artifacts = run(ctx)
    # Maps of a model with random weights show its architecture, not learned features.
    result["random_weights"] = bool(ctx.loaded.info.random_weights)
    return result, artifacts


def run_job(job_id: str) -> None:
    """Run a job to an end state; never raises (the worker must survive any input)."""
    store = _store()
    job = store.get_job(job_id)
    if job is None or not store.transition(job_id, "running", ACTIVE):
        return  # expired, canceled before start, or already finished
    started = time.monotonic()
    try:
        result, artifacts = _compute(store, job)
        store.finish(job_id, result, artifacts)  # not if canceled meanwhile
    except AscentCanceled:
        log.info("job %s canceled while running", job_id)
    except BaseException as exc:  # report every failure on the job
        code = _error_code(exc)
        if code == "internal_error":
            log.exception("job %s failed", job_id)
        store.transition(job_id, "failed", ("running",),
                         error={"code": code, "message": str(exc)[:500]})
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
        _refuse(store, record, code, exc)
        return
    except Exception as exc:  # any loader failure refuses the model
        log.exception("describing %s failed", model_id)
        _refuse(store, record, "invalid_model", exc)
        return
    info = loaded.info.to_dict()
    record.update(info)
    record.update(layers=layer_table(loaded.model), error=None,
                  default_layer=_default_layer(loaded.model),
                  num_classes=int(loaded.model.outputs[0].shape[-1]))
    store.put_model(model_id, record)


def _refuse(store: JobStore, record: dict, code: str, exc: Exception) -> None:
    """Record a refused model (it expires after ``refused_model_ttl``) and drop its file."""
    record.update(status="refused", error={"code": code, "message": str(exc)[:500]})
    store.put_model(record["id"], record, ttl=get_settings().refused_model_ttl)
    if record.get("tenant") is not None:
        _cache().upload_path(record["id"]).unlink(missing_ok=True)


def _default_layer(model) -> str | None:
    try:
        return last_spatial_layer(model)
    except LayerNotFoundError:
        return None
