"""Dataset jobs (kind ``top_examples``), fanned out: a plan, chunks on any worker, one merge.

1. **Plan** (the job's own ``convscope.run_job`` task, dispatched here by
   :func:`worker.runner.run_job`): claim the job as for any kind (queued → running, a job
   lease), count the dataset's chunks of ``options.chunk_images`` images, store ``chunks`` on
   the job, send one ``convscope.run_chunk(job_id, i)`` per chunk, then hand the job over to
   its chunks (out of the running set, so the job sweeper leaves it alone). A planner that
   dies before that is swept like any job: the job is queued and planned again, and chunks
   sent twice are claimed once.
2. **Chunk** ``i``: claim it (:class:`worker.chunks.ChunkRecords`; nothing happens if the
   job was canceled or ended, or the chunk is done or held), read its images
   (:func:`worker.datasets.read_images`; unreadable ones are counted ``corrupt``), run the
   layer's :class:`models.top_examples_scan.TopExamplesScanner` (cached per process and
   model), store the partial and count the chunk done, progress = chunks done / chunks.
3. **Merge** (unit ``n``, run by the chunk that completed the set, or sent again by the
   sweeper): merge the partials in any order (:func:`models.top_examples.merge` is
   associative and commutative), :func:`models.top_examples.finish` with the receptive-field
   boxes, map image indices to the manifest's files, render ``crops_<channel>``, finish.

Memory: a chunk holds ``chunk_images`` images as float32 at the model's input size and the
layer's output for them; the merge holds two partials at a time (about
``channels × (28·k + 488)`` bytes each) and one channel's top images while rendering.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import lru_cache, reduce
from pathlib import Path

import numpy as np

from models.receptive_field import NoReceptiveFieldError
from models.top_examples import TopExamplesPartial, finish, merge
from models.top_examples_scan import TopExamplesScanner
from models.zoo import LoadedModel
from worker.chunks import ChunkRecords, member
from worker.claims import LEASE_SECONDS
from worker.contract import TASK_RUN_CHUNK
from worker.dataset_crops import PNG, crops_png, fit
from worker.datasets import Manifest, dataset_dir, open_dataset, read_images
from worker.runner import _cache, _claims, _error_code, _store
from worker.settings import get_settings
from worker.store import RUNNING, JobStore

log = logging.getLogger("convscope.worker")
Send = Callable[..., object]


class DatasetGone(KeyError):
    """The job's dataset was deleted or expired."""


@lru_cache(maxsize=1)
def _chunks() -> ChunkRecords:
    return ChunkRecords(_store())


@lru_cache(maxsize=8)
def _manifest_at(dataset_id: str, stamp: int) -> Manifest:
    return open_dataset(get_settings().data_dir, dataset_id)


def _manifest(dataset_id: str) -> Manifest:
    """The dataset's manifest, read once per process (again if it changed)."""
    path = dataset_dir(get_settings().data_dir, dataset_id) / "manifest.json"
    try:
        return _manifest_at(dataset_id, Path(path).stat().st_mtime_ns)
    except (KeyError, FileNotFoundError):
        raise DatasetGone(f"dataset {dataset_id!r} was deleted or has expired") from None


def _fail(store: JobStore, job_id: str, exc: BaseException) -> None:
    if isinstance(exc, DatasetGone):
        code = "unknown_dataset"
    elif isinstance(exc, NoReceptiveFieldError):
        code = "layer_not_spatial"
    else:
        code = _error_code(exc)
    if code == "internal_error":
        log.exception("dataset job %s failed", job_id, exc_info=exc)
    store.transition(job_id, "failed", ("running",),
                     error={"code": code, "message": str(exc).strip("'\"")[:500]})


def start_dataset_job(job_id: str, send: Send) -> None:
    """Plan a queued dataset job and send its chunks (see the module's step 1)."""
    store, claims = _store(), _claims()
    job = store.get_job(job_id)
    if job is None or claims.claim(job) != 1:
        return  # gone, ended, or already planned (a message delivered twice)
    with claims.held([job_id]):
        try:
            images = len(_manifest(job["dataset"]))
        except DatasetGone as exc:
            _fail(store, job_id, exc)
            return
        size = job["options"]["chunk_images"]
        chunks = max(1, -(-images // size))
        store.update(job_id, chunks=chunks)
        for i in range(chunks):
            send(TASK_RUN_CHUNK, args=[job_id, i])
        store.r.zrem(RUNNING, job_id)  # from here, its chunks' leases keep it alive


def _scanner(job: dict) -> TopExamplesScanner:
    def build(loaded: LoadedModel) -> TopExamplesScanner:
        return TopExamplesScanner(loaded.model, job["layer"], loaded.info.preprocess)

    return _cache().tool(job["model"], ("top_examples", job["layer"]), build)


def _input_shape(job: dict) -> list[int]:
    """``[H, W, C]`` of the job's model (fixed: the API refuses free-size models)."""
    return [int(n or 0) for n in _cache().get(job["model"]).info.input_shape]


def _partial(job: dict, chunk: int) -> TopExamplesPartial:
    """Chunk ``chunk``'s partial: its readable images through the layer, the rest corrupt."""
    options, settings = job["options"], get_settings()
    size = options["chunk_images"]
    reads = read_images(_manifest(job["dataset"]), chunk * size, (chunk + 1) * size,
                        settings.max_image_pixels)
    scanner = _scanner(job)
    shape = _input_shape(job)
    good = [(r.image.index, r.pixels) for r in reads if r.pixels is not None]
    pixels = np.stack([fit(p, shape) for _, p in good]) if good else \
        np.zeros((0, *shape), np.uint8)
    return scanner.partial(pixels.astype(np.float32), [i for i, _ in good],
                           channels=options["channels"], k=options["k"],
                           corrupt=len(reads) - len(good))


def run_chunk(job_id: str, unit: int, send: Send) -> None:
    """Compute chunk ``unit`` of the job (or, for ``unit == chunks``, its merge); safe to
    re-run: a chunk done, held elsewhere, or of a job no longer running is left alone."""
    store, claims, records = _store(), _claims(), _chunks()
    job = store.get_job(job_id)
    if job is None or job.get("status") != "running" or job.get("chunks") is None:
        return
    chunks = int(job["chunks"])
    if unit >= chunks:
        _merge(job, chunks)
        return
    if records.claim(job_id, unit, claims.owner, LEASE_SECONDS) != 1:
        return
    with claims.held([member(job_id, unit)]):
        try:
            partial = _partial(job, unit)
        except Exception as exc:
            records.release(job_id, unit)
            _fail(store, job_id, exc)
            return
        last = records.done(job_id, unit, chunks, _dumps(partial))
    if last:
        _merge(job, chunks)


def _dumps(partial: TopExamplesPartial) -> str:
    return json.dumps(partial.to_dict())


def _merged(records: ChunkRecords, job_id: str, chunks: int) -> TopExamplesPartial:
    def load(raw: bytes | None) -> TopExamplesPartial:
        if raw is None:
            raise RuntimeError("a chunk's partial result expired before the merge")
        return TopExamplesPartial.from_dict(json.loads(raw))

    return reduce(merge, (load(raw) for raw in records.partials(job_id, chunks)))


def _merge(job: dict, chunks: int) -> None:
    """Unit ``chunks``: merge every chunk's partial and finish the job (once)."""
    store, claims, records, job_id = _store(), _claims(), _chunks(), job["id"]
    if records.claim(job_id, chunks, claims.owner, LEASE_SECONDS) != 1:
        return
    with claims.held([member(job_id, chunks)]):
        try:
            if records.done_count(job_id) < chunks:
                return  # sent again too early: the last chunk's run merges
            result, artifacts = _result(job, _merged(records, job_id, chunks), chunks)
            store.finish_many([(job_id, result, artifacts, {})], computed=job["kind"])
        except Exception as exc:
            _fail(store, job_id, exc)
        finally:
            records.release(job_id, chunks)


def _result(job: dict, partial: TopExamplesPartial,
            chunks: int) -> tuple[dict, dict[str, tuple[bytes, str]]]:
    """The public result (top lists with the manifest's files) and the crop pictures."""
    manifest, loaded = _manifest(job["dataset"]), _cache().get(job["model"])
    shape = _input_shape(job)
    channels = finish(partial, _scanner(job).grid())
    for channel in channels:
        for top in channel["top"]:
            top["file"] = manifest.images[top["image"]].file
    max_pixels = get_settings().max_image_pixels
    artifacts = {f"crops_{c['index']}": (crops_png(manifest, c, shape, max_pixels), PNG)
                 for c in channels}
    result = {"dataset": job["dataset"], "images": partial.seen, "corrupt": partial.corrupt,
              "chunks": chunks, "k": partial.k, "image_size": shape[:2],
              "channels": channels, "random_weights": bool(loaded.info.random_weights)}
    return result, artifacts
