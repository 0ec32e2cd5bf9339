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
    # ancillary chunks Pillow reads and refuses when malformed (libspng would skip them)
    "short gAMA": _with_chunk(_png(Image.fromarray(RGB)), b"gAMA", b"\x00\x01"),
    "short pHYs": _with_chunk(_png(Image.fromarray(RGB)), b"pHYs", b"\x00" * 5),
    "short cHRM": _with_chunk(_png(Image.fromarray(RGB)), b"cHRM", b"\x00" * 8),
    "iCCP, unknown compression": _with_chunk(_png(Image.fromarray(RGB)), b"iCCP",
                                             b"icc\x00\x07" + zlib.compress(b"x" * 40)),
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
    try:
        want = _pillow_only(monkeypatch, data, shape, 10**6, 400)
    except ImageError as refused:
        with pytest.raises(ImageError) as err:
            decode_image(data, shape, 10**6, 400)
        assert (err.value.code, str(err.value)) == (refused.code, str(refused))
        assert not loads, "libspng decoded a file Pillow refuses"
        return
    got = decode_image(data, shape, 10**6, 400)
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


def test_a_png_over_the_pixel_limit_is_refused_from_its_header(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png_decode.pyspng, "load", lambda *a: pytest.fail("decoded"))
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("left to Pillow"))
    with pytest.raises(ImageError) as err:
        decode_image(FAST["rgb"], [37, 29, 3], 37 * 29 - 1)
    assert err.value.code == "image_too_large"
    assert str(err.value) == f"29×37 pixels is over the limit of {37 * 29 - 1}"


def test_an_invalid_header_is_invalid_before_it_is_too_large() -> None:
    """A header with no valid colour type is not an image, however large it claims to be."""
    raw = bytearray(_png(Image.fromarray(RGB)))
    raw[16:24] = struct.pack(">II", 5000, 5000)
    raw[25] = 7  # no such colour type
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    with pytest.raises(ImageError) as err:
        decode_image(bytes(raw), [37, 29, 3], 10**6)
    assert err.value.code == "invalid_image"


def test_an_image_past_pillows_bomb_limit_is_refused_as_pillow_refuses_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pixel limit above Pillow's decompression-bomb limit, Pillow still decides."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 37 * 29 // 3)
    monkeypatch.setattr(png_decode.pyspng, "load", lambda *a: pytest.fail("decoded"))
    with pytest.raises(ImageError) as err:
        decode_image(FAST["rgb"], [37, 29, 3], 10**6)
    assert err.value.code == "image_too_large" and "decompression bomb" in str(err.value)
