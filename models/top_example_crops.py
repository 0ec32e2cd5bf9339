"""Receptive-field crops carried by top-examples partials, so that the merge and the pictures
need no image again.

A chunk has its images decoded when it computes its partial: for every unit on its top lists
it cuts the unit's receptive box ``image[y0:y1, x0:x1]`` (:meth:`ReceptiveGrid.box`, at the
model's input size) as uint8 into a :class:`Patches` table keyed by ``(image, y, x)``, one
patch per distinct unit (channels whose maximum sits on the same unit of the same image share
it). :func:`merge_patches` keeps the patches of the merged top lists only, sorted by key: the
table depends on the merged top lists alone, so the merge stays associative and commutative.

Size: ``P`` patches of ``FH × FW × C`` bytes (the layer's largest field, e.g. 38 × 38 × 3 for
``shapes`` ``conv4``), ``P <= channels × k`` distinct units. Pure NumPy.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # no Keras here: the merge runs without it
    from models.receptive_field import ReceptiveGrid


@dataclass
class Patches:
    """``keys`` int64 ``(P, 3)``: ``(image, y, x)`` of each unit, unique, in lexicographic
    order; ``pixels`` uint8 ``(P, FH, FW, C)``: the unit's box at the top left, zeros beyond
    it (a box cut by the image's border is smaller than the field ``(FH, FW)``)."""

    keys: np.ndarray
    pixels: np.ndarray

    def crop(self, image: int, y: int, x: int, box: Sequence[int]) -> np.ndarray:
        """Unit ``(y, x)`` of ``image``: its ``box`` ``[x0, y0, x1, y1]`` ``(h, w, C)`` uint8;
        KeyError when the table has no such unit."""
        hit = np.flatnonzero((self.keys == (image, y, x)).all(axis=1))
        if not hit.size:
            raise KeyError((image, y, x))
        x0, y0, x1, y1 = box
        return self.pixels[hit[0], :y1 - y0, :x1 - x0]

    def header(self) -> dict[str, Any]:
        """Plain JSON of all but the pixels: the keys as lists and the pixels' shape."""
        return {"keys": self.keys.tolist(), "shape": list(self.pixels.shape)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: :meth:`header` and the pixels raw in base64 (crops of photographs and
        textures hardly compress, and zlib would cost more than the bytes it saves)."""
        return {**self.header(), "pixels": base64.b64encode(self.pixel_bytes()).decode()}

    def pixel_bytes(self) -> bytes:
        return np.ascontiguousarray(self.pixels).tobytes()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Patches:
        """The inverse of :meth:`to_dict`; ValueError when the sizes disagree."""
        return cls.from_header(data, base64.b64decode(data["pixels"]))

    @classmethod
    def from_header(cls, data: dict[str, Any], pixels: bytes) -> Patches:
        """From :meth:`header` and :meth:`pixel_bytes` (read-only pixels, not copied)."""
        shape = tuple(int(n) for n in data["shape"])
        keys = np.asarray(data["keys"], np.int64).reshape(-1, 3)
        flat = np.frombuffer(pixels, np.uint8)
        if len(shape) != 4 or shape[0] != len(keys) or flat.size != np.prod(shape):
            raise ValueError(f"patches of {flat.size} bytes and {len(keys)} keys do not fit "
                             f"shape {shape}")
        return cls(keys, flat.reshape(shape))


def field(grid: ReceptiveGrid) -> tuple[int, int]:
    """``(FH, FW)``: the largest box of any unit of ``grid``, at least 1 × 1."""
    rows, cols = grid.rows, grid.cols
    return (max(1, int((rows[:, 1] - rows[:, 0]).max()) + 1),
            max(1, int((cols[:, 1] - cols[:, 0]).max()) + 1))


def empty_patches(size: tuple[int, int], channels: int) -> Patches:
    """A table of no patch for a field ``size`` ``(FH, FW)`` and ``channels`` colours."""
    return Patches(np.zeros((0, 3), np.int64), np.zeros((0, *size, channels), np.uint8))


def _units(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The distinct ``(image, y, x)`` of top lists ``(C, k)`` (empty slots left out), sorted."""
    keys = np.stack([images.ravel(), ys.ravel(), xs.ravel()], axis=1)
    return np.unique(keys[keys[:, 0] >= 0], axis=0).reshape(-1, 3)


def cut_patches(pixels: np.ndarray, indices: Sequence[int] | np.ndarray, images: np.ndarray,
                ys: np.ndarray, xs: np.ndarray, grid: ReceptiveGrid) -> Patches:
    """The patches of top lists ``images``, ``ys``, ``xs`` ``(C, k)`` (global image indices)
    cut from one chunk's ``pixels`` ``(N, H, W, C)`` 0..255 (any dtype, rounded to uint8)
    whose global indices are ``indices`` ``(N,)``."""
    position = {int(i): n for n, i in enumerate(np.asarray(indices).reshape(-1))}
    keys = _units(images, ys, xs)
    out = empty_patches(field(grid), pixels.shape[-1])
    out.keys, out.pixels = keys, np.zeros((len(keys), *out.pixels.shape[1:]), np.uint8)
    for p, (image, y, x) in enumerate(keys.tolist()):
        x0, y0, x1, y1 = grid.box(y, x)
        crop = pixels[position[image], y0:y1, x0:x1]
        out.pixels[p, :y1 - y0, :x1 - x0] = np.clip(np.rint(crop), 0, 255)
    return out


def merge_patches(tables: Sequence[Patches], images: np.ndarray, ys: np.ndarray,
                  xs: np.ndarray) -> Patches:
    """The patches of merged top lists ``images``, ``ys``, ``xs`` ``(C, k)``, taken from
    ``tables`` (one or more); ValueError when their fields differ or a unit is in none."""
    shapes = {t.pixels.shape[1:] for t in tables}
    if len(shapes) != 1:
        raise ValueError(f"patches of fields {sorted(shapes)} do not merge")
    keys = _units(images, ys, xs)
    pool = np.concatenate([t.keys for t in tables])
    where = {key: n for n, key in enumerate(map(tuple, pool.tolist()))}
    try:
        rows = [where[key] for key in map(tuple, keys.tolist())]
    except KeyError as exc:
        raise ValueError(f"no crop of unit {exc.args[0]} in the partials merged") from None
    pixels = np.concatenate([t.pixels for t in tables])[rows]
    return Patches(keys, pixels.reshape(len(keys), *tables[0].pixels.shape[1:]))
