"""Top dataset examples per channel: per-chunk partial results, their merge, and the result.

Pure NumPy (no TensorFlow): a chunk of a layer's activations ``(N, H, W, C)`` float32 with
each image's global index in the dataset gives a :class:`TopExamplesPartial`; partials of
any chunks merge associatively and commutatively (:func:`merge`), and :func:`finish` turns
the merged one into the public per-channel result.

Rules (every one is order-free, so any grouping of chunks gives the same result):

- **Score** of image ``i`` for channel ``c``: the channel's maximum over ``(y, x)``; its unit
  is the *first* maximum in row-major order (``np.argmax`` over ``y·W + x``).
- **Top k**: images by score, larger first; equal scores by smaller image index. Image
  indices must be unique across the whole dataset (each image in one chunk).
- **Dead**: an image is dead for a channel when its score is ``<= 0`` (a ReLU channel that
  never fires on it). ``dead_fraction = dead / images`` (0.0 when no image was seen).
- **Histogram** of the scores over FIXED edges ``e_0 < ... < e_{m−1}``, chosen once per job
  (:func:`log_edges`: signed log-spaced, so no global range is needed in advance). There are
  ``m + 1`` counts: ``counts[0]`` is ``v < e_0``, ``counts[j]`` is ``e_{j−1} <= v < e_j``,
  ``counts[m]`` is ``v >= e_{m−1}``. Partials with other edges, channels or ``k`` do not merge.
- **Images** counts the images whose activations were seen; **corrupt** the images the caller
  could not read (they are in no other count).
- **Crops** (optional, :mod:`models.top_example_crops`): a partial cut from a chunk's images
  carries the receptive-field pixels of the units on its top lists; the merge keeps those of
  the merged lists. A partial without crops and with images on its lists makes the merge
  one without crops (it counts as an empty table when its lists are empty).

- **Floors** (:func:`floors`, :func:`prune`): a partial whose list for channel ``c`` is full
  proves that ``k`` images score at least its last value, so no image scoring less can be in
  the final top ``k``. A chunk may drop such entries (and not cut their crops) using the
  floors of partials that will be merged with it: the merged result is the same.

Scores containing NaN are refused (``ValueError``): they would have no place in the order.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.top_example_crops import Patches, merge_patches


class BoxOf(Protocol):
    """Anything giving unit ``(y, x)``'s pixel box ``[x0, y0, x1, y1]`` (half-open), such as
    :class:`models.receptive_field.ReceptiveGrid`."""

    def box(self, y: int, x: int) -> list[int]: ...


def log_edges(low: float = 1e-3, high: float = 1e4, per_decade: int = 4) -> np.ndarray:
    """Signed log-spaced bin edges, float64: ``−high .. −low, 0, low .. high``.

    ``per_decade`` edges per factor of 10 on each side. The defaults give 59 edges (60
    counts) covering ReLU outputs and pre-activations of any usual scale.
    """
    if not (0 < low < high) or per_decade < 1:
        raise ValueError(f"need 0 < low < high and per_decade >= 1, got {low}, {high}, "
                         f"{per_decade}")
    steps = int(round(np.log10(high / low) * per_decade))
    positive = low * 10.0 ** (np.arange(steps + 1) / per_decade)
    return np.concatenate([-positive[::-1], [0.0], positive])


@dataclass
class TopExamplesPartial:
    """Top examples of ``C = len(channels)`` channels over the images seen so far.

    ``values`` float32 ``(C, k)``, ``images`` int64 ``(C, k)``, ``ys``/``xs`` int64
    ``(C, k)``: row ``c`` is channel ``channels[c]``'s top list in order; unused slots hold
    image ``-1`` and value ``-inf``. ``edges`` float64 ``(m,)``; ``counts`` int64
    ``(C, m + 1)``; ``dead`` int64 ``(C,)``; ``seen`` and ``corrupt`` image counts;
    ``patches`` the crops of the units on the top lists, or None
    (:mod:`models.top_example_crops`).
    """

    channels: list[int]
    k: int
    edges: np.ndarray
    values: np.ndarray
    images: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    counts: np.ndarray
    dead: np.ndarray
    seen: int = 0
    corrupt: int = 0
    patches: Patches | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: lists for the small fields, the arrays zlib-compressed in base64 (the
        crops' pixels raw in base64, :meth:`Patches.to_dict`)."""
        patches = {} if self.patches is None else {"patches": self.patches.to_dict()}
        return {**self._fields(), **patches}

    def to_bytes(self) -> bytes:
        """Compact storage: :meth:`to_dict` as JSON but for the crops' pixels, a newline,
        then the pixels raw (no base64 to encode and decode)."""
        if self.patches is None:
            return json.dumps(self._fields()).encode() + b"\n"
        head = {**self._fields(), "patches": self.patches.header()}
        return json.dumps(head).encode() + b"\n" + self.patches.pixel_bytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TopExamplesPartial:
        """The inverse of :meth:`to_bytes`."""
        head, _, pixels = raw.partition(b"\n")
        data = json.loads(head)
        partial = cls.from_dict({k: v for k, v in data.items() if k != "patches"})
        if "patches" in data:
            partial.patches = Patches.from_header(data["patches"], pixels)
        return partial

    def _fields(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "k": self.k,
                "edges": [float(e) for e in self.edges], "seen": self.seen,
                "corrupt": self.corrupt, "dead": [int(d) for d in self.dead],
                **{name: _pack(getattr(self, name), dtype) for name, dtype in _PACKED.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopExamplesPartial:
        """The inverse of :meth:`to_dict`; ValueError when an array has the wrong size."""
        channels, k = [int(c) for c in data["channels"]], int(data["k"])
        edges = np.asarray(data["edges"], np.float64)
        shapes = {"counts": (len(channels), len(edges) + 1)}
        arrays = {name: _unpack(data[name], dtype, shapes.get(name, (len(channels), k)))
                  for name, dtype in _PACKED.items()}
        patches = Patches.from_dict(data["patches"]) if "patches" in data else None
        return cls(channels, k, edges, dead=np.asarray(data["dead"], np.int64).reshape(-1),
                   seen=int(data["seen"]), corrupt=int(data["corrupt"]), patches=patches,
                   **arrays)


_TOP_FIELDS = ("values", "images", "ys", "xs")
_PACKED = {"values": "<f4", "images": "<i8", "ys": "<i8", "xs": "<i8", "counts": "<i8"}


def _pack(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array, dtype).tobytes())).decode()


def _unpack(text: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    flat = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype)
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"packed array of {flat.size} values does not fit shape {shape}")
    return flat.reshape(shape).astype(np.dtype(dtype).newbyteorder("="))


def _best(values: np.ndarray, images: np.ndarray, ys: np.ndarray, xs: np.ndarray, *,
          k: int) -> tuple[np.ndarray, ...]:
    """The first ``k`` columns of each row of ``(C, M)`` candidates in top-list order (empty
    slots last, then larger value, then smaller image), padded with empty slots to ``k``."""
    order = np.lexsort((images, -values, images < 0), axis=-1)[:, :k]
    picked = [np.take_along_axis(a, order, axis=1) for a in (values, images, ys, xs)]
    missing = k - order.shape[1]
    fills = (-np.inf, -1, 0, 0)
    return tuple(np.pad(a, ((0, 0), (0, missing)), constant_values=f)
                 for a, f in zip(picked, fills, strict=True))


def _check_chunk(acts: np.ndarray, indices: np.ndarray, channels: list[int]) -> None:
    if acts.ndim != 4:
        raise ValueError(f"activations must be (N, H, W, C), got shape {acts.shape}")
    if indices.shape != (acts.shape[0],):
        raise ValueError(f"{acts.shape[0]} images but indices of shape {indices.shape}")
    if indices.size and (indices.min() < 0 or np.unique(indices).size != indices.size):
        raise ValueError("image indices must be unique and >= 0")
    bad = [c for c in channels if not 0 <= c < acts.shape[-1]]
    if bad:
        raise ValueError(f"channels {bad} out of range for a layer of {acts.shape[-1]}")


def chunk_partial(activations: np.ndarray, indices: Sequence[int] | np.ndarray,
                  channels: Sequence[int] | None = None, k: int = 9,
                  edges: np.ndarray | None = None, corrupt: int = 0) -> TopExamplesPartial:
    """The partial of one chunk: ``activations`` ``(N, H, W, C)``, ``indices`` ``(N,)`` the
    images' global indices, ``channels`` (default all), ``edges`` (default
    :func:`log_edges`), ``corrupt`` the chunk's unreadable images."""
    acts = np.asarray(activations, np.float32)
    index = np.asarray(indices, np.int64).reshape(-1)
    chosen = list(range(acts.shape[-1])) if channels is None else [int(c) for c in channels]
    _check_chunk(acts, index, chosen)
    n, _, w, _ = acts.shape
    flat = acts[..., chosen].reshape(n, -1, len(chosen))
    where = flat.argmax(axis=1)  # (N, C): first maximum in row-major order
    scores = np.take_along_axis(flat, where[:, None, :], axis=1)[:, 0, :]
    if np.isnan(scores).any():
        raise ValueError("activations contain NaN")
    partial = empty_partial(chosen, k, edges, corrupt)
    candidates = (scores.T, np.broadcast_to(index, scores.T.shape), where.T // w, where.T % w)
    partial.values, partial.images, partial.ys, partial.xs = _best(*candidates, k=k)
    bins = np.searchsorted(partial.edges, scores.astype(np.float64), side="right")
    m = len(partial.edges) + 1
    flat_bins = (bins + m * np.arange(len(chosen))).ravel()
    partial.counts = np.bincount(flat_bins, minlength=m * len(chosen)).reshape(-1, m)
    partial.dead = (scores <= 0).sum(axis=0).astype(np.int64)
    partial.seen = n
    return partial


def empty_partial(channels: Sequence[int], k: int = 9, edges: np.ndarray | None = None,
                  corrupt: int = 0) -> TopExamplesPartial:
    """A partial that has seen no image (e.g. a chunk whose images were all unreadable)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    edges = log_edges() if edges is None else np.asarray(edges, np.float64)
    if edges.ndim != 1 or (np.diff(edges) <= 0).any():
        raise ValueError("edges must be strictly increasing")
    c = len(channels)
    return TopExamplesPartial(
        [int(ch) for ch in channels], k, edges, np.full((c, k), -np.inf, np.float32),
        np.full((c, k), -1, np.int64), np.zeros((c, k), np.int64), np.zeros((c, k), np.int64),
        np.zeros((c, len(edges) + 1), np.int64), np.zeros(c, np.int64), 0, int(corrupt))


def floors(partial: TopExamplesPartial) -> np.ndarray:
    """float64 ``(C,)``: per channel, the last value of its top list when the list is full
    (``k`` images score at least that much), else ``-inf`` (no bound yet)."""
    last = partial.values[:, -1].astype(np.float64)
    return np.where(partial.images[:, -1] >= 0, last, -np.inf)


def prune(partial: TopExamplesPartial, bounds: np.ndarray) -> int:
    """Empty, in place, the top-list slots scoring below ``bounds`` ``(C,)`` (floors of
    partials that will be merged with this one: :func:`floors`); those images cannot be in
    the final lists. Strictly below: an equal score may still win on its image index. Returns
    the number of slots emptied. Call before crops are cut (the partial must have none)."""
    if partial.patches is not None:
        raise ValueError("prune a partial before its crops are cut")
    bounds = np.asarray(bounds, np.float64).reshape(-1)
    if bounds.shape != (len(partial.channels),):
        raise ValueError(f"{bounds.size} floors for {len(partial.channels)} channels")
    below = (partial.images >= 0) & (partial.values.astype(np.float64) < bounds[:, None])
    partial.values[below] = -np.inf  # lists stay in order: a list's lowest are its last
    partial.images[below] = -1
    partial.ys[below] = 0
    partial.xs[below] = 0
    return int(below.sum())


def merge(a: TopExamplesPartial, b: TopExamplesPartial) -> TopExamplesPartial:
    """The partial of the images of ``a`` and ``b`` together (associative, commutative)."""
    return _merge_group([a, b])


MERGE_GROUP = 16  # partials merge_many sorts together (and holds) at a time


def merge_many(partials: Iterable[TopExamplesPartial]) -> TopExamplesPartial:
    """:func:`merge` of all ``partials`` (at least one), the same result as merging them
    pair by pair in any order (top lists are totally ordered: value, then image), but the
    lists of :data:`MERGE_GROUP` partials at a time are sorted together: 40 chunk partials
    of ``shapes`` ``conv4`` merged pair by pair took 39 sorts and crop lookups. At most a
    group and the result so far are held at once."""
    merged: TopExamplesPartial | None = None
    group: list[TopExamplesPartial] = []
    for partial in partials:
        group.append(partial)
        if len(group) == MERGE_GROUP:
            merged = _merge_group(([merged] if merged is not None else []) + group)
            group = []
    if group:
        merged = _merge_group(([merged] if merged is not None else []) + group)
    if merged is None:
        raise ValueError("no partial to merge")
    return merged


def _merge_group(parts: list[TopExamplesPartial]) -> TopExamplesPartial:
    first = parts[0]
    if len(parts) == 1:
        return first
    if any(p.channels != first.channels or p.k != first.k or
           not np.array_equal(p.edges, first.edges) for p in parts[1:]):
        raise ValueError("partials of different channels, k or histogram edges do not merge")
    values, images, ys, xs = _best(
        *(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in _TOP_FIELDS),
        k=first.k)
    return TopExamplesPartial(list(first.channels), first.k, first.edges.copy(), values, images,
                              ys, xs, np.sum([p.counts for p in parts], axis=0),
                              np.sum([p.dead for p in parts], axis=0),
                              sum(p.seen for p in parts), sum(p.corrupt for p in parts),
                              _merged_patches(parts, images, ys, xs))


def _merged_patches(parts: list[TopExamplesPartial], images: np.ndarray, ys: np.ndarray,
                    xs: np.ndarray) -> Patches | None:
    """The crops of the merged lists, or None when one part has images but no crops (a part
    without either counts as an empty table): order-free, as a merged partial has images on
    its lists when one of its parts had."""
    if any(p.patches is None and (p.images >= 0).any() for p in parts):
        return None
    tables = [p.patches for p in parts if p.patches is not None]
    return merge_patches(tables, images, ys, xs) if tables else None


def finish(partial: TopExamplesPartial, receptive: BoxOf) -> list[dict[str, Any]]:
    """The public result: ``[{"index", "dead_fraction", "histogram": {"edges", "counts"},
    "top": [{"image", "value", "y", "x", "crop": [x0, y0, x1, y1]}]}]`` per channel, in
    ``partial.channels`` order; ``crop`` is ``receptive.box(y, x)``."""
    out = []
    for row, channel in enumerate(partial.channels):
        top = [{"image": int(i), "value": float(v), "y": int(y), "x": int(x),
                "crop": receptive.box(int(y), int(x))}
               for v, i, y, x in zip(partial.values[row], partial.images[row],
                                     partial.ys[row], partial.xs[row], strict=True) if i >= 0]
        dead = float(partial.dead[row] / partial.seen) if partial.seen else 0.0
        histogram = {"edges": [float(e) for e in partial.edges],
                     "counts": [int(n) for n in partial.counts[row]]}
        out.append({"index": channel, "dead_fraction": dead, "histogram": histogram,
                    "top": top})
    return out
