"""What each dataset-job kind supplies to the plan → chunks → merge machinery of
:mod:`worker.dataset_jobs`: a chunk's partial, an associative merge of two partials, their
JSON, and the finish (public result and artifacts). ``top_examples`` is here; ``class_cam``
and ``quality`` in :mod:`worker.cam_dataset_kinds`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.top_examples import TopExamplesPartial, finish, merge, merge_many
from models.top_examples_scan import TopExamplesScanner
from models.zoo import LoadedModel
from worker.chunks import ChunkRecords
from worker.dataset_crops import PNG, crops_png, strip_png
from worker.dataset_inputs import ChunkImages, input_shape, manifest
from worker.datasets import Manifest
from worker.runner import _cache, _store
from worker.settings import get_settings

Artifacts = dict[str, tuple[bytes, str]]  # name -> (bytes, content type)


@dataclass(frozen=True)
class DatasetKind:
    """``partial(job, chunk images)``; ``merge(a, b)`` (associative and commutative);
    ``dumps(partial) -> str | bytes`` and ``loads(bytes)``; ``finish(job, partial, chunks) ->
    (result, artifacts)``."""

    partial: Callable[[dict, ChunkImages], Any]
    merge: Callable[[Any, Any], Any]
    dumps: Callable[[Any], str | bytes]
    loads: Callable[[bytes], Any]
    finish: Callable[[dict, Any, int], tuple[dict, Artifacts]]
    # What a done chunk's partial tells later chunks ({row: values}, the job's ``k`` largest
    # kept per row, :meth:`worker.chunks.ChunkRecords.raise_floors`), or None for kinds
    # without.
    floors: Callable[[Any], dict[int, list[float]]] | None = None
    # All the partials merged at once (the same as ``merge`` pair by pair, done faster), or
    # None to merge pair by pair.
    merge_many: Callable[[Iterable[Any]], Any] | None = None


def _scanner(job: dict) -> TopExamplesScanner:
    def build(loaded: LoadedModel) -> TopExamplesScanner:
        return TopExamplesScanner(loaded.model, job["layer"], loaded.info.preprocess)

    return _cache().tool(job["model"], ("top_examples", job["layer"]), build)


def _top_partial(job: dict, chunk: ChunkImages) -> TopExamplesPartial:
    """The chunk's readable images through the layer, the rest corrupt; entries below the
    floors of chunks done so far dropped (they cannot make the final lists), and the crops of
    what is left cut here while the images are decoded. Without the floors every partial
    would carry ``channels × k`` crops (1.5 MB for the shapes model's conv4) until the merge;
    with them, chunks after the first few carry only the few that still can."""
    options, scanner, k = job["options"], _scanner(job), job["options"]["k"]
    known = ChunkRecords(_store()).floors(job["id"])
    rows = len(options["channels"]) if options["channels"] is not None else scanner.n_channels
    # k images of the done chunks score at least a row's k-th largest value
    bounds = None if not known or rows is None else np.array(
        [min(known[r]) if len(known.get(r, ())) >= k else -np.inf for r in range(rows)])
    return scanner.partial(chunk.pixels, chunk.indices, channels=options["channels"],
                           k=k, corrupt=chunk.corrupt, crops=True, floors=bounds)


def _top_floors(partial: TopExamplesPartial) -> dict[int, list[float]]:
    """Per channel row, the values on the chunk's top list."""
    return {row: [float(v) for v, i in zip(values, images, strict=True) if i >= 0]
            for row, (values, images) in enumerate(zip(partial.values, partial.images,
                                                       strict=True))}


def _top_result(job: dict, partial: TopExamplesPartial, chunks: int) -> tuple[dict, Artifacts]:
    """The public result (top lists with the manifest's files) and the crop pictures."""
    found, loaded = manifest(job["dataset"]), _cache().get(job["model"])
    shape = input_shape(job)
    channels = finish(partial, _scanner(job).grid())
    for channel in channels:
        for top in channel["top"]:
            top["file"] = found.images[top["image"]].file
    artifacts = {f"crops_{c['index']}": (_crops(partial, found, c, shape), PNG)
                 for c in channels}
    result = {"dataset": job["dataset"], "images": partial.seen, "corrupt": partial.corrupt,
              "chunks": chunks, "k": partial.k, "image_size": shape[:2],
              "channels": channels, "random_weights": bool(loaded.info.random_weights)}
    return result, artifacts


def _crops(partial: TopExamplesPartial, found: Manifest, channel: dict,
           shape: list[int]) -> bytes:
    """The channel's ``crops_<channel>`` picture from the crops the chunks cut; from the
    images read again only when a chunk's partial carried none (a worker of an older
    version computed it)."""
    patches = partial.patches
    if patches is None:
        return crops_png(found, channel, shape, get_settings().max_image_pixels)
    return strip_png(channel, [patches.crop(t["image"], t["y"], t["x"], t["crop"])
                               for t in channel["top"]], shape)


TOP_EXAMPLES = DatasetKind(
    partial=_top_partial, merge=merge,
    dumps=TopExamplesPartial.to_bytes, loads=TopExamplesPartial.from_bytes,
    finish=_top_result, floors=_top_floors, merge_many=merge_many)

