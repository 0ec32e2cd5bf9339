"""``service.images.decode_image``: plain 8-bit PNGs take libspng, and every file gives what
Pillow alone gives (pixels, original, info, or the same refusal); files Pillow would treat
differently (transparency, EXIF orientation, palettes, 16 bits, damage) stay with Pillow."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service import images
from service.images import ImageError, decode_image
from worker import png_decode


def _png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **params)
    return buf.getvalue()


def _with_chunk(data: bytes, tag: bytes, body: bytes) -> bytes:
    """``data`` with a chunk ``tag`` inserted after IHDR."""
    chunk = struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return data[:33] + chunk + data[33:]


def _exif_rotated(rgb: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    return _png(Image.fromarray(rgb), exif=exif.tobytes())


RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (37, 29, 3), dtype=np.uint8)
FAST = {
    "rgb": _png(Image.fromarray(RGB)),
    "grey": _png(Image.fromarray(RGB[..., 0])),
    "colour chunks": _with_chunk(_with_chunk(_png(Image.fromarray(RGB)), b"gAMA",
                                             struct.pack(">I", 45455)), b"sRGB", b"\x00"),
}
SLOW = {
    "rgba": _png(Image.fromarray(np.dstack([RGB, RGB[..., :1]]))),
    "rgb + tRNS": _with_chunk(_png(Image.fromarray(RGB)), b"tRNS", b"\x00\x01\x00\x02\x00\x03"),
    "palette": _png(Image.fromarray(RGB).quantize(colors=9)),
    "exif rotated": _exif_rotated(RGB),
    "16-bit grey": _png(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)),
    "text": _with_chunk(_png(Image.fromarray(RGB)), b"tEXt", b"Comment\x00hello"),
}
SHAPES = [[37, 29, 3], [64, 64, 3], [None, None, 3], [64, 64, 1]]


def _pillow_only(monkeypatch: pytest.MonkeyPatch, *args: object) -> images.DecodedImage:
    with monkeypatch.context() as m:
        m.setattr(png_decode, "pyspng", None)
        return decode_image(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", [*FAST, *SLOW])
def test_every_png_decodes_as_pillow_alone_decodes_it(
        name: str, shape: list, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {**FAST, **SLOW}[name]
    loads: list[int] = []
    real = png_decode.pyspng.load
    monkeypatch.setattr(png_decode.pyspng, "load", lambda *a: loads.append(1) or real(*a))
    got = decode_image(data, shape, 10**6, 400)
    want = _pillow_only(monkeypatch, data, shape, 10**6, 400)
    np.testing.assert_array_equal(got.pixels, want.pixels)
    assert (got.original is None) == (want.original is None)
    if want.original is not None:
        np.testing.assert_array_equal(got.original, want.original)
    assert got.info == want.info
    assert bool(loads) == (name in FAST and shape[2] == 3), "the wrong decoder ran"


def test_exif_orientation_is_still_applied() -> None:
    got = decode_image(SLOW["exif rotated"], [None, None, 3], 10**6)
    np.testing.assert_array_equal(got.pixels, np.rot90(RGB, k=-1))


@pytest.mark.parametrize("damage", ["crc", "cut"])
def test_a_damaged_png_is_refused_as_pillow_refuses_it(damage: str) -> None:
    raw = bytearray(FAST["rgb"])
    raw[-20] ^= 0xFF  # a byte of the last IDAT: its CRC no longer matches
    data = bytes(raw) if damage == "crc" else bytes(raw[:-30])
    with pytest.raises(ImageError) as err:
        decode_image(data, [37, 29, 3], 10**6)
    assert err.value.code == "invalid_image"


def test_a_png_over_the_pixel_limit_is_refused_from_its_header() -> None:
    with pytest.raises(ImageError) as err:
        decode_image(FAST["rgb"], [37, 29, 3], 37 * 29 - 1)
    assert err.value.code == "image_too_large"
