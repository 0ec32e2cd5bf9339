"""What a worker process does for a job or a model: load, compute, store, report.

Imported only inside task bodies (so only in the worker's child processes): it imports the
engine, and with it TensorFlow.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from functools import lru_cache, partial

import numpy as np
from PIL import Image

from models.errors import InvalidInputError
from models.filters import AscentCanceled
from models.graph import LayerNotFoundError, class_count
from models.heads import last_spatial_layer, output_layer, too_small
from models.layer_table import layer_table
from models.safe_load import InvalidModelError, UnsafeModelError
from models.zoo import BUILTIN, LoadedModel, UnknownModelError
from worker import wake
from worker.batches import run_together
from worker.claims import Claims
from worker.contract import QUEUE, RESIZE, TASK_RUN_BATCH, TASK_RUN_DATASET_JOB
from worker.failures import INTERRUPTIONS, engine_error, error_code, interruption
from worker.kind_base import JobContext
from worker.kinds import KINDS
from worker.model_cache import ModelCache
from worker.npy import load_npy
from worker.settings import get_settings
from worker.store import KICK_SECONDS, JobStore

log = logging.getLogger("convscope.worker")


_RECORD_CHECKED: dict[str, LoadedModel] = {}  # built-in model id -> the load looked at


@lru_cache(maxsize=1)
def _store() -> JobStore:
    s = get_settings()
    return JobStore.from_url(s.broker_url, s.result_ttl, s.model_ttl)


@lru_cache(maxsize=1)
def _cache() -> ModelCache:
    return ModelCache(get_settings(), _store().get_model)


def _decode(raw: bytes | None, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"{what} has expired")
    return load_npy(raw)


def _decode_png(raw: bytes | None, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"{what} has expired")
    with Image.open(io.BytesIO(raw)) as img:
        pixels = np.asarray(img, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _keep_record_current(store: JobStore, model_id: str, loaded: LoadedModel) -> None:
    """Describe a built-in model again when it was reloaded as something else (trained, or
    given weights since): the list and the UI must not keep saying "random weights". Looked
    at once per load, not per job."""
    if model_id not in BUILTIN or _RECORD_CHECKED.get(model_id) is loaded:
        return
    _RECORD_CHECKED[model_id] = loaded
    info = loaded.info
    record = store.get_model(model_id) or {}
    if any(record.get(k) != v for k, v in info.to_dict().items()):
        describe_model(model_id)


def _context(store: JobStore, job: dict,
             stored: tuple[list[bytes | None], list[bytes | None]] | None = None) -> JobContext:
    """The job's model, layer, options and images, with progress and cancel hooks; its
    inputs and originals from ``stored`` (read with other jobs'), else read here."""
    job_id, cache = job["id"], _cache()
    if not job.get("layer"):
        raise InvalidInputError("the job names no layer")
    infos = job.get("inputs") or []
    arrays, stored_originals = stored or store.get_job_inputs([job])[0]
    images = [_decode(raw, f"input image {i}") for i, raw in enumerate(arrays)]
    originals = [_decode_png(stored_originals[i], f"original image {i}")
                 if info.get("original_stored") else image
                 for i, (info, image) in enumerate(zip(infos, images, strict=True))]
    loaded = cache.get(job["model"])
    _check_sizes(job["model"], loaded, images)
    return JobContext(
        loaded=loaded, layer=job["layer"], options=job.get("options") or {},
        tool=lambda key, build: cache.tool(job["model"], key, build),
        progress=lambda fraction: store.set_progress(job_id, fraction),
        should_cancel=lambda: store.is_canceled(job_id), images=images, originals=originals,
        resize=(infos or [{}])[0].get("resize", RESIZE))


def _check_sizes(model_id: str, loaded: LoadedModel, images: list[np.ndarray]) -> None:
    """Refuse an image a model of free input size cannot take (too small for a layer, say):
    TensorFlow's own error, raised mid-computation, would be an internal one. Each size is
    looked at once per loaded model."""
    if None not in loaded.info.input_shape[:2]:
        return
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        reason = _cache().tool(model_id, ("too_small", height, width),
                               partial(_too_small, height=height, width=width))
        if reason:
            raise InvalidInputError(f"input image {i} ({width}×{height}) cannot go through "
                                    f"the model: {reason}")


def _too_small(loaded: LoadedModel, height: int, width: int) -> str | None:
    return too_small(loaded.model, height, width)


@lru_cache(maxsize=1)
def _claims() -> Claims:
    return Claims(_store())


def _gather(store: JobStore, claims: Claims, key: str, first: dict | None) -> list[str]:
    """Queued jobs of the batch queue ``key`` that can share ``first``'s model call, claimed
    (up to the batch caps; after ``batch_delay_ms`` a second look for late arrivals when the
    batch is not full)."""
    settings = get_settings()
    inputs = (first or {}).get("inputs") or []
    room = settings.batch_max_jobs - (first is not None)
    images = settings.batch_max_images - len(inputs)
    pixels = settings.batch_max_pixels - sum(h * w for h, w in
                                             (i.get("resized_size", (0, 0)) for i in inputs))
    ids = claims.claim_companions(key, room, images, pixels, first=first is None)
    if settings.batch_delay_ms > 0 and len(ids) < room:
        time.sleep(settings.batch_delay_ms / 1000)
        used = sum(len((store.get_job(i) or {}).get("inputs") or []) for i in ids)
        ids += claims.claim_companions(key, room - len(ids), images - used, pixels)
    return ids


def run_job(job_id: str, send: Callable[..., object]) -> None:
    """Run a queued job, and the queued jobs it can share a model call with, to their end
    states; never raises for a job's sake (the worker must survive any input). A job that is
    not queued (running elsewhere, ended, expired) is left alone, but its batch queue is still
    served: later jobs of the queue sent no message of their own. A job queued again after
    its worker died runs alone."""
    store, claims = _store(), _claims()
    job = store.get_job(job_id)
    if job is None:
        return
    if job.get("dataset"):  # planned by its own task, then fanned out in chunks
        send(TASK_RUN_DATASET_JOB, args=[job_id])
        return
    key = None if job.get("attempts") else job.get("batch_key")
    first = {**job, "status": "running"} if claims.claim(job) == 1 else None
    _serve(store, claims, key, first, send)


def run_batch(key: str, send: Callable[..., object]) -> None:
    """Run the jobs waiting in the batch queue ``key``."""
    _serve(_store(), _claims(), key, None, send)


# A worker serving a batch queue keeps serving it, batch after batch, while no other task
# waits in the task queue, for up to this long; new jobs of the queue send no message
# meanwhile (its marker stays set). Each batch saved a task message and its trip through
# Celery's main process (16 clients: 0.3-0.6 ms per job, and the worker idle between). When
# the queue is empty, the worker waits on its wake list (worker/wake.py) and claims the next
# job as soon as it is stored: one job at a time, that trip was 6.3 ms of a 24 ms job.
DRAIN_SECONDS = 2.0


def _serve(store: JobStore, claims: Claims, key: str | None, first: dict | None,
           send: Callable[..., object]) -> None:
    """Compute ``first`` and its companions, then (with a batch queue ``key``) further
    batches of the queue, as they come, while :data:`DRAIN_SECONDS` last and nothing else
    waits; then hand the queue back: its marker unset, and a message of its own (to the back
    of the task queue) if jobs still wait there."""
    if not key:
        _compute(store, claims, None, first)
        return
    queue, marker = store.batch_queue(key), store.kick_key(key)
    deadline = time.monotonic() + DRAIN_SECONDS
    store.r.set(marker, b"1", ex=KICK_SECONDS)  # held: new jobs of the queue send nothing
    if not _compute(store, claims, key, first):  # a message with nothing to do: no waiting
        deadline = 0.0
    while (left := deadline - time.monotonic()) > 0:
        pipe = store.r.pipeline(transaction=True)  # tokens read with the lengths they signal
        pipe.llen(queue)
        pipe.llen(QUEUE)
        pipe.set(marker, b"1", ex=KICK_SECONDS)
        pipe.delete(wake.wake_key(key), wake.WAKE)
        waiting, others, *_ = pipe.execute()
        if others:
            break
        if waiting:
            _compute(store, claims, key, None)
        else:
            wake.wait(store.r, key, left)
    store.r.delete(marker)  # from here, a new job sends its own message
    if store.r.llen(queue) and store.r.set(marker, b"1", nx=True, ex=KICK_SECONDS):
        send(TASK_RUN_BATCH, args=[key])


def _compute(store: JobStore, claims: Claims, key: str | None, first: dict | None) -> bool:
    """Compute ``first`` and the companions gathered from ``key``'s queue together; False
    if there was nothing to compute."""
    ids = _gather(store, claims, key, first) if key else []
    jobs = [j for j in [first, *(store.get_jobs(ids) if ids else [])] if j is not None]
    if not jobs:
        return False
    started = time.monotonic()
    try:
        with claims.held([j["id"] for j in jobs]):
            _run_jobs(store, jobs)
    finally:
        store.record_duration(jobs[0]["kind"], time.monotonic() - started, len(jobs))
    return True


def _run_jobs(store: JobStore, jobs: list[dict]) -> None:
    """Compute ``jobs`` (one kind) together; if that fails, each alone, so a bad job fails
    alone. Each ends succeeded, failed, or (if canceled meanwhile) as it was."""
    ready = []
    stored = store.get_job_inputs(jobs)  # every job's images in one round trip
    for job, own in zip(jobs, stored, strict=True):
        try:
            ready.append((job, _context(store, job, own)))
        except BaseException as exc:
            _fail(store, job, exc)
    for model_id, loaded in {job["model"]: ctx.loaded for job, ctx in ready}.items():
        _keep_record_current(store, model_id, loaded)
    if len(ready) > 1:
        ids = [job["id"] for job, _ in ready]
        try:
            outputs = run_together(KINDS[ready[0][0]["kind"]], [ctx for _, ctx in ready],
                                   progress=lambda fraction: store.set_progress(ids, fraction))
        except Exception:
            log.warning("batch of %d %s jobs failed; running each alone", len(ready),
                        ready[0][0]["kind"], exc_info=True)
        else:
            store.finish_many([_finished(job, ctx, result, artifacts, batch=len(ready))
                               for (job, ctx), (result, artifacts) in zip(ready, outputs,
                                                                          strict=True)],
                              computed=ready[0][0]["kind"])
            return
    for job, ctx in ready:
        _run_one(store, job, ctx)


def _run_one(store: JobStore, job: dict, ctx: JobContext) -> None:
    try:
        run = KINDS.get(job["kind"])
        if run is None:
            raise InvalidInputError(f"unknown kind {job['kind']!r}")
        result, artifacts = run(ctx)
        store.finish_many([_finished(job, ctx, result, artifacts, batch=1)],
                          computed=job["kind"])
    except AscentCanceled:
        log.info("job %s canceled while running", job["id"])
    except BaseException as exc:
        _fail(store, job, exc)


def _finished(job: dict, ctx: JobContext, result: dict, artifacts: dict,
              batch: int) -> tuple[str, dict, dict, dict]:
    """What ``store.finish_many`` stores for a job (nothing if it was canceled meanwhile)."""
    # Maps of a model with random weights show its architecture, not learned features.
    result["random_weights"] = bool(ctx.loaded.info.random_weights)
    return job["id"], result, artifacts, {"batch": batch}


def _fail(store: JobStore, job: dict, exc: BaseException) -> None:
    """Report any failure on the job; re-raise what is not an ``Exception`` (a time limit,
    a shutdown) after recording it."""
    exc = interruption(exc) or exc
    if isinstance(exc, INTERRUPTIONS):
        # Not the job's fault: Redis went away mid-job, or the worker is being stopped (a
        # cold shutdown, or Celery canceling tasks when it lost the broker). The job stays
        # running, its lease is dropped when this run ends, and the sweeper queues it again
        # (attempts counted).
        log.warning("job %s interrupted (%r); it will be queued again", job["id"], exc)
        if not isinstance(exc, Exception):
            raise exc
        return
    code = error_code(exc)
    if code == "internal_error":
        log.exception("job %s failed", job["id"], exc_info=exc)
    store.transition(job["id"], "failed", ("running",),
                     error={"code": code, "message": str(engine_error(exc))[:500]})
    if not isinstance(exc, Exception):
        raise exc


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
                  output_layer=output_layer(loaded.model),
                  num_classes=class_count(loaded.model))
    if not store.put_model(model_id, record, replace_only=model_id not in BUILTIN):
        _cache().upload_path(model_id).unlink(missing_ok=True)  # deleted meanwhile


def _refuse(store: JobStore, record: dict, code: str, exc: Exception) -> None:
    """Record a refused model (it expires after ``refused_model_ttl``) and drop its file."""
    record.update(status="refused", error={"code": code, "message": str(exc)[:500]})
    store.put_model(record["id"], record, ttl=get_settings().refused_model_ttl,
                    replace_only=record["id"] not in BUILTIN)
    if record.get("tenant") is not None or record.get("file"):
        _cache().upload_path(record["id"]).unlink(missing_ok=True)


def _default_layer(model) -> str | None:
    try:
        return last_spatial_layer(model)
    except LayerNotFoundError:
        return None
