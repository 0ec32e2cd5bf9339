"""Dataset images as a model sees them, and the ``crops_<channel>`` pictures of a
``top_examples`` result, each crop (the max unit's receptive field) with the unit itself
marked: a magenta ring around the input pixel at the centre of its field. The crops come with
the merged partial (:func:`strip_png`, cut by the chunks), or are cut from the images read
again (:func:`crops_png`, for partials without crops). Imported by the worker's task bodies
only (no TensorFlow here, but :mod:`models.render` brings matplotlib)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from models import render
from worker.datasets import Manifest, read_images

PNG = "image/png"
MIN_TILE = 48  # a crop is scaled up (nearest, by a whole factor) to at least this many pixels
BACKGROUND = 128  # grey where a crop at the image border is smaller than the field
MARK = (255, 0, 255)  # the ring around the unit's own pixel


def fit(pixels: np.ndarray, input_shape: list[int]) -> np.ndarray:
    """uint8 RGB ``(h, w, 3)`` as the model takes it: ``(H, W, C)`` uint8, resized
    (bilinear, aspect not kept, as the API does for uploaded images), greyscale for C = 1."""
    height, width, channels = input_shape
    if pixels.shape == (height, width, 3) and channels == 3:
        return pixels  # already as the model takes it
    img = Image.fromarray(pixels)
    if channels == 1:
        img = img.convert("L")
    if (img.height, img.width) != (height, width):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _tile(crop: np.ndarray | None, side: int, scale: int) -> np.ndarray:
    """``crop`` ``(h, w, C)`` uint8 scaled by ``scale``, on a grey ``side × side`` tile."""
    tile = np.full((side, side, 3), BACKGROUND, np.uint8)
    if crop is None:
        return tile
    if crop.shape[-1] == 1:
        crop = np.repeat(crop, 3, axis=-1)
    h, w = min(crop.shape[0], side // scale), min(crop.shape[1], side // scale)
    # each pixel written once as a scale × scale block (a view of the tile split into blocks)
    tile[:h * scale, :w * scale].reshape(h, scale, w, scale, 3)[...] = \
        crop[:h, :w, None, :][:, None]
    return tile


def unit_centre(first: int, stop: int, field: int, size: int) -> int:
    """Along one axis, the input pixel at the centre of a unit's field (rounded down), from
    its box ``[first, stop)`` (clipped to the image's ``size`` pixels) and the layer's
    unclipped field length ``field``: a field cut at one border is completed from the other."""
    seen = stop - first
    if seen >= field or (first > 0 and stop < size):  # whole
        return first + (seen - 1) // 2
    if first == 0 and stop < size:  # cut at the start
        return stop - field + (field - 1) // 2
    if first > 0:  # cut at the end
        return first + (field - 1) // 2
    return (first + stop - 1) // 2  # wider than the image: its middle


def mark_unit(tile: np.ndarray, box: list[int], centre: tuple[int, int], scale: int) -> None:
    """Ring, in ``tile`` (``box`` scaled by ``scale``), the block of input pixel ``centre``
    ``(y, x)``: one pixel wide, one pixel outside the block, clipped to the tile."""
    top, left = (centre[0] - box[1]) * scale, (centre[1] - box[0]) * scale
    y0, x0, y1, x1 = top - 2, left - 2, top + scale + 1, left + scale + 1  # inclusive ring
    h, w = tile.shape[:2]
    for y in (y0, y1):
        if 0 <= y < h:
            tile[y, max(0, x0):min(w, x1 + 1)] = MARK
    for x in (x0, x1):
        if 0 <= x < w:
            tile[max(0, y0):min(h, y1 + 1), x] = MARK


def _centre(top: dict, fields: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    x0, y0, x1, y1 = top["crop"]
    return unit_centre(y0, y1, fields[0], size[0]), unit_centre(x0, x1, fields[1], size[1])


def crops_png(manifest: Manifest, channel: dict, input_shape: list[int],
              max_pixels: int) -> bytes:
    """:func:`strip_png` with the crops cut from this channel's images, read again (an image
    unreadable now shows as a grey tile): for a result whose partials carry no crops."""
    images = {}
    for i in sorted({t["image"] for t in channel["top"]}):
        read = read_images(manifest, i, i + 1, max_pixels)[0]
        images[i] = None if read.pixels is None else fit(read.pixels, input_shape)
    crops = []
    for t in channel["top"]:
        x0, y0, x1, y1 = t["crop"]
        image = images[t["image"]]
        crops.append(None if image is None else image[y0:y1, x0:x1])
    return strip_png(channel, crops, input_shape)


def strip_png(channel: dict, crops: list[np.ndarray | None], input_shape: list[int]) -> bytes:
    """One channel's top crops side by side (best first), each labelled with its value and
    its unit marked (:func:`mark_unit`). ``crops[i]``: the pixels ``(h, w, C)`` uint8 of
    ``channel["top"][i]["crop"]`` at the model's input size ``input_shape``, or None for a
    grey tile."""
    top = channel["top"]
    fields = (max([t["crop"][3] - t["crop"][1] for t in top] + [1]),
              max([t["crop"][2] - t["crop"][0] for t in top] + [1]))
    field = max(fields)
    scale = max(1, -(-MIN_TILE // field))
    tiles, size = [], (input_shape[0], input_shape[1])
    for t, crop in zip(top, crops, strict=True):
        tiles.append(_tile(crop, field * scale, scale))
        if crop is not None:
            mark_unit(tiles[-1], t["crop"], _centre(t, fields, size), scale)
    if not tiles:
        tiles = [_tile(None, field * scale, scale)]
    labels = [f"{t['value']:.3g}" for t in top] or ["none"]
    return render.to_png(render.tile_grid(tiles, labels, columns=len(tiles)))
