"""``GET /v1/datasets/{id}/images/{index}``: one image of one of the caller's datasets, its
file's bytes as stored (so a browser can show it, or send it back as a job's ``image``: the
atlas's "explain this unit" does)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_file
from PIL import Image, UnidentifiedImageError

from service.api.datasets import dataset_record
from service.auth import require_tenant
from service.backend import backend
from service.errors import fail
from worker.datasets import FORMATS, DatasetMoved, Manifest, open_dataset

bp = APIBlueprint("dataset_images", __name__, url_prefix="/v1/datasets", tag="datasets")
bp.before_request(require_tenant)
IMAGE = {"type": "string", "format": "binary"}
RESPONSES: dict[int | str, Any] = {
    200: {"description": "The image file as stored in the dataset",
          "content": {"image/*": {"schema": IMAGE}}},
    404: "No such dataset for this caller (`unknown_dataset`), or no image `index` in it, "
         "or that file is gone or no longer an image (`not_found`)"}


@bp.get("/<dataset_id>/images/<int:index>")
@bp.doc(responses=RESPONSES)
def get_image(dataset_id: str, index: int) -> Response:
    """Image ``index`` (the order of the dataset's manifest, as ``top`` entries' ``image``)."""
    record = dataset_record(dataset_id)
    settings = backend().settings
    try:
        manifest = open_dataset(settings.data_dir, record["id"], settings.dataset_roots)
    except KeyError:
        manifest = None
    if manifest is None or not 0 <= index < len(manifest):
        fail(404, "not_found", f"dataset {dataset_id!r} has no image {index}")
    path, mimetype = _image_file(manifest, index)
    if path is None or mimetype is None:
        fail(404, "not_found", f"image {index} of dataset {dataset_id!r} is gone, or no "
             "longer an image")
    name = "".join(c if c.isprintable() else "_" for c in path.name)  # for its header
    response = send_file(path, mimetype=mimetype, max_age=3600, conditional=True,
                         download_name=name)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _image_file(manifest: Manifest, index: int) -> tuple[Path | None, str | None]:
    """Image ``index``'s file (links followed, kept inside the dataset's folder, which must
    itself still be where datasets may come from) and its media type; None for what is
    gone or is no image now."""
    try:
        root = manifest.real_root()
        path = (root / manifest.images[index].file).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None, None
    except (DatasetMoved, OSError, RuntimeError):  # RuntimeError: a loop of links
        return None, None
    return path, _image_type(path)


def _image_type(path: Path) -> str | None:
    """The media type of the image format the file holds (its header read, not its name: a
    GIF named ``x.html`` is served as ``image/gif``, never as a page of this origin); None
    when it holds none (changed since the dataset was read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as img:  # the header only
                fmt = "JPEG" if img.format == "MPO" else img.format  # a camera's JPEG
                return Image.MIME.get(fmt or "")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None
