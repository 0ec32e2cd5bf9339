"""``/v1/datasets``: image datasets for later analyses, each its tenant's own.

``POST`` takes either an archive (multipart ``file``: ``.zip``, ``.tar``, ``.tar.gz``,
``.tar.bz2``, ``.tar.xz``) or, when the operator allows it with ``CONVSCOPE_DATASET_ROOTS``,
a server folder (form field ``path``, absolute, inside one of those roots once links and
``..`` are resolved). A worker reads it (status ``processing`` → ``ready`` or ``failed``);
``?wait=S`` waits up to S seconds and answers a refusal as a problem (``unsafe_archive`` 422,
``archive_too_large`` 413, ``invalid_archive`` / ``empty_dataset`` 422). A dataset expires
after ``CONVSCOPE_DATASET_TTL`` seconds (a refused one sooner); DELETE removes its record
and its files at once.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from apiflask import APIBlueprint, Schema
from apiflask.fields import File, String
from apiflask.validators import Length
from flask import g

from service.api.atlas_cache import forget as forget_atlases
from service.api.waiting import WaitQuery, wait_for
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from service.ratelimit import limit_writes
from worker.contract import DATASET_WAITING, TASK_INGEST_DATASET
from worker.dataset_records import DatasetRecords
from worker.datasets import (
    dataset_dir,
    inside,
    is_folder,
    new_dataset_id,
    resolved,
    upload_file,
)

bp = APIBlueprint("datasets", __name__, url_prefix="/v1/datasets", tag="datasets")
bp.before_request(require_tenant)
bp.before_request(limit_writes)
PUBLIC_FIELDS = ("id", "name", "status", "images", "skipped", "skipped_count", "has_labels",
                 "has_boxes", "classes", "bytes", "source", "path", "warnings", "error",
                 "created", "expires")
REFUSAL_STATUS = {"archive_too_large": 413, "internal_error": 500}  # others: 422
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar")
NOT_FOUND = {404: "No such dataset for this caller (`unknown_dataset`)"}


class DatasetForm(Schema):
    file = File(load_default=None, metadata={"description": "a .zip or .tar(.gz) of images"})
    path = String(load_default=None, metadata={
        "description": "instead of `file`: an absolute server folder inside "
                       "CONVSCOPE_DATASET_ROOTS"})
    name = String(load_default=None, validate=Length(max=200))


def records() -> DatasetRecords:
    return DatasetRecords(backend().store.r, backend().settings.dataset_ttl)


def public(record: dict) -> dict:
    return {key: record.get(key) for key in PUBLIC_FIELDS}


def dataset_record(dataset_id: str) -> dict:
    """The record of one of this tenant's datasets, or 404 ``unknown_dataset``."""
    try:
        dataset_dir(backend().settings.data_dir, dataset_id)  # a well-formed id
        record = records().get(dataset_id)
    except KeyError:
        record = None
    if record is None or record.get("tenant") != g.tenant:
        fail(404, "unknown_dataset", f"no dataset {dataset_id!r}")
    return record


def wait_for_dataset(dataset_id: str, seconds: float) -> dict:
    return wait_for(lambda: dataset_record(dataset_id),
                    lambda r: r.get("status") not in DATASET_WAITING, seconds, interval=0.2)


@bp.get("")
def list_datasets() -> dict:
    """This tenant's datasets (ready, processing and recently refused)."""
    store, found = records(), []
    for dataset_id in store.tenant_datasets(g.tenant):
        record = store.get(dataset_id)
        if record is None:  # expired
            store.forget(g.tenant, dataset_id)
        else:
            found.append(public(record))
    return {"datasets": sorted(found, key=lambda r: r.get("created") or 0)}


@bp.get("/<dataset_id>")
@bp.input(WaitQuery, location="query", arg_name="query")
@bp.doc(responses={200: "The dataset: its status, images and what was skipped", **NOT_FOUND})
def get_dataset(dataset_id: str, query: dict) -> dict:
    """One dataset; ``?wait=S`` waits up to S seconds while it is processed."""
    return public(wait_for_dataset(dataset_id, query["wait"]))


def _server_folder(path: str) -> str:
    """``path`` resolved, if datasets may be registered from it; else 403 / 422."""
    roots = backend().settings.dataset_roots
    if not roots:
        fail(403, "path_not_allowed", "this server does not register datasets from its "
             "folders (the operator enables it with CONVSCOPE_DATASET_ROOTS)")
    if "\0" in path:  # no file system path holds one (and Path.resolve refuses it)
        fail(422, "invalid_request", "'path' holds a NUL character")
    real = resolved(path)  # None: it cannot be (a loop of links); then, its place by name
    allowed = inside(real, roots) if real is not None else any(
        Path(os.path.normpath(path)).is_relative_to(root)
        for root in [*map(Path, roots), *filter(None, map(resolved, roots))])
    if not Path(path).is_absolute() or not allowed:
        fail(403, "path_not_allowed", f"{path!r} is not inside the folders datasets may come "
             "from (an absolute path, links and '..' resolved)")
    if real is None:
        fail(422, "not_a_folder", f"{path!r} cannot be resolved (a loop of links)")
    if not is_folder(real):
        fail(422, "not_a_folder", f"{path!r} is not a folder")
    return str(real)


def _new_record(form: dict, dataset_id: str) -> dict:
    """The record of a new dataset, its upload saved where the worker reads it."""
    if (form["file"] is None) == (form["path"] is None):
        fail(422, "invalid_request", "send either an archive as 'file' or a server folder "
             "as 'path'")  # each field is valid alone: 422, not 400
    record = {"id": dataset_id, "tenant": g.tenant, "status": "processing",
              "created": int(time.time()), "images": 0, "skipped": [], "skipped_count": 0,
              "has_labels": False, "has_boxes": False, "classes": [], "bytes": 0,
              "warnings": [], "error": None, "path": None}
    if form["path"] is not None:
        record.update(source="folder", path=_server_folder(form["path"]))
        record["name"] = form["name"] or Path(record["path"]).name
        return record
    filename = Path(form["file"].filename or "dataset").name
    stem = next((filename[:-len(s)] for s in ARCHIVE_SUFFIXES if filename.endswith(s)),
                filename)
    target = upload_file(backend().settings.data_dir, dataset_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    form["file"].save(target)
    record.update(source="upload", name=form["name"] or stem)
    return record


@bp.post("")
@bp.input(DatasetForm, location="form_and_files", arg_name="form")
@bp.input(WaitQuery, location="query", arg_name="query")
@bp.doc(responses={201: "The dataset, read and ready", 202: "The dataset, still processed",
                   403: "Server folders are not allowed, or not this one (`path_not_allowed`)",
                   413: "Over the limits (`archive_too_large`, `payload_too_large`)",
                   422: "Refused (`unsafe_archive`, `invalid_archive`, `empty_dataset`, "
                        "`not_a_folder`)"})
def create_dataset(form: dict, query: dict) -> tuple[dict, int, dict]:
    """Upload an archive of images (with an optional ``labels.csv`` and ``boxes.json`` at its
    root), or register a server folder; a worker reads it."""
    dataset_id = new_dataset_id()
    records().put(_new_record(form, dataset_id))
    backend().enqueue(TASK_INGEST_DATASET, dataset_id)
    record = wait_for_dataset(dataset_id, query["wait"])
    if record["status"] == "failed":
        error = record.get("error") or {}
        code = error.get("code", "invalid_archive")
        fail(REFUSAL_STATUS.get(code, 422), code, error.get("message", "dataset refused"))
    status = 202 if record["status"] in DATASET_WAITING else 201
    return public(record), status, {"Location": f"/v1/datasets/{dataset_id}"}


@bp.delete("/<dataset_id>")
@bp.doc(responses={204: "Removed", **NOT_FOUND})
def delete_dataset(dataset_id: str) -> tuple[str, int]:
    """Remove a dataset: its record and its files (a registered folder itself is left
    alone: only the dataset's manifest goes)."""
    record = dataset_record(dataset_id)
    records().delete(record["id"], g.tenant)
    forget_atlases(backend().store.r, "dataset", record["id"])
    shutil.rmtree(dataset_dir(backend().settings.data_dir, record["id"]), ignore_errors=True)
    return "", 204
