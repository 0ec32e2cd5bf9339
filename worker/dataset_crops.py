"""Dataset images as a model sees them, and the ``crops_<channel>`` pictures of a
``top_examples`` result. Imported by the worker's task bodies only (no TensorFlow here, but
:mod:`models.render` brings matplotlib)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from models import render
from worker.datasets import Manifest, read_images

PNG = "image/png"
MIN_TILE = 48  # a crop is scaled up (nearest, by a whole factor) to at least this many pixels
BACKGROUND = 128  # grey where a crop at the image border is smaller than the field


def fit(pixels: np.ndarray, input_shape: list[int]) -> np.ndarray:
    """uint8 RGB ``(h, w, 3)`` as the model takes it: ``(H, W, C)`` uint8, resized
    (bilinear, aspect not kept, as the API does for uploaded images), greyscale for C = 1."""
    height, width, channels = input_shape
    img = Image.fromarray(pixels)
    if channels == 1:
        img = img.convert("L")
    if (img.height, img.width) != (height, width):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _tile(image: np.ndarray | None, box: list[int], side: int, scale: int) -> np.ndarray:
    """The crop ``box`` of ``image`` scaled by ``scale``, on a grey ``side × side`` tile."""
    tile = np.full((side, side, 3), BACKGROUND, np.uint8)
    if image is None:
        return tile
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    if crop.shape[-1] == 1:
        crop = np.repeat(crop, 3, axis=-1)
    crop = crop.repeat(scale, axis=0).repeat(scale, axis=1)
    tile[:crop.shape[0], :crop.shape[1]] = crop[:side, :side]
    return tile


def crops_png(manifest: Manifest, channel: dict, input_shape: list[int],
              max_pixels: int) -> bytes:
    """One channel's top crops side by side (best first), each labelled with its value; an
    image unreadable now shows as a grey tile. Reads only this channel's images."""
    top = channel["top"]
    field = max([max(t["crop"][2] - t["crop"][0], t["crop"][3] - t["crop"][1]) for t in top]
                + [1])
    scale = max(1, -(-MIN_TILE // field))
    images = {}
    for i in sorted({t["image"] for t in top}):
        read = read_images(manifest, i, i + 1, max_pixels)[0]
        images[i] = None if read.pixels is None else fit(read.pixels, input_shape)
    tiles = [_tile(images[t["image"]], t["crop"], field * scale, scale) for t in top]
    if not tiles:
        tiles = [_tile(None, [0, 0, 0, 0], field * scale, scale)]
    labels = [f"{t['value']:.3g}" for t in top] or ["none"]
    return render.to_png(render.tile_grid(tiles, labels, columns=len(tiles)))
