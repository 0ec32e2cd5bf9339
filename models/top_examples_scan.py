"""One model layer's top-examples partial for a chunk of images, in one batched forward pass.

The worker reads a chunk's images (raw RGB pixels, resized to the model's input size, as for
every other kind), counts the unreadable ones, and calls :meth:`TopExamplesScanner.partial`;
merging and finishing are :func:`models.top_examples.merge` and ``finish`` with
:meth:`TopExamplesScanner.grid` for the crops. With ``crops=True`` the partial also carries
the pixels of its units' receptive fields (:mod:`models.top_example_crops`), cut while the
chunk's images are at hand, so that pictures of the merged result need no image again.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import keras
import numpy as np

from models.activations import ActivationExtractor
from models.graph import get_layer, output_shape
from models.receptive_field import ReceptiveGrid, receptive_grid
from models.top_example_crops import cut_patches, empty_patches, field
from models.top_examples import TopExamplesPartial, chunk_partial, empty_partial, prune


class TopExamplesScanner:
    """Partials of layer path ``layer`` of ``model`` (fed with its ``preprocess`` mode).

    Build once per loaded model and layer: the traced forward pass is reused across chunks.
    Raises ValueError when the layer's output is not ``(batch, H, W, C)``.
    """

    def __init__(self, model: keras.Model, layer: str, preprocess: str = "raw") -> None:
        shape = output_shape(get_layer(model, layer))
        if shape is None or len(shape) != 3:
            raise ValueError(f"layer {layer!r} has output {shape}, not (H, W, C)")
        self.model, self.layer = model, layer
        self.n_channels = int(shape[-1]) if shape[-1] is not None else None
        self.extractor = ActivationExtractor(model, layer, preprocess)
        self._grid = lru_cache(maxsize=4)(self.grid)

    def partial(self, images: np.ndarray, indices: Sequence[int] | np.ndarray, *,
                channels: Sequence[int] | None = None, k: int = 9,
                edges: np.ndarray | None = None, corrupt: int = 0,
                crops: bool = False, floors: np.ndarray | None = None) -> TopExamplesPartial:
        """The partial of raw-pixel ``images`` float32 ``(N, H, W, C)`` 0..255 with global
        ``indices`` ``(N,)``; ``corrupt`` counts the chunk's unreadable images. ``N`` may be 0
        (a chunk of unreadable images only). ``floors`` ``(C,)``: top-list entries below
        them are dropped first (:func:`models.top_examples.prune`). ``crops``: with the
        receptive-field pixels of the units left on its top lists (``patches``)."""
        partial = self._partial(images, indices, channels, k, edges, corrupt)
        if floors is not None:
            prune(partial, floors)
        if crops:
            grid = self._grid((int(images.shape[1]), int(images.shape[2])))
            partial.patches = (cut_patches(images, indices, partial.images, partial.ys,
                                           partial.xs, grid) if len(images)
                               else empty_patches(field(grid), int(images.shape[-1])))
        return partial

    def _partial(self, images: np.ndarray, indices: Sequence[int] | np.ndarray,
                 channels: Sequence[int] | None, k: int, edges: np.ndarray | None,
                 corrupt: int) -> TopExamplesPartial:
        if len(images) == 0:
            if channels is None and self.n_channels is None:
                raise ValueError("no images and the layer's channel count is unknown")
            chosen = list(range(self.n_channels or 0) if channels is None else channels)
            bad = [c for c in chosen if self.n_channels and not 0 <= c < self.n_channels]
            if bad:
                raise ValueError(f"channels {bad} out of range for a layer of {self.n_channels}")
            return empty_partial(chosen, k, edges, corrupt)
        acts = self.extractor(np.asarray(images, np.float32)).activations
        return chunk_partial(acts, indices, channels, k, edges, corrupt)

    def grid(self, image_size: tuple[int, int] | None = None) -> ReceptiveGrid:
        """Pixel boxes of the layer's units for images of ``image_size`` ``(H, W)``."""
        return receptive_grid(self.model, self.layer, image_size)
