"""Pictures for people: feature-map grids, heatmaps and overlays as PNG bytes.

Colormaps come from matplotlib, drawing from Pillow, PNG encoding from ``models.png``. Arrays
follow the ``(H, W, C)`` / ``(H, W)`` layout; pixel images are uint8 or float 0..255.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from models import png

GAP = 2  # pixels between tiles
LABEL_HEIGHT = 12


def to_png(pixels: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` / ``(H, W)`` uint8 (floats are clipped to 0..255) as PNG bytes."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return png.encode(arr)


@functools.lru_cache(maxsize=16)
def _lookup_table(cmap: str) -> np.ndarray:
    """The colormap's ``N`` colours as uint8 RGB ``(N, 3)``."""
    table = colormaps[cmap]
    return (table(np.arange(table.N))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Map ``(H, W)`` values in [0, 1] through a matplotlib colormap to uint8 ``(H, W, 3)``.

    Indexes the colormap's table as matplotlib does (``floor(x·N)``, 1.0 → the last colour),
    without matplotlib's per-call float path (about 5× faster on a 64×64 map).
    """
    table = _lookup_table(cmap)
    values = np.asarray(values)
    scaled = np.multiply(values, len(table), dtype=np.result_type(values, np.float32))
    np.clip(scaled, 0, len(table) - 1, out=scaled)
    index = scaled.astype(np.uint8 if len(table) <= 256 else np.intp)
    return np.take(table, index, axis=0)  # several times faster than table[index]


def normalize_channels(acts: np.ndarray) -> np.ndarray:
    """Scale each channel of ``(H, W, C)`` to [0, 1] by its own min/max (constant → 0)."""
    low = acts.min(axis=(0, 1), keepdims=True)
    span = acts.max(axis=(0, 1), keepdims=True) - low
    return np.where(span > 0, (acts - low) / np.where(span > 0, span, 1.0), 0.0)


def _tile_size(h: int, w: int, minimum: int = 48) -> tuple[int, int]:
    factor = max(1, math.ceil(minimum / max(h, w)))
    return h * factor, w * factor


@functools.lru_cache(maxsize=1)
def _label_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font, loaded once (each load decodes it again: 0.12 ms a grid)."""
    return ImageFont.load_default()


@functools.lru_cache(maxsize=256)
def _glyph(char: str) -> tuple[np.ndarray, int]:
    """One character of the label font: its coverage ``(LABEL_HEIGHT, w)`` uint8 as Pillow
    draws it at the pen's origin, and its advance in pixels."""
    font = _label_font()
    advance = round(font.getlength(char))
    width = int(max(advance, font.getbbox(char)[2], 1))
    img = Image.new("L", (width, LABEL_HEIGHT), 0)
    ImageDraw.Draw(img).text((0, 0), char, fill=255, font=font)
    return np.asarray(img), advance


def _label_mask(text: str) -> np.ndarray:
    """``text``'s coverage ``(LABEL_HEIGHT, w)`` uint8, composed from cached glyphs at their
    advances (what Pillow draws for the label font without kerning: the same pixels for
    numbers and channel indices; Pillow lays out and rasterises the string again on every
    call, 80 µs a label, most of a channel strip's drawing)."""
    glyphs = [_glyph(c) for c in text]
    width = sum(a for _, a in glyphs[:-1]) + (glyphs[-1][0].shape[1] if glyphs else 0)
    mask = np.zeros((LABEL_HEIGHT, max(width, 1)), np.uint8)
    x = 0
    for glyph, advance in glyphs:
        region = mask[:, x:x + glyph.shape[1]]
        np.maximum(region, glyph[:, :region.shape[1]], out=region)
        x += advance
    return mask


def tile_grid(tiles: list[np.ndarray], labels: list[str] | None = None,
              columns: int | None = None) -> np.ndarray:
    """Tile equal-sized uint8 ``(h, w, 3)`` images in a grid with gaps and optional labels
    (black on white above each tile)."""
    n = len(tiles)
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    h, w = tiles[0].shape[:2]
    label_h = LABEL_HEIGHT if labels else 0
    canvas = np.full((rows * (h + label_h + GAP) + GAP, cols * (w + GAP) + GAP, 3), 255,
                     np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = GAP + c * (w + GAP), GAP + r * (h + label_h + GAP)
        if labels:
            mask = _label_mask(labels[i])[:, :canvas.shape[1] - x - 1]
            region = canvas[y:y + label_h, x + 1:x + 1 + mask.shape[1]]
            # black over what is there, by coverage, rounded as Pillow blends (a label
            # wider than its tile runs on over the next one's, as Pillow draws it)
            blend = region.astype(np.uint32) * (255 - mask[..., None]) + 128
            region[...] = (blend + (blend >> 8)) >> 8
        canvas[y + label_h:y + label_h + h, x:x + w] = tile
    return canvas


def activation_grid(acts: np.ndarray, channels: list[int] | None = None,
                    cmap: str = "viridis") -> np.ndarray:
    """All (or the listed) channels of ``(H, W, C)`` as one labelled uint8 grid image."""
    channels = list(range(acts.shape[-1])) if channels is None else channels
    norm = normalize_channels(acts[..., channels])
    th, tw = _tile_size(*acts.shape[:2])
    nearest = Image.Resampling.NEAREST
    tiles = [
        np.asarray(Image.fromarray(colorize(norm[..., i], cmap)).resize((tw, th), nearest))
        for i in range(len(channels))
    ]
    return tile_grid(tiles, [str(c) for c in channels])


def heatmap_image(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A ``(H, W)`` heatmap in [0, 1] as uint8 RGB."""
    return colorize(heatmap, cmap)


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``(h, w)`` heatmap in [0, 1] resized bilinearly (Pillow) to ``size`` = ``(H, W)``.

    Float32; values stay in [0, 1] (each output is a weighted mean of inputs).
    """
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.shape == tuple(size):
        return heat
    resized = Image.fromarray(heat).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            cmap: str = "jet") -> np.ndarray:
    """Blend the coloured heatmap over ``image``, at the image's own size.

    ``image`` is uint8 (or float 0..255) RGB ``(H, W, 3)`` or greyscale ``(H, W)`` /
    ``(H, W, 1)`` of any size, e.g. the original upload; ``heatmap`` is ``(h, w)`` in [0, 1],
    e.g. at the model's input size, and is resized bilinearly to ``(H, W)`` first.
    Returns uint8 RGB ``(H, W, 3)``.
    """
    base = np.asarray(image, dtype=np.float32)
    if base.ndim == 2:
        base = base[..., None]
    if base.shape[-1] == 1:
        base = np.repeat(base, 3, axis=-1)
    heat = colorize(resize_heatmap(heatmap, base.shape[:2]), cmap).astype(np.float32)
    return np.clip((1.0 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)


def _signed_unit(signed: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """``(h, w)`` signed values scaled by their largest magnitude to [-1, 1] (all zero stays
    zero), resized bilinearly to ``size`` ``(H, W)`` when given."""
    values = np.asarray(signed, dtype=np.float32)
    peak = float(np.abs(values).max()) if values.size else 0.0
    unit = values / peak if peak > 0 else np.zeros_like(values)
    if size is not None and unit.shape[:2] != tuple(size):
        unit = 2.0 * resize_heatmap((unit + 1.0) / 2.0, size) - 1.0
    return unit


def signed_image(signed: np.ndarray, cmap: str = "RdBu_r") -> np.ndarray:
    """A signed ``(h, w)`` map in a diverging colour map, uint8 RGB: zero in the middle colour
    (white for ``RdBu_r``), the largest magnitude at either end (red positive, blue negative)."""
    return colorize((_signed_unit(signed) + 1.0) / 2.0, cmap)


def signed_overlay(image: np.ndarray, signed: np.ndarray, strength: float = 0.8,
                   cmap: str = "RdBu_r") -> np.ndarray:
    """The diverging colour of a signed ``(h, w)`` map over ``image`` (any size, uint8 or
    float 0..255, RGB or grey), each pixel blended in proportion to its magnitude
    (``strength`` at the largest): the image shows where the map is near zero."""
    base = np.asarray(image, dtype=np.float32)
    if base.ndim == 2:
        base = base[..., None]
    if base.shape[-1] == 1:
        base = np.repeat(base, 3, axis=-1)
    unit = _signed_unit(signed, base.shape[:2])
    colour = colorize((unit + 1.0) / 2.0, cmap).astype(np.float32)
    alpha = (strength * np.abs(unit))[..., None]
    return np.clip((1.0 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, labels: list[str] | None = None) -> np.ndarray:
    """Tile ``(n, H, W, C)`` uint8 images (e.g. filter patterns) into one grid."""
    tiles = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
    return tile_grid(tiles, labels)
