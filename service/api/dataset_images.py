"""``GET /v1/datasets/{id}/images/{index}``: one image of one of the caller's datasets, its
file's bytes as stored (so a browser can show it, or send it back as a job's ``image``: the
atlas's "explain this unit" does)."""

from __future__ import annotations

import mimetypes
from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_file

from service.api.datasets import dataset_record
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from worker.datasets import open_dataset

bp = APIBlueprint("dataset_images", __name__, url_prefix="/v1/datasets", tag="datasets")
bp.before_request(require_tenant)
IMAGE = {"type": "string", "format": "binary"}
RESPONSES: dict[int | str, Any] = {
    200: {"description": "The image file as stored in the dataset",
          "content": {"image/*": {"schema": IMAGE}}},
    404: "No such dataset for this caller (`unknown_dataset`), or no image `index` in it "
         "(`not_found`)"}


@bp.get("/<dataset_id>/images/<int:index>")
@bp.doc(responses=RESPONSES)
def get_image(dataset_id: str, index: int) -> Response:
    """Image ``index`` (the order of the dataset's manifest, as ``top`` entries' ``image``)."""
    record = dataset_record(dataset_id)
    try:
        manifest = open_dataset(backend().settings.data_dir, record["id"])
    except KeyError:
        manifest = None
    if manifest is None or not 0 <= index < len(manifest):
        fail(404, "not_found", f"dataset {dataset_id!r} has no image {index}")
    root = manifest.root.resolve()
    path = (root / manifest.images[index].file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        fail(404, "not_found", f"image {index} of dataset {dataset_id!r} is gone")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = send_file(path, mimetype=kind, max_age=3600, conditional=True)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
