"""A small PNG encoder for the pictures convscope draws: 8-bit grey, RGB or RGBA.

Why not Pillow's: its row filtering is chosen per row in C under a general encoder, and it
cost 8 ms for a 224×224 overlay and 2.6 ms for a heatmap at zlib level 1. Here every row gets
the "Up" filter (PNG spec, filter type 2: each byte minus the byte above it), computed for the
whole image in one NumPy subtraction, and zlib's run-length strategy codes the residuals: 1.7
and 1.2 ms for the same two pictures, within 1.3× of Pillow's size on heatmaps and the same
on photos. ``zlib`` releases the GIL while compressing, so pictures encode in parallel in the
worker's rendering threads.

Where Intel's ISA-L is installed (the ``isal`` package, a dependency), its level-1 deflate
codes the same filtered rows 3-5× faster again, with the same size or smaller: a 64×64
heatmap encodes in 54 µs instead of 147 (4.3 KB instead of 5.6), a 224×224 overlay in
0.28 ms instead of 1.5 (measured side by side here, CPU time, best of 5). ``zlib``'s
run-length coding stays the fallback.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:
    from isal import isal_zlib
except ImportError:  # no wheel for this platform: zlib's run-length coding
    isal_zlib = None  # type: ignore[assignment]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
FILTER_UP = 2
LEVEL = 1


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _deflate(data: memoryview, level: int) -> bytes:
    """A zlib stream of ``data``: ISA-L's level-1 deflate if installed, else zlib's RLE."""
    if isal_zlib is not None:
        return isal_zlib.compress(data, level)
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return packer.compress(data) + packer.flush()


def encode(pixels: np.ndarray, level: int = LEVEL) -> bytes:
    """PNG bytes of uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise TypeError(f"PNG pixels must be uint8, not {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in COLOR_TYPES or 0 in arr.shape:
        raise ValueError(f"cannot encode an array of shape {arr.shape} as PNG")
    height, width, channels = arr.shape
    rows = arr.reshape(height, width * channels)
    body = np.empty((height, width * channels + 1), dtype=np.uint8)
    body[:, 0] = FILTER_UP
    body[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=body[1:, 1:])  # uint8 arithmetic wraps mod 256
    data = _deflate(body.data, level)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
