"""``/v1/models``: the built-in and uploaded models, their layer tables, uploads.

An uploaded model is addressed by its id or by its name (unique per tenant). Refused uploads
are hidden from the list unless ``?all=true``, can be deleted, and expire after
``CONVSCOPE_REFUSED_MODEL_TTL`` seconds.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from pathlib import Path

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, File, String
from apiflask.validators import Length, OneOf, Regexp
from flask import g

from service.api.atlas_cache import forget as forget_atlases
from service.api.waiting import WaitQuery, wait_for
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from service.ratelimit import limit_writes
from worker.catalog import BUILTIN_MODELS
from worker.contract import MODEL_WAITING, PREPROCESS_MODES, TASK_DESCRIBE_MODEL
from worker.uploads import upload_path

bp = APIBlueprint("models", __name__, url_prefix="/v1/models", tag="models")
bp.before_request(require_tenant)
bp.before_request(limit_writes)
PUBLIC_FIELDS = ("id", "name", "status", "input_shape", "classes", "source", "preprocess",
                 "random_weights", "error")
NOT_READY = "model {!r} is still being prepared; retry"


MAX_NAME_CHARS = 100
# What the schema says of a name (so the spec says it too): no / or \, no C0 or C1 controls.
NAME_PATTERN = r"^[^/\\\x00-\x1f\x7f-\x9f]*$"
MODEL_ID = re.compile(r"m[0-9a-f]{16}")  # an upload's id: "m" and 16 hex digits


def name_problem(name: str) -> str | None:
    """What else keeps ``name`` from addressing a model in every path (``/v1/models/{name}``)
    and in the CLI: other control or format characters, spaces at its ends, only dots, or an
    id's form (ids are looked up first: such a name would address another model)."""
    return ("holds a control or format character"
            if any(unicodedata.category(c)[0] == "C" for c in name) else
            "starts or ends with a space" if name != name.strip() else
            "is only dots" if set(name) == {"."} else
            "has the form of a model id" if MODEL_ID.fullmatch(name) else None)


class UploadForm(Schema):
    file = File(required=True)
    name = String(load_default=None, validate=[
        Length(max=MAX_NAME_CHARS),
        Regexp(NAME_PATTERN, error="the name holds a / or \\ or a control character")])
    preprocess = String(load_default="raw", validate=OneOf(PREPROCESS_MODES))


class ListQuery(Schema):
    all = Boolean(load_default=False)


def public(record: dict) -> dict:
    return {key: record.get(key) for key in PUBLIC_FIELDS}


def model_record(model_id: str, describe: bool = True) -> dict:
    """The stored record of a model this tenant may see (by id, or an upload's name), or 404."""
    be = backend()
    if model_id in BUILTIN_MODELS:
        record = be.store.get_model(model_id)
        if record is None:
            if describe and be.store.claim(f"describe:{model_id}", 300):
                be.enqueue(TASK_DESCRIBE_MODEL, model_id)
            return {"id": model_id, "name": BUILTIN_MODELS[model_id], "status": "pending"}
        return record
    record = be.store.get_model(model_id)
    if record is None or record.get("tenant") != g.tenant:
        named = be.store.model_by_name(g.tenant, model_id)
        record = be.store.get_model(named) if named else None
    if record is None or record.get("tenant") != g.tenant:
        fail(404, "unknown_model", f"no model {model_id!r}")
    return record


def wait_for_model(model_id: str, seconds: float) -> dict:
    """The model's record once it is described (or refused), waiting up to ``seconds``."""
    record = model_record(model_id)
    if record.get("status") not in MODEL_WAITING:
        return record
    return wait_for(lambda: model_record(record["id"], describe=False),
                    lambda r: r.get("status") not in MODEL_WAITING, seconds, interval=0.2)


# A usable model's record, per API process, for a second: a stream of jobs on one model reads
# (and parses, layer table and all) its record once a second, not once per job. A model
# deleted meanwhile through another process is seen at most this late (its jobs then fail
# with unknown_model in the worker).
READY_SECONDS = 1.0
_ready: dict[tuple[str, str], tuple[float, dict]] = {}


def ready_model(model_id: str, seconds: float) -> dict:
    """The record of a model jobs can use now: 503 while it is prepared, 409 when refused."""
    key, now = (g.tenant, model_id), time.monotonic()
    hit = _ready.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    record = wait_for_model(model_id, seconds)
    if record.get("status") in MODEL_WAITING:
        fail(503, "model_not_ready", NOT_READY.format(model_id), headers={"Retry-After": "2"})
    if record.get("status") == "refused":
        fail(409, "model_refused", f"model {model_id!r} was refused: "
             f"{(record.get('error') or {}).get('message', 'refused')}")
    if len(_ready) > 1000:
        _ready.clear()
    _ready[key] = (now + READY_SECONDS, record)
    return record


@bp.get("")
@bp.input(ListQuery, location="query", arg_name="query")
def list_models(query: dict) -> dict:
    """Built-in models and this tenant's uploads (refused uploads only with ``?all=true``)."""
    store = backend().store
    # Listing loads nothing: a built-in model is described when it is first asked for.
    records = [model_record(i, describe=False) for i in BUILTIN_MODELS]
    for model_id in store.tenant_models(g.tenant):
        record = store.get_model(model_id)
        if record is None:  # expired
            store.forget_tenant_model(g.tenant, model_id)
        elif query["all"] or record.get("status") != "refused":
            records.append(record)
    return {"models": [public(r) for r in records]}


@bp.get("/<model_id>")
@bp.input(WaitQuery, location="query", arg_name="query")
def get_model(model_id: str, query: dict) -> dict:
    """One model, by id or name; ``?wait=S`` waits up to S seconds for it to be described."""
    return public(wait_for_model(model_id, query["wait"]))


@bp.get("/<model_id>/layers")
@bp.input(WaitQuery, location="query", arg_name="query")
def get_layers(model_id: str, query: dict) -> dict:
    """The layer table: output shapes, params, kernels, strides, padding, receptive fields,
    and the conv arithmetic (output-size and parameter formulas) of conv and pooling rows."""
    return {"layers": ready_model(model_id, query["wait"]).get("layers") or []}


def _save_upload(storage, model_id: str) -> Path:
    """Write the upload where workers read it; 413 past the size limit (nothing kept)."""
    settings = backend().settings
    target = upload_path(settings.data_dir, model_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    storage.save(target)  # no reader before the record and the task exist
    if target.stat().st_size > settings.max_model_bytes:
        target.unlink()
        fail(413, "payload_too_large",
             f"model files are limited to {settings.max_model_bytes} bytes")
    return target


def _reserve_name(name: str, model_id: str) -> None:
    """Give an explicitly chosen name to the new upload, or 409 if another model has it."""
    if name in BUILTIN_MODELS:
        fail(409, "model_name_taken", f"{name!r} is a built-in model; choose another name")
    holder = backend().store.reserve_model_name(g.tenant, name, model_id)
    if holder is not None:
        fail(409, "model_name_taken", f"you already have a model named {name!r} ({holder}); "
             "delete it first or choose another name")


@bp.post("")
@bp.input(UploadForm, location="form_and_files", arg_name="form")
@bp.input(WaitQuery, location="query", arg_name="query")
def upload_model(form: dict, query: dict) -> tuple[dict, int, dict]:
    """Upload a ``.keras`` model; a worker validates it with ``safe_mode``. Jobs may name it
    by its id or by a ``name`` given here (unique per tenant; without one, the file name's
    stem is shown as its name but does not address it)."""
    storage = form["file"]
    model_id = "m" + uuid.uuid4().hex[:16]
    if form["name"]:
        if problem := name_problem(form["name"]):
            fail(422, "invalid_name", f"the name {problem}; a model's name must address it "
                 "in a URL path")
        _reserve_name(form["name"], model_id)
    name = form["name"] or Path(storage.filename or "model.keras").stem
    path = _save_upload(storage, model_id)
    record = {"id": model_id, "name": name, "status": "validating", "tenant": g.tenant,
              "source": "upload", "preprocess": form["preprocess"], "file": path.name,
              "input_shape": None, "classes": None, "random_weights": False, "error": None}
    backend().store.put_model(model_id, record)
    backend().enqueue(TASK_DESCRIBE_MODEL, model_id)
    record = wait_for_model(model_id, query["wait"])
    location = {"Location": f"/v1/models/{model_id}"}
    if record["status"] == "refused":
        error = record.get("error") or {}
        fail(422, error.get("code", "invalid_model"), error.get("message", "model refused"))
    return public(record), (202 if record["status"] in MODEL_WAITING else 201), location


@bp.delete("/<model_id>")
def delete_model(model_id: str) -> tuple[str, int]:
    """Remove an uploaded model, by id or name (built-in models cannot be removed); workers
    drop it from memory when it is next asked for."""
    if model_id in BUILTIN_MODELS:
        fail(403, "forbidden", "built-in models cannot be removed")
    record = model_record(model_id)
    backend().store.delete_model(record["id"], g.tenant)
    forget_atlases(backend().store.r, "model", record["id"])
    for key in [k for k, (_, r) in _ready.items() if r.get("id") == record["id"]]:
        _ready.pop(key, None)
    upload_path(backend().settings.data_dir, record["id"]).unlink(missing_ok=True)
    return "", 204
