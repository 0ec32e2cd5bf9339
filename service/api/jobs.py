"""``/v1/jobs``: submit, poll (or long-poll), fetch artifacts, cancel, list."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import nullcontext

from apiflask import APIBlueprint, Schema
from apiflask.fields import File, List, String
from apiflask.validators import OneOf, Range
from flask import Response, g, request, stream_with_context
from werkzeug.http import parse_range_header

from service.api.dataset_jobs import is_dataset_job, validated_dataset_job
from service.api.models_api import ready_model
from service.api.waiting import WaitQuery, wait_for_job
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from service.images import ImageError, decode_image, png_bytes
from service.options import OptionError, check_options, find_layer, parse_options
from service.query_fields import AsciiInteger
from service.ratelimit import limit_job_writes
from worker.batch_keys import batch_key
from worker.contract import (
    DATASET_KINDS,
    FILTER_OBJECTIVES,
    IMAGELESS_KINDS,
    KINDS,
    MAX_DIVERSITY_IMAGES,
    MAX_QUALITY_STEPS,
    OVERLAY_KINDS,
    QUALITY_BASELINES,
    SINGLE_IMAGE_KINDS,
    TARGETS,
    TASK_RUN_DATASET_JOB,
    TASK_RUN_JOB,
    TERMINAL,
)
from worker.idempotency import KEY_PATTERN, IdempotencyKeyReused
from worker.npy import npy_bytes

bp = APIBlueprint("jobs", __name__, url_prefix="/v1/jobs", tag="jobs")
MAX_LISTED = 500  # the most jobs one GET /v1/jobs lists
KEEPALIVE_SECONDS = 15.0  # an event stream sends a comment when nothing happened this long
bp.before_request(require_tenant)
bp.before_request(limit_job_writes)
PUBLIC_FIELDS = ("id", "kind", "model", "layer", "options", "status", "progress", "error",
                 "result", "created", "started", "finished", "inputs", "batch", "attempts",
                 "dataset", "chunks")


OPTIONS_HELP = (
    "a JSON object of the kind's options; every option and its default per kind: "
    "`GET /v1/contract` (`option_defaults`). `gradcam` and `saliency`: `class_index` (one, or "
    f"one per image), `target` ({' | '.join(TARGETS)}: the class, or what lowers it), and "
    "`quality`: `false` (default), `true` or an object of `baseline` "
    f"({' | '.join(QUALITY_BASELINES)}), `steps` (1..{MAX_QUALITY_STEPS}) and `seed`: each "
    "item then gets `quality` {`deletion_auc`, `insertion_auc`, `random_deletion_auc`, "
    "`random_insertion_auc`, the curves, `baseline`, `steps`, `seed`} and the artifact "
    "`quality_curves` (PNG)")
FILTERS_HELP = (
    f". `filters`: `objective` ({' | '.join(FILTER_OBJECTIVES)}): a channel's mean; one unit "
    "of it at `y`, `x` of the layer's output (default the centre); a logit or Dense unit "
    "(`filters` then name units, `layer` a flat layer, by default the model's last); what "
    f"suppresses the channel; or `n` (2..{MAX_DIVERSITY_IMAGES}) images of one channel made to "
    "differ (`diversity_weight`). Each result filter says `dead` when its channel never fired")


class JobForm(Schema):
    image = List(File(), load_default=list)
    model = String(required=True)
    kind = String(required=True, validate=OneOf(KINDS + DATASET_KINDS))
    layer = String(load_default=None)
    options = String(load_default=None, metadata={"description": OPTIONS_HELP + FILTERS_HELP})
    dataset = String(load_default=None, metadata={
        "description": "instead of `image`: the id of one of your datasets (kinds "
                       f"{', '.join(DATASET_KINDS)}); the job runs in chunks"})


class ListQuery(Schema):
    limit = AsciiInteger(load_default=50, validate=Range(min=1, max=MAX_LISTED), metadata={
        "description": f"how many of the newest jobs (1..{MAX_LISTED})"})


def public(job: dict) -> dict:
    body = {key: job.get(key) for key in PUBLIC_FIELDS}
    body["artifacts"] = sorted(job.get("artifacts") or {})
    return body


def _own_job(job_id: str) -> dict:
    job = backend().store.get_job(job_id) if job_id.isalnum() else None
    if job is None or job.get("tenant") != g.tenant:
        fail(404, "not_found", f"no job {job_id!r}")
    return job


def _decode_images(files: list, model: dict, kind: str) -> tuple[list[bytes],
                                                                list[bytes | None], list[dict]]:
    """Model-sized arrays (NPY bytes), the originals overlays are drawn on (PNG bytes, for
    the overlay kinds, None where the original is the model-sized image) and per-image info."""
    settings = backend().settings
    if len(files) > settings.max_images_per_job:
        fail(400, "too_many_images",
             f"{len(files)} images; at most {settings.max_images_per_job} per job")
    arrays, originals, infos = [], [], []
    for i, storage in enumerate(files):
        try:
            image = decode_image(storage.read(), model["input_shape"], settings.max_image_pixels,
                                 settings.max_display_pixels)
        except ImageError as exc:
            fail(413 if exc.code == "image_too_large" else 400, exc.code,
                 f"image {i} ({storage.filename}): {exc}")
        original = image.original if kind in OVERLAY_KINDS else None
        arrays.append(npy_bytes(image.pixels))
        originals.append(None if original is None else png_bytes(original))
        infos.append({"filename": storage.filename, **image.info,
                      "original_stored": original is not None})
    return arrays, originals, infos


def _check_images(kind: str, files: list) -> None:
    if kind in IMAGELESS_KINDS and files:
        fail(400, "invalid_request", f"{kind} jobs take no image")
    if kind not in IMAGELESS_KINDS and not files:
        fail(400, "missing_image", f"{kind} jobs need at least one 'image' file")
    if kind in SINGLE_IMAGE_KINDS and len(files) != 1:
        fail(400, "invalid_request", f"{kind} jobs take exactly one image")


def _validated(form: dict) -> tuple[dict, dict, dict, tuple]:
    model = ready_model(form["model"], backend().settings.max_wait)
    kind, files = form["kind"], [f for f in form["image"] if f is not None]
    _check_images(kind, files)
    try:
        options = parse_options(form["options"])
        row = find_layer(model, form["layer"], kind, options)
        options = check_options(kind, options, row, model,
                                backend().settings.max_filter_steps, len(files))
    except OptionError as exc:
        fail(400, exc.code, str(exc))
    return model, row, options, _decode_images(files, model, kind)


def queue_job(form: dict, key: str | None, new_id: str) -> tuple[str, bool]:
    """Validate a job's form (images, or a ``dataset``), store the job as ``new_id`` (or find
    the one an earlier use of the Idempotency-Key ``key`` made) and send its task; returns
    ``(job id, created)``. Every job, posted or made by another resource (the layer atlas),
    goes through here."""
    be = backend()
    dataset: dict | None = None
    inputs: tuple[list[bytes], list[bytes | None], list[dict]] = ([], [], [])
    if is_dataset_job(form):
        model, row, options, dataset = validated_dataset_job(form)
    else:
        model, row, options, inputs = _validated(form)
    arrays, originals, infos = inputs
    try:
        job_id, created, send = be.store.create_job(
            g.tenant, form["kind"], model["id"], row["name"], options, arrays, infos,
            idempotency_key=key, originals=originals, job_id=new_id,
            batch=batch_key(form["kind"], model["id"], row["name"], options),
            fingerprint=_fingerprint(form["kind"], model["id"], row["name"], options,
                                     arrays or [(dataset or {}).get("id", "").encode()])
            if key else "")
        if dataset is not None and created:  # before its task is sent
            be.store.update(job_id, dataset=dataset["id"])
    except IdempotencyKeyReused:
        fail(422, "idempotency_key_reused", f"Idempotency-Key {key!r} was used before "
             "with a different request; use a new key for a new job")
    if send:  # a job joining a batch queue whose message is on its way needs none
        be.enqueue(TASK_RUN_JOB if dataset is None else TASK_RUN_DATASET_JOB, job_id)
    return job_id, created


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key``, if it sends one; 400 for one the spec's pattern
    refuses (two keys, an empty one, controls or non-ASCII characters, over 255)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not re.fullmatch(KEY_PATTERN.strip("^$"), key):
        fail(400, "bad_request", "send one Idempotency-Key of 1 to 255 visible ASCII "
             f"characters or spaces, no comma; got {key[:80]!r}")
    return key


@bp.post("")
@bp.input(JobForm, location="form_and_files", arg_name="form")
@bp.input(WaitQuery, location="query", arg_name="query")
def submit(form: dict, query: dict) -> tuple[dict, int, dict]:
    """Queue a job: 202 with ``Location``; ``?wait=S`` answers like GET after up to S s."""
    new_id = uuid.uuid4().hex
    # A waiter for the new job is registered before the job exists: no end can be missed,
    # and there is nothing to read until the job changes.
    with backend().events.watch(new_id) if query["wait"] > 0 else nullcontext() as changed:
        job_id, created = queue_job(form, idempotency_key(), new_id)
        location = {"Location": f"/v1/jobs/{job_id}"}
        if query["wait"] > 0:
            job = wait_for_job(job_id, lambda: _own_job(job_id), query["wait"],
                               changed if created else None)
            return public(job), (200 if job["status"] in TERMINAL else 202), location
    return {"id": job_id, "status": "queued" if created else _own_job(job_id)["status"]}, 202, \
        location


def _fingerprint(kind: str, model: str, layer: str, options: dict, arrays: list[bytes]) -> str:
    """What makes two submissions the same request: kind, model, layer, options, images."""
    digest = hashlib.sha256(json.dumps([kind, model, layer, options], sort_keys=True).encode())
    for array in arrays:
        digest.update(hashlib.sha256(array).digest())
    return digest.hexdigest()[:32]


def _wait(job_id: str, seconds: float) -> dict:
    return wait_for_job(job_id, lambda: _own_job(job_id), seconds)


@bp.get("/<job_id>")
@bp.input(WaitQuery, location="query", arg_name="query")
def get_job(job_id: str, query: dict) -> dict:
    """A job's status, progress, error and result; ``?wait=S`` long-polls."""
    return public(_wait(job_id, query["wait"]))


@bp.get("/<job_id>/events")
@bp.doc(responses={200: "text/event-stream: one `status` event per change of status or "
                        "progress (data: the job as GET returns it), ending after the job ends"})
def events(job_id: str) -> Response:
    """Server-Sent Events of a job's status and progress until it ends."""
    _own_job(job_id)
    store, events = backend().store, backend().events

    def stream() -> Iterator[str]:
        with events.watch(job_id) as changed:
            last = None
            while (job := store.get_job(job_id)) is not None:
                if (job["status"], job["progress"]) != last:
                    last = (job["status"], job["progress"])
                    yield f"event: status\ndata: {json.dumps(public(job))}\n\n"
                if job["status"] in TERMINAL:
                    return
                if not changed.wait(KEEPALIVE_SECONDS):
                    yield ": keep-alive\n\n"
                changed.clear()

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _one_range(environ: dict) -> dict:
    """The request as the artifact's answer reads it: a ``Range`` other than one range of
    bytes (several ranges, another unit, a malformed value) is ignored, so the whole artifact
    is answered (RFC 9110 lets a server ignore a Range, and says to ignore unknown units);
    werkzeug answered each with 416."""
    ranges = parse_range_header(environ.get("HTTP_RANGE"))
    if environ.get("HTTP_RANGE") is None or (ranges is not None and ranges.units == "bytes"
                                             and len(ranges.ranges) == 1):
        return environ
    return {key: value for key, value in environ.items() if key != "HTTP_RANGE"}


@bp.get("/<job_id>/artifacts/<name>")
@bp.doc(responses={200: "image/png, application/x-npy or text/csv bytes"})
def get_artifact(job_id: str, name: str) -> Response:
    """The bytes of one artifact (a part of them for a ``Range``; 304 for an ``If-None-Match``
    naming its ``ETag``)."""
    job = _own_job(job_id)
    content_type = (job.get("artifacts") or {}).get(name)
    data = backend().store.get_artifact(job_id, name) if content_type else None
    if data is None:
        fail(404, "not_found", f"job {job_id} has no artifact {name!r}")
    response = Response(data, mimetype=content_type,
                        headers={"Cache-Control": "private, max-age=86400"})
    response.set_etag(hashlib.blake2b(data, digest_size=16).hexdigest())
    response.make_conditional(_one_range(request.environ), accept_ranges=True,
                              complete_length=len(data))
    return response  # changed in place: 206 with the range asked for, or 304


@bp.delete("/<job_id>")
def cancel(job_id: str) -> tuple[dict, int]:
    """Cancel a queued or running job (a running gradient ascent stops within seconds)."""
    job = _own_job(job_id)
    if job["status"] in TERMINAL:
        return public(job), 200
    backend().store.cancel(job_id)
    return public(_own_job(job_id)), 202


@bp.get("")
@bp.input(ListQuery, location="query", arg_name="query")
def list_jobs(query: dict) -> dict:
    """The caller's recent jobs, newest first."""
    return {"jobs": [public(j) for j in backend().store.tenant_jobs(g.tenant, query["limit"])]}


