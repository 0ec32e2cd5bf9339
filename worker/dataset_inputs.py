"""What every dataset-job kind reads: the dataset's manifest (once per process), the model's
input size, and one chunk's images at that size. Imported by task bodies only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from worker.dataset_crops import fit
from worker.datasets import DatasetImage, Manifest, dataset_dir, iter_images, open_dataset
from worker.runner import _cache
from worker.settings import get_settings


class DatasetGone(KeyError):
    """The job's dataset was deleted or expired."""


@lru_cache(maxsize=8)
def _manifest_at(dataset_id: str, stamp: int) -> Manifest:
    settings = get_settings()
    return open_dataset(settings.data_dir, dataset_id, settings.dataset_roots)


def manifest(dataset_id: str) -> Manifest:
    """The dataset's manifest, read once per process (again if it changed)."""
    path = dataset_dir(get_settings().data_dir, dataset_id) / "manifest.json"
    try:
        return _manifest_at(dataset_id, Path(path).stat().st_mtime_ns)
    except (KeyError, FileNotFoundError):
        raise DatasetGone(f"dataset {dataset_id!r} was deleted or has expired") from None


def input_shape(job: dict) -> list[int]:
    """``[H, W, C]`` of the job's model (fixed: the API refuses free-size models)."""
    return [int(n or 0) for n in _cache().get(job["model"]).info.input_shape]


@dataclass(frozen=True)
class ChunkImages:
    """The readable images of one chunk: ``pixels`` float32 ``(n, H, W, C)`` 0..255 at the
    model's input size, their manifest entries (``images``, with global indices), and how
    many of the chunk's images could not be read."""

    pixels: np.ndarray
    images: list[DatasetImage]
    corrupt: int

    @property
    def indices(self) -> list[int]:
        return [image.index for image in self.images]


def read_chunk(job: dict, chunk: int) -> ChunkImages:
    """Chunk ``chunk`` (``options.chunk_images`` images) of the job's dataset, each image
    brought to the model's input size as it is decoded: a chunk of large images (say 128 of
    4096², 48 MB each decoded) never sits in memory at full size."""
    size, shape = job["options"]["chunk_images"], input_shape(job)
    found = manifest(job["dataset"])
    start, stop = chunk * size, min((chunk + 1) * size, len(found))
    pixels = np.empty((max(0, stop - start), *shape), np.float32)  # filled in place
    good: list[DatasetImage] = []
    for read in iter_images(found, start, stop, get_settings().max_image_pixels):
        if read.pixels is not None:
            pixels[len(good)] = fit(read.pixels, shape)
            good.append(read.image)
    return ChunkImages(pixels[:len(good)], good, max(0, stop - start) - len(good))
