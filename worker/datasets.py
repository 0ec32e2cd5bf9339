"""Datasets on disk, and how workers read them.

A dataset lives in ``<data_dir>/datasets/<id>/``: ``manifest.json`` and, for an uploaded
archive, the images it held under ``files/`` (a dataset registered from a server folder is
read where it is). Its record (status, counts, tenant) is in Redis
(:mod:`worker.dataset_records`); the pixels never are.

``manifest.json`` (``version`` 1)::

    {"version": 1, "id": "d…", "root": "files/…" (relative to the dataset's folder) or an
     absolute folder, "images": [{"file": "a/b.png", "size": [H, W], "label": "cat" | null,
     "boxes": [[class, x0, y0, x1, y1], ...]}, ...], "skipped": [{"file", "reason"}, ...],
     "classes": [...], "has_labels": bool, "has_boxes": bool, "warnings": [...]}

``images`` is in a stable order (sorted by path), so a worker can take a chunk of a dataset
by index range::

    manifest = open_dataset(settings.data_dir, dataset_id, settings.dataset_roots)
    for item in read_images(manifest, 0, 64, settings.max_image_pixels):
        item.pixels  # uint8 (H, W, 3), or None with item.error saying why

Boxes are in pixels of the image as stored, ``x1`` and ``y1`` exclusive (a box covers
columns ``x0 <= x < x1``, rows ``y0 <= y < y1``).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worker import png_decode

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")  # Pillow's plain decoders only
_ID = re.compile(r"^d[0-9a-f]{16}$")


def new_dataset_id() -> str:
    return "d" + os.urandom(8).hex()


def datasets_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "datasets"


def dataset_dir(data_dir: str | os.PathLike, dataset_id: str) -> Path:
    """The dataset's folder; KeyError for anything that is not a dataset id."""
    if not _ID.match(dataset_id):
        raise KeyError(dataset_id)
    return datasets_dir(data_dir) / dataset_id


def upload_file(data_dir: str | os.PathLike, dataset_id: str) -> Path:
    """Where the API keeps an uploaded archive until a worker has read it."""
    return dataset_dir(data_dir, dataset_id) / "upload.bin"


def resolved(path: str | os.PathLike) -> Path | None:
    """``path`` with links and ``..`` followed, or None when it cannot be (a loop of links,
    a name longer than the file system takes)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
        return None


def inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """Whether ``path`` (resolved: links and ``..`` followed) lies in one of ``roots``."""
    real = resolved(path)
    return real is not None and any(real.is_relative_to(root) for root in
                                    filter(None, map(resolved, roots)))


def is_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder (following links); False where it cannot be looked at (a
    name too long, no permission)."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


class DatasetMoved(KeyError):
    """A registered dataset's folder leads, now, outside the folders datasets may come from
    (swapped for a link since it was read, or its root taken out of the setting)."""


def decode(source: bytes | Path, max_pixels: int) -> Image.Image:
    """An image from bytes or a file, fully decoded; ValueError with the reason otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                             formats=FORMATS)
            if img.width * img.height > max_pixels:
                raise ValueError(f"{img.width}×{img.height} pixels is over the limit of "
                                 f"{max_pixels}")
            img.load()
        except ValueError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"decompression bomb: {exc}") from exc
        except Image.UnidentifiedImageError:
            raise ValueError("not an image (PNG, JPEG, GIF, BMP, WebP, TIFF or PPM)") from None
        except (OSError, SyntaxError, EOFError) as exc:
            raise ValueError(f"corrupt image: {str(exc)[:200]}") from exc
    if img.width == 0 or img.height == 0:
        raise ValueError("the image has no pixels")
    return img


@dataclass(frozen=True)
class DatasetImage:
    index: int
    file: str  # POSIX path relative to the manifest's root
    size: tuple[int, int]  # (H, W)
    label: str | None
    boxes: tuple[tuple[str, float, float, float, float], ...]  # (class, x0, y0, x1, y1)


@dataclass(frozen=True)
class Manifest:
    id: str
    root: Path  # the folder the images' paths are relative to
    images: tuple[DatasetImage, ...]
    classes: tuple[str, ...]
    has_labels: bool
    has_boxes: bool
    allowed: tuple[Path, ...] = ()  # where ``root`` may lead: the dataset's own folder for
    # an upload, the folders datasets may come from for a registered one

    def __len__(self) -> int:
        return len(self.images)

    def real_root(self) -> Path:
        """``root`` resolved, checked on every read (a manifest is kept for a process's
        life, a folder can be swapped for a link at any time): DatasetMoved when it leads
        outside ``allowed``."""
        real = resolved(self.root)
        if real is None or not inside(real, self.allowed):
            raise DatasetMoved(f"dataset {self.id!r}: its folder now leads outside the "
                               "folders datasets may come from")
        return real


@dataclass(frozen=True)
class ImageRead:
    """One image of a chunk: ``pixels`` uint8 ``(H, W, 3)`` RGB, or None and ``error``."""

    image: DatasetImage
    pixels: np.ndarray | None
    error: str | None = None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically (readers see the old one or the whole new one)."""
    tmp = folder / f".{MANIFEST}.part"
    tmp.write_text(json.dumps({"version": MANIFEST_VERSION, **manifest}))
    os.replace(tmp, folder / MANIFEST)


def open_dataset(data_dir: str | os.PathLike, dataset_id: str,
                 roots: Iterable[str | os.PathLike] = ()) -> Manifest:
    """The manifest of a ready dataset; KeyError when it has none (unknown, not ready yet,
    failed, deleted or expired). ``roots``: the folders datasets may be registered from
    (``CONVSCOPE_DATASET_ROOTS``), where a registered dataset's images must still be."""
    folder = dataset_dir(data_dir, dataset_id)
    try:
        raw = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise KeyError(dataset_id) from None
    images = tuple(DatasetImage(i, m["file"], (m["size"][0], m["size"][1]), m.get("label"),
                                tuple(tuple(b) for b in m.get("boxes") or ()))
                   for i, m in enumerate(raw["images"]))
    allowed = tuple(map(Path, roots)) if os.path.isabs(raw["root"]) else (folder,)
    return Manifest(dataset_id, folder / raw["root"], images, tuple(raw.get("classes") or ()),
                    bool(raw.get("has_labels")), bool(raw.get("has_boxes")), allowed)


def _real_file(root: Path, file: str) -> Path:
    """``root / file`` (``root`` resolved), refused when it is no file or leads out of
    ``root`` through a link. A plain file directly in ``root`` takes one ``lstat``; any other
    path is resolved, link by link."""
    path = root / file
    if "/" not in file and file not in (".", ".."):
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                return path
        except OSError:
            pass
    path = path.resolve()
    if not path.is_relative_to(root):
        raise ValueError("the file now leads outside the dataset's folder")
    if not path.is_file():
        raise ValueError("the file is gone")
    return path


FAST_PNG_MAX_BYTES = 32 * 2**20  # larger files go to Pillow, which reads them in pieces


def fast_png(path: Path, max_pixels: int) -> np.ndarray | None:
    """uint8 ``(H, W, 3)`` RGB of an 8-bit PNG file by libspng
    (:func:`worker.png_decode.decode_rgb`: decoding was a third of a dataset chunk's time),
    or None: the file then goes to :func:`decode`. Over ``max_pixels``: ValueError."""
    if png_decode.pyspng is None or path.stat().st_size > FAST_PNG_MAX_BYTES:
        return None
    return png_decode.decode_rgb(path.read_bytes(), max_pixels)


def read_images(manifest: Manifest, start: int, stop: int,
                max_pixels: int = 16_777_216) -> list[ImageRead]:
    """Images ``start:stop`` of the manifest (clipped to its length), decoded to uint8 RGB.
    An image that is gone, changed into something unreadable, or reached through a link out
    of the dataset's folder is reported in its :class:`ImageRead`, never raised; a dataset
    whose folder leads outside the allowed ones raises :class:`DatasetMoved`."""
    return list(iter_images(manifest, start, stop, max_pixels))


def iter_images(manifest: Manifest, start: int, stop: int,
                max_pixels: int = 16_777_216) -> Iterator[ImageRead]:
    """:func:`read_images` one image at a time: a caller that shrinks each image before the
    next holds one image at full size, not a chunk of them."""
    root = manifest.real_root()
    for image in manifest.images[max(0, start):max(0, stop)]:
        try:
            path = _real_file(root, image.file)
            pixels = fast_png(path, max_pixels)
            if pixels is None:
                img = decode(path, max_pixels)
                pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), np.uint8)
        except (ValueError, OSError) as exc:
            yield ImageRead(image, None, str(exc))
        else:
            yield ImageRead(image, pixels)
