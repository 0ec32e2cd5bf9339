"""Decode uploaded images with Pillow, safely, into what a model expects.

Any mode Pillow reads (greyscale, RGBA, palette, CMYK, 16-bit, EXIF-rotated JPEG) becomes RGB
(or greyscale for one-channel models), squashed: resized bilinearly to the model's input size
without keeping the aspect ratio (a model with free spatial dimensions takes the image at its
own size). The upright original is kept too (scaled down to ``max_display_pixels``), so
overlays can be drawn at the size the user sent. Decompression bombs, truncated
or corrupt files and empty files are refused with a :class:`ImageError` carrying a code.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from worker import png_decode
from worker.contract import RESIZE


class ImageError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = arr.max() - arr.min()
        arr = (arr - arr.min()) / span * 255.0 if span > 0 else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("L" if channels == 1 else "RGB")


@dataclass
class DecodedImage:
    pixels: np.ndarray  # uint8 (H, W, C): what the model gets
    original: np.ndarray | None  # uint8 (h, w, C) upright original, None if equal to pixels
    info: dict  # original_size, resized_size, mode, resample, resize


def _display(img: Image.Image, max_pixels: int) -> np.ndarray:
    """The image as uint8 ``(h, w, C)``, scaled down (aspect kept) to at most ``max_pixels``."""
    if img.width * img.height > max_pixels:
        scale = (max_pixels / (img.width * img.height)) ** 0.5
        size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 ``(H, W, C)`` pixels as PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, "PNG")
    return buf.getvalue()


# Chunks of a PNG that Pillow's decoding ignores (colour space, gamma, resolution), each with
# the length it must have (Pillow refuses a short one; libspng would skip it): a file of only
# these takes the libspng path. Transparency, EXIF, text and colour profiles go to Pillow.
PLAIN_PNG_CHUNKS: dict[bytes, int | None] = {b"IHDR": 13, b"IDAT": None, b"IEND": 0,
                                             b"sRGB": 1, b"gAMA": 4, b"pHYs": 9}


def _fast_png(data: bytes, channels: int, max_pixels: int) -> tuple[Image.Image, str] | None:
    """A plain 8-bit grey or RGB PNG for an RGB model, decoded by libspng (the same pixels as
    the Pillow path below: 0.44 ms instead of 0.76 for a 224×224 photo), with its mode. Files
    over Pillow's decompression-bomb limit go to Pillow, to be refused as it refuses them."""
    size, bomb = png_decode.header_size(data), Image.MAX_IMAGE_PIXELS
    if channels != 3 or size is None or bomb is not None and size[0] * size[1] > bomb:
        return None
    try:
        pixels = png_decode.decode_rgb(data, max_pixels, (0, 2), PLAIN_PNG_CHUNKS)
    except ValueError as exc:  # over the pixel limit, from the header
        raise ImageError("image_too_large", str(exc)) from exc
    if pixels is None:
        return None
    return Image.fromarray(pixels), "L" if data[25] == 0 else "RGB"


def _open(data: bytes, channels: int, max_pixels: int) -> tuple[Image.Image, str]:
    """The upright image, in the model's mode, and the file's own mode."""
    fast = _fast_png(data, channels, max_pixels)
    if fast is not None:
        return fast
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img: Image.Image = Image.open(io.BytesIO(data))
            original_mode = img.mode
            if img.width * img.height > max_pixels:
                raise ImageError("image_too_large", f"{img.width}×{img.height} pixels is over "
                                 f"the limit of {max_pixels}")
            img.load()
            img = ImageOps.exif_transpose(img)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError("image_too_large", f"decompression bomb refused: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise ImageError("invalid_image", "not an image Pillow can read") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError("invalid_image", f"corrupt or truncated image: {exc}") from exc
    if img.width == 0 or img.height == 0:
        raise ImageError("invalid_image", "the image has no pixels")
    return _to_mode(img, channels), original_mode


def decode_image(data: bytes, input_shape: list[int | None], max_pixels: int,
                 max_display_pixels: int = 1_048_576) -> DecodedImage:
    """Bytes → uint8 ``(H, W, C)`` for a model with ``input_shape`` ``[H, W, C]``, plus the
    upright original for overlays.

    ``info`` is ``{"original_size": [h, w], "resized_size": [h, w], "mode", "resample",
    "resize": "squash"}`` (``"none"`` when the model takes any size).
    """
    if not data:
        raise ImageError("invalid_image", "the file is empty")
    height, width, channels = input_shape
    img, original_mode = _open(data, channels or 3, max_pixels)
    original = [img.height, img.width]
    display = None
    if height and width and (img.height, img.width) != (height, width):
        display = _display(img, max_display_pixels)
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    info = {"original_size": original, "resized_size": [arr.shape[0], arr.shape[1]],
            "mode": original_mode, "resample": "bilinear",
            "resize": RESIZE if height and width else "none"}
    return DecodedImage(arr, display, info)
