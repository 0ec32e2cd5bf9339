"""What every job kind shares: the :class:`JobContext` a kind's ``run(ctx)`` takes, artifact
names per image, grouping images that can share a model call, and rendering pictures on
threads. The kinds themselves are in :mod:`worker.kinds` (and :mod:`worker.saliency_kind`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from models.zoo import LoadedModel
from worker.contract import RESIZE

PNG, NPY = "image/png", "application/x-npy"
Artifacts = dict[str, tuple[bytes, str]]
T = TypeVar("T")


@dataclass
class JobContext:
    """What a kind needs: the model, the layer, complete options, the job's images."""

    loaded: LoadedModel
    layer: str
    options: dict[str, Any]
    tool: Callable[[tuple, Callable[[LoadedModel], Any]], Any]  # cached per (model, key)
    progress: Callable[[float], None]
    should_cancel: Callable[[], bool]
    images: list[np.ndarray] = field(default_factory=list)  # uint8 (H, W, C), model-sized
    originals: list[np.ndarray] = field(default_factory=list)  # uint8, as uploaded (capped)
    resize: str = RESIZE  # how images were fitted to the model ("none": free-size model)


def artifact_name(base: str, i: int) -> str:
    """Image ``i``'s artifact ``base``: ``heatmap``, ``heatmap.1``, ..."""
    return base if i == 0 else f"{base}.{i}"


def same_size_groups(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of images that can share one model call (all of them for a fixed-size model;
    a model with free spatial dimensions gets its images at their own sizes)."""
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return list(groups.values())


# Drawing and encoding release the GIL (NumPy, zlib), so large pictures are rendered on two
# threads: 32 ResNet50 overlays took 346 ms on one, 180 ms on two. Small ones (the 64×64
# shapes maps) are not worth a thread.
RENDER_THREADS = 2
THREADED_PIXELS = 96 * 96


def render_each(render_one: Callable[[int], Any], n: int, pictures: list[np.ndarray]) -> list:
    """``[render_one(i) for i in range(n)]``, on threads when the pictures are large."""
    if n < 2 or max(p.shape[0] * p.shape[1] for p in pictures) < THREADED_PIXELS:
        return [render_one(i) for i in range(n)]
    with ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="render") as pool:
        return list(pool.map(render_one, range(n)))


def timed_maps(tool: Any, compute: Callable[[], T], images: int) -> tuple[T, dict[str, Any]]:
    """``compute()`` (the maps of ``images`` images, by the engine object ``tool``) and
    ``{"seconds", "traced"}`` for each item: the wall seconds per image of that computation
    (shared by the jobs batched together), and whether it traced the engine's compiled step
    (its first call, or a new batch shape: the time then includes tracing, once per worker)."""
    before = int(getattr(tool, "traces", 0))
    start = time.perf_counter()
    out = compute()
    seconds = (time.perf_counter() - start) / max(1, images)
    return out, {"seconds": seconds, "traced": int(getattr(tool, "traces", 0)) > before}
