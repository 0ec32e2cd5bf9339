"""Dataset jobs (kinds ``top_examples``, ``class_cam``, ``quality``), fanned out: a plan,
chunks on any worker, one merge. Each kind supplies its chunk partial, merge and finish
(:class:`worker.dataset_kinds.DatasetKind`); the machinery here is the same for all.

1. **Plan** (the job's own ``convscope.run_job`` task, dispatched here by
   :func:`worker.runner.run_job`): claim the job as for any kind (queued → running, a job
   lease), count the dataset's chunks of ``options.chunk_images`` images, store ``chunks`` on
   the job, send one ``convscope.run_chunk(job_id, i)`` per chunk, then hand the job over to
   its chunks (out of the running set, so the job sweeper leaves it alone). A planner that
   dies before that is swept like any job: the job is queued and planned again, and chunks
   sent twice are claimed once.
2. **Chunk** ``i``: claim it (:class:`worker.chunks.ChunkRecords`; nothing happens if the
   job was canceled or ended, or the chunk is done or held), read its images
   (:func:`worker.dataset_inputs.read_chunk`; unreadable ones are counted ``corrupt``),
   compute the kind's partial (for ``top_examples`` the layer's
   :class:`models.top_examples_scan.TopExamplesScanner`, cached per process and model, with
   the crops of its top lists cut while the images are decoded), store it and count the
   chunk done, progress = chunks done / chunks.
3. **Merge** (unit ``n``, run by the chunk that completed the set, or sent again by the
   sweeper): merge the partials in any order (each kind's merge is associative and
   commutative), finish with the kind's result and artifacts (``top_examples``:
   :func:`models.top_examples.finish` with the receptive-field boxes, the manifest's files,
   ``crops_<channel>`` drawn from the crops the partials carried: no image is read again),
   and delete the partials once the result is stored. A job that ends otherwise (canceled, or
   failed by a chunk) stores no partial after its end, and the first of its chunks to find it
   ended deletes those stored before (:meth:`worker.chunks.ChunkRecords.drop_once`).

Memory (``top_examples``): a chunk holds ``chunk_images`` images as float32 at the model's
input size and the layer's output for them. Its partial in Redis
(:meth:`models.top_examples.TopExamplesPartial.to_bytes`: JSON, then the crops' pixels raw)
is about ``1.2 KB + C × (8·k + 40) + P × (FH·FW·D + 16)`` bytes for ``C`` channels,
``P <= C·k`` distinct units on its top lists (a unit that is the maximum of several channels
is stored once), the layer's largest receptive field ``FH × FW`` and ``D`` colours: 1.48 MB
for ``shapes`` ``conv4`` (64 channels, ``k`` 9, chunks of 125: ``P`` about 335 crops of
38 × 38 × 3), against 8.4 KB without crops. That is a full partial; a done chunk adds its
lists' scores to the job's floors (:meth:`worker.chunks.ChunkRecords.raise_floors`) and later
chunks keep only what beats them (about ``k / i`` entries per channel for chunk ``i`` of a
shuffled dataset), so the partials, all kept until the merge deletes them, add up to about
``ln(chunks)`` full ones (5,000 images in 40 chunks: 7.9 MB where 59 MB without floors).
The merge (``top_examples``: :func:`models.top_examples.merge_many`) holds at most 17
partials at a time (a group of 16 and the result so far) and reads no image.
``class_cam`` partials hold one input-sized map per class, ``quality`` partials a few
numbers and two curves per method; a ``quality`` chunk also holds ``2·(steps + 1)``
perturbed copies of a few images at a time (:func:`models.quality.deletion_insertion`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache, reduce

from models.receptive_field import NoReceptiveFieldError
from worker.cam_dataset_kinds import CLASS_CAM, QUALITY
from worker.chunks import ADDED, COMPLETED, ChunkRecords, member
from worker.claims import LEASE_SECONDS
from worker.contract import TASK_RUN_CHUNK
from worker.dataset_inputs import DatasetGone, manifest, read_chunk
from worker.dataset_kinds import TOP_EXAMPLES, DatasetKind
from worker.datasets import DatasetMoved
from worker.failures import engine_error, error_code, interruption
from worker.runner import _claims, _store
from worker.store import RUNNING, JobStore

log = logging.getLogger("convscope.worker")
Send = Callable[..., object]


@lru_cache(maxsize=1)
def _chunks() -> ChunkRecords:
    return ChunkRecords(_store())


KINDS: dict[str, DatasetKind] = {"top_examples": TOP_EXAMPLES, "class_cam": CLASS_CAM,
                                 "quality": QUALITY}


def _fail(store: JobStore, job_id: str, exc: BaseException) -> None:
    if isinstance(exc, (DatasetGone, DatasetMoved)):
        code = "unknown_dataset"
    elif isinstance(exc, NoReceptiveFieldError):
        code = "layer_not_spatial"
    else:
        code = error_code(exc)
    if code == "internal_error":
        log.exception("dataset job %s failed", job_id, exc_info=exc)
    store.transition(job_id, "failed", ("running",),
                     error={"code": code, "message": str(engine_error(exc)).strip("'\"")[:500]})


def _drop_if_ended(records: ChunkRecords, job: dict | None, chunks: int) -> None:
    """Drop the partials of a job that ended without its merge (canceled or failed)."""
    if job is not None and job.get("status") in ("canceled", "failed"):
        records.drop_once(job["id"], chunks)


def start_dataset_job(job_id: str, send: Send) -> None:
    """Plan a queued dataset job and send its chunks (see the module's step 1)."""
    store, claims = _store(), _claims()
    job = store.get_job(job_id)
    if job is None or claims.claim(job) != 1:
        return  # gone, ended, or already planned (a message delivered twice)
    with claims.held([job_id]):
        try:
            images = len(manifest(job["dataset"]))
        except DatasetGone as exc:
            _fail(store, job_id, exc)
            return
        size = job["options"]["chunk_images"]
        chunks = max(1, -(-images // size))
        store.update(job_id, chunks=chunks)
        for i in range(chunks):
            send(TASK_RUN_CHUNK, args=[job_id, i])
        store.r.zrem(RUNNING, job_id)  # from here, its chunks' leases keep it alive


def run_chunk(job_id: str, unit: int, send: Send) -> None:
    """Compute chunk ``unit`` of the job (or, for ``unit == chunks``, its merge); safe to
    re-run: a chunk done, held elsewhere, or of a job no longer running is left alone."""
    store, claims, records = _store(), _claims(), _chunks()
    job = store.get_job(job_id)
    if job is None or job.get("chunks") is None:
        return
    chunks = int(job["chunks"])
    if job.get("status") != "running":
        _drop_if_ended(records, job, chunks)  # the done chunks' partials: unread now
        return
    if unit >= chunks:
        _merge(job, chunks)
        return
    if records.claim(job_id, unit, claims.owner, LEASE_SECONDS) != 1:
        return
    with claims.held([member(job_id, unit)]):
        try:
            kind = KINDS[job["kind"]]
            partial = kind.partial(job, read_chunk(job, unit))
        except Exception as exc:
            records.release(job_id, unit)
            stop = interruption(exc)
            if stop is not None and not isinstance(stop, Exception):
                raise stop from exc  # a shutdown: its lease lapses, the chunk is sent again
            _fail(store, job_id, exc)
            records.drop_once(job_id, chunks)
            return
        counted = records.done(job_id, unit, chunks, kind.dumps(partial))
        if kind.floors is not None and counted == ADDED:  # each chunk's values once
            records.raise_floors(job_id, kind.floors(partial), job["options"].get("k", 0))
    if counted == COMPLETED:
        _merge(job, chunks)
    elif not counted:  # done before, or the job ended while this chunk computed
        _drop_if_ended(records, store.get_job(job_id), chunks)


def _merged(kind: DatasetKind, records: ChunkRecords, job_id: str, chunks: int) -> object:
    def load(raw: bytes | None) -> object:
        if raw is None:
            raise RuntimeError("a chunk's partial result expired before the merge")
        return kind.loads(raw)

    loaded = (load(raw) for raw in records.partials(job_id, chunks))
    return kind.merge_many(loaded) if kind.merge_many else reduce(kind.merge, loaded)


def _merge(job: dict, chunks: int) -> None:
    """Unit ``chunks``: merge every chunk's partial and finish the job (once)."""
    store, claims, records, job_id = _store(), _claims(), _chunks(), job["id"]
    if records.claim(job_id, chunks, claims.owner, LEASE_SECONDS) != 1:
        _drop_if_ended(records, store.get_job(job_id), chunks)  # before its merge started
        return
    with claims.held([member(job_id, chunks)]):
        try:
            if records.done_count(job_id) < chunks:
                return  # sent again too early: the last chunk's run merges
            kind = KINDS[job["kind"]]
            result, artifacts = kind.finish(job, _merged(kind, records, job_id, chunks), chunks)
            store.finish_many([(job_id, result, artifacts, {})], computed=job["kind"])
            records.drop_partials(job_id, chunks)
        except Exception as exc:
            _fail(store, job_id, exc)
            records.drop_once(job_id, chunks)
        finally:
            records.release(job_id, chunks)

