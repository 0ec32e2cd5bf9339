"""``GET /v1/models/{id}/layers/{layer}/atlas?dataset=ID``: the layer atlas. Per channel of
a spatial layer, its filter pattern (gradient ascent, from the worker's filter-pattern cache)
beside its top crops over one of the caller's datasets, a page of channels at a time
(``offset``, ``limit`` ≤ the most filters per job).

Nothing is computed here: the parts are jobs, made through the same path as ``POST
/v1/jobs`` (:func:`service.api.jobs.queue_job`): one ``top_examples`` job over the dataset
for every channel, and a ``filters`` job for the page's channels that have no pattern yet
(patterns already made come from the worker's cache). Which jobs hold an atlas's parts is
kept in Redis (:mod:`service.api.atlas_cache`). While any part of the page is being
computed the answer is 202 with ``Location`` of the job to follow; then 200 with URLs of the
pictures (the jobs' artifacts). A part whose job failed is answered once as that job's
problem and computed again on the next request; a canceled or expired one is computed again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import String
from apiflask.validators import Range
from flask import g, request

from service.api.atlas_cache import TOP, AtlasCache, atlas_key, pattern_field
from service.api.datasets import dataset_record
from service.api.jobs import queue_job
from service.api.models_api import ready_model
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from service.options import OptionError, find_layer
from service.query_fields import AsciiInteger
from worker.contract import DATASET_KINDS, MAX_FILTERS_PER_JOB

bp = APIBlueprint("atlas", __name__, url_prefix="/v1/models", tag="models")
bp.before_request(require_tenant)
TOP_KIND = DATASET_KINDS[0]  # "top_examples"
DEFAULT_LIMIT = 32
MODEL_WAIT = 5.0  # seconds a request waits for a built-in model to be described
FAILED = "failed:"  # a field's value after its job's failure was answered
ERROR_STATUS = {"unknown_dataset": 404, "unknown_model": 404, "internal_error": 500}
LOCATION = {"description": "the job to follow", "schema": {"type": "string"}}
POLL_AFTER = 2  # Retry-After of a pending atlas, in seconds (below the API's keep-alive)
RESPONSES: dict[int | str, Any] = {
    200: "Every part of the page is ready: per channel `pattern` and `crops` (PNG URLs) and "
         "its `top` dataset examples",
    202: {"description": "Still computing: the jobs doing it, `Location` the first to "
                         "follow; ask again when it ends",
          "content": {"application/json": {"schema": {"type": "object"}}},
          "headers": {"Location": LOCATION, "Retry-After": {"schema": {"type": "integer"}}}},
    400: "Not a spatial layer (`layer_not_spatial`), unknown layer, model of free input size",
    404: "No such model or dataset for this caller (`unknown_model`, `unknown_dataset`)",
    409: "The dataset is not ready (`dataset_not_ready`), the model was refused, or a part's "
         "job failed (its error code; the next request computes it again)",
}


class AtlasQuery(Schema):
    dataset = String(required=True, metadata={"description": "one of your datasets (ready)"})
    offset = AsciiInteger(load_default=0, validate=Range(min=0, max=1 << 20))
    limit = AsciiInteger(load_default=DEFAULT_LIMIT, validate=Range(min=1, max=MAX_FILTERS_PER_JOB))


def _layer(model_id: str, layer: str) -> tuple[dict, dict]:
    model = ready_model(model_id, MODEL_WAIT)
    try:
        return model, find_layer(model, layer, TOP_KIND)
    except OptionError as exc:
        fail(400, exc.code, str(exc))


def _ready_dataset(dataset_id: str) -> dict:
    record = dataset_record(dataset_id)
    if record.get("status") != "ready":
        fail(409, "dataset_not_ready", f"dataset {record['id']!r} is {record.get('status')}; "
             "an atlas needs a ready dataset")
    return record


class Atlas:
    """One request's atlas: the cache entry, and the jobs computing its parts."""

    def __init__(self, model: dict, row: dict, dataset: dict) -> None:
        be = backend()
        self.model, self.row, self.dataset, self.store = model, row, dataset, be.store
        self.key = atlas_key(g.tenant, model["id"], row["name"], dataset["id"])
        self.cache = AtlasCache(be.store.r, self.key, model["id"], dataset["id"])
        left = int(dataset.get("expires") or 0) - int(time.time())
        self.ttl = min(be.settings.result_ttl, left) if left > 0 else be.settings.result_ttl

    def form(self, kind: str, options: dict) -> dict:
        return {"image": [], "model": self.model["id"], "kind": kind,
                "layer": self.row["name"], "options": json.dumps(options),
                "dataset": self.dataset["id"] if kind == TOP_KIND else None}

    def jobs(self, fields: list[str], kind: str,
             options: Callable[[list[str]], dict]) -> dict[str, dict]:
        """field → the live job computing it, making one job (``kind``, ``options(fields
        without one)``) for the fields without one; a failed job is answered as its problem
        (once)."""
        named = self.cache.jobs(fields)
        ids = [named[f] for f in fields if f in named and not named[f].startswith(FAILED)]
        found = dict(zip(ids, self.store.get_jobs(ids), strict=True))
        live: dict[str, dict] = {}
        for field in fields:
            job = found.get(named.get(field, ""))
            if job is not None and job["status"] == "failed":
                self.cache.put({field: FAILED + job["id"]}, self.ttl)
                error = job.get("error") or {}
                code = error.get("code", "internal_error")
                fail(ERROR_STATUS.get(code, 409), code, f"the atlas's {kind} job {job['id']} "
                     f"failed: {error.get('message', code)}; ask again to retry")
            if job is not None and job["status"] != "canceled":
                live[field] = job
        missing = [f for f in fields if f not in live]
        if missing:
            job = self.queue([*missing, *(named.get(f, "") for f in missing)], kind,
                             options(missing))
            self.cache.put({f: job["id"] for f in missing}, self.ttl)
            live.update({f: job for f in missing})
        return live

    def queue(self, stamp: list[str], kind: str, options: dict) -> dict:
        """A new job; requests that see the same state share it (an idempotency key made
        of the atlas, the fields and the jobs they replace)."""
        key = "atlas-" + hashlib.sha256(json.dumps([self.key, stamp]).encode()).hexdigest()
        job_id, _ = queue_job(self.form(kind, options), key[:48], uuid.uuid4().hex)
        job = self.store.get_job(job_id)
        if job is None:  # expired between two lines: vanishingly rare
            fail(503, "store_unavailable", "the atlas's job vanished; retry",
                 headers={"Retry-After": "1"})
        return job


def _link(job: dict) -> str:
    return f"/v1/jobs/{job['id']}"


def _pending(jobs: list[dict], base: dict) -> tuple[dict, int, dict]:
    unique = list({j["id"]: j for j in jobs}.values())
    body = {**base, "status": "computing",
            "progress": sum(float(j.get("progress") or 0) for j in unique) / len(unique),
            "jobs": [{"id": j["id"], "kind": j["kind"], "status": j["status"],
                      "progress": j.get("progress"), "location": _link(j)} for j in unique]}
    return body, 202, {"Location": _link(unique[0]), "Retry-After": str(POLL_AFTER)}


def _channel(index: int, top: dict, top_job: dict, pattern_job: dict) -> dict:
    found = {f["index"]: f for f in (pattern_job.get("result") or {}).get("filters", [])}
    pattern = found.get(index, {})
    artifact = pattern.get("artifact", f"filter_{index}")
    return {"index": index, "dead_fraction": top.get("dead_fraction"),
            "histogram": top.get("histogram"), "top": top.get("top", []),
            "crops": f"{_link(top_job)}/artifacts/crops_{index}",
            "pattern": f"{_link(pattern_job)}/artifacts/{artifact}",
            "activation": pattern.get("activation")}


def _filters(fields: list[str]) -> dict:
    return {"filters": [int(f.partition(":")[2]) for f in fields]}


def _page(atlas: Atlas, channels: list[int], base: dict) -> tuple[dict, int, dict]:
    top_job = atlas.jobs([TOP], TOP_KIND, lambda _: {})[TOP]
    fields = [pattern_field(c) for c in channels]
    patterns = atlas.jobs(fields, "filters", _filters) if channels else {}
    waiting = [j for j in [top_job, *patterns.values()] if j["status"] != "succeeded"]
    if waiting:
        return _pending(waiting, base)
    result = top_job["result"] or {}
    tops = {c["index"]: c for c in result.get("channels", [])}
    body = {**base, "status": "ready", "images": result.get("images"), "k": result.get("k"),
            "image_size": result.get("image_size"),
            "jobs": {TOP_KIND: top_job["id"],
                     "filters": sorted({j["id"] for j in patterns.values()})},
            "channels": [_channel(c, tops.get(c, {}), top_job, patterns[pattern_field(c)])
                         for c in channels]}
    return body, 200, {}


@bp.get("/<model_id>/layers/<path:layer>/atlas")
@bp.input(AtlasQuery, location="query", arg_name="query")
@bp.doc(responses=RESPONSES)
def get_atlas(model_id: str, layer: str, query: dict) -> tuple[dict, int, dict]:
    """The layer atlas: per channel its filter pattern and its top crops over a dataset, a
    page of channels at a time; 202 + ``Location`` while parts are being computed."""
    dataset = _ready_dataset(query["dataset"])
    model, row = _layer(model_id, layer)
    total = int(row["output_shape"][-1])
    start, limit = query["offset"], query["limit"]
    channels = list(range(min(start, total), min(total, start + limit)))
    after = start + limit
    base = {"model": model["id"], "layer": row["name"], "dataset": dataset["id"],
            "offset": start, "limit": limit, "total": total,
            "next": f"{request.path}?dataset={dataset['id']}&offset={after}&limit={limit}"
            if after < total else None}
    return _page(Atlas(model, row, dataset), channels, base)
