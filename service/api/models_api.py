"""``/v1/models``: the built-in and uploaded models, their layer tables, uploads."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from apiflask import APIBlueprint, Schema
from apiflask.fields import File, Float, String
from apiflask.validators import OneOf
from flask import g

from service.api import backend
from service.auth import require_tenant
from service.errors import fail
from service.ratelimit import limit_writes
from worker.catalog import BUILTIN_MODELS

bp = APIBlueprint("models", __name__, url_prefix="/v1/models", tag="models")
bp.before_request(require_tenant)
bp.before_request(limit_writes)
PUBLIC_FIELDS = ("id", "name", "status", "input_shape", "classes", "source", "preprocess",
                 "error")
WAITING = ("pending", "validating")


class WaitQuery(Schema):
    wait = Float(load_default=0.0)


class UploadForm(Schema):
    file = File(required=True)
    name = String(load_default=None)
    preprocess = String(load_default="raw", validate=OneOf(["raw", "unit", "tf", "caffe",
                                                            "torch"]))


def public(record: dict) -> dict:
    return {key: record.get(key) for key in PUBLIC_FIELDS}


def model_record(model_id: str, describe: bool = True) -> dict:
    """The stored record of a model this tenant may see, or 404 (unknown_model)."""
    be = backend()
    record = be.store.get_model(model_id)
    if model_id in BUILTIN_MODELS:
        if record is None:
            if describe and be.store.claim(f"describe:{model_id}", 300):
                be.enqueue("convscope.describe_model", model_id)
            return {"id": model_id, "name": BUILTIN_MODELS[model_id], "status": "pending"}
        return record
    if record is None or record.get("tenant") != g.tenant:
        fail(404, "unknown_model", f"no model {model_id!r}")
    return record


def wait_for_model(model_id: str, seconds: float) -> dict:
    """Poll until the model is described (or refused), up to ``seconds``."""
    deadline = time.monotonic() + max(0.0, min(seconds, backend().settings.max_wait))
    record = model_record(model_id)
    while record.get("status") in WAITING and time.monotonic() < deadline:
        time.sleep(0.2)
        record = model_record(model_id, describe=False)
    return record


@bp.get("")
def list_models() -> dict:
    """Built-in models and this tenant's uploads."""
    store = backend().store
    ids = list(BUILTIN_MODELS) + store.tenant_models(g.tenant)
    # Listing does not load anything: a model is described when it is first asked for.
    return {"models": [public(model_record(i, describe=False)) for i in ids]}


@bp.get("/<model_id>")
@bp.input(WaitQuery, location="query", arg_name="query")
def get_model(model_id: str, query: dict) -> dict:
    """One model; ``?wait=S`` waits up to S seconds for it to be described."""
    return public(wait_for_model(model_id, query["wait"]))


@bp.get("/<model_id>/layers")
@bp.input(WaitQuery, location="query", arg_name="query")
def get_layers(model_id: str, query: dict) -> dict:
    """The layer table: output shapes, params, kernels, strides, padding, receptive fields."""
    record = wait_for_model(model_id, query["wait"])
    if record.get("status") in WAITING:
        fail(503, "model_not_ready", f"model {model_id!r} is still being prepared; retry",
             headers={"Retry-After": "2"})
    if record.get("status") == "refused":
        fail(409, "model_refused", (record.get("error") or {}).get("message", "refused"))
    return {"layers": record.get("layers") or []}


def _save_upload(storage, model_id: str) -> Path:
    settings = backend().settings
    folder = Path(settings.data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model_id}.keras"
    tmp = folder / f".{model_id}.part"
    storage.save(tmp)
    if tmp.stat().st_size > settings.max_model_bytes:
        tmp.unlink()
        fail(413, "payload_too_large", f"model files are limited to {settings.max_model_bytes} "
             "bytes")
    os.replace(tmp, target)
    return target


@bp.post("")
@bp.input(UploadForm, location="form_and_files", arg_name="form")
@bp.input(WaitQuery, location="query", arg_name="query")
def upload_model(form: dict, query: dict) -> tuple[dict, int, dict]:
    """Upload a ``.keras`` model; a worker validates it with ``safe_mode``."""
    model_id = "m" + uuid.uuid4().hex[:16]
    storage = form["file"]
    path = _save_upload(storage, model_id)
    name = form["name"] or Path(storage.filename or "model.keras").stem
    record = {"id": model_id, "name": name, "status": "validating", "tenant": g.tenant,
              "source": "upload", "preprocess": form["preprocess"], "file": path.name,
              "input_shape": None, "classes": None, "error": None}
    backend().store.put_model(model_id, record)
    backend().enqueue("convscope.describe_model", model_id)
    record = wait_for_model(model_id, query["wait"])
    location = {"Location": f"/v1/models/{model_id}"}
    if record["status"] == "refused":
        error = record.get("error") or {}
        fail(422, error.get("code", "invalid_model"), error.get("message", "model refused"))
    return public(record), (202 if record["status"] in WAITING else 201), location


@bp.delete("/<model_id>")
def delete_model(model_id: str) -> tuple[str, int]:
    """Remove an uploaded model (built-in models cannot be removed)."""
    if model_id in BUILTIN_MODELS:
        fail(403, "forbidden", "built-in models cannot be removed")
    record = model_record(model_id)
    backend().store.delete_model(model_id, g.tenant)
    path = Path(backend().settings.data_dir) / "uploads" / record.get("file", "")
    if record.get("file") and path.exists():
        path.unlink()
    return "", 204
