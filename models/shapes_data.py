"""Synthetic "shapes" images with known class and bounding box.

Each image is an RGB ``(size, size, 3)`` uint8 array: one (or, for pairs, two) filled
geometric shapes in a random colour, size, rotation and position, over a textured
background (a smooth colour gradient, faint stripes and Gaussian noise). The class of a
shape is its geometry only: colours are drawn per image, independently of the class.

Everything is deterministic from the seed (one :class:`numpy.random.Generator`) and
vectorised with NumPy masks, so tens of thousands of images generate in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

# Shapes of radius r are sized to cover about the same area, 2.2 r^2, so that the amount of
# background left in an image says nothing about the class. Every shape fits in a disc of
# radius _EXTENT * r around its centre (the star's and triangle's tips reach it).
_EXTENT = 1.3
_CHUNK = 1024  # images rendered at once; bounds peak memory at a few tens of MB
_PAIR_MARGIN = 3  # minimum gap in pixels between the two boxes of a pair


@dataclass(frozen=True)
class ShapeBatch:
    """One shape per image.

    Attributes:
        images: uint8 ``(n, size, size, 3)`` RGB.
        labels: int64 ``(n,)`` index into :data:`CLASSES`.
        boxes: int64 ``(n, 4)`` as ``(y0, x0, y1, x1)``, end exclusive: the tight pixel
            bounding box of the drawn shape.
        colors: uint8 ``(n, 3)`` RGB fill colour of the shape (before noise).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    colors: np.ndarray


@dataclass(frozen=True)
class PairBatch:
    """Two shapes of different classes per image, with non-overlapping boxes.

    Attributes:
        images: uint8 ``(n, size, size, 3)`` RGB.
        labels: int64 ``(n, 2)``; ``labels[i, 0] != labels[i, 1]``.
        boxes: int64 ``(n, 2, 4)`` as ``(y0, x0, y1, x1)``, end exclusive.
        colors: uint8 ``(n, 2, 3)`` RGB fill colour of each shape.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    colors: np.ndarray


# --- shape masks -------------------------------------------------------------------------
# Each takes rotated coordinates u, v relative to the shape centre, shape (m, size, size),
# and radii r of shape (m, 1, 1); it returns a bool mask of shape (m, size, size).

MaskFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _circle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return u * u + v * v <= (0.84 * r) ** 2


def _ring(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    rho2 = u * u + v * v
    return (rho2 <= r * r) & (rho2 >= (0.55 * r) ** 2)


def _square(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.74 * r


def _triangle(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    inradius = 0.5 * 1.3 * r  # equilateral, circumradius 1.3 r
    mask = np.ones(u.shape, dtype=bool)
    for k in range(3):
        a = np.pi / 2 + k * 2 * np.pi / 3  # outward normals of the three sides
        mask &= u * np.cos(a) + v * np.sin(a) <= inradius
    return mask


def _star(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    points, outer = 5, 1.3 * r
    inner = 0.45 * outer
    half = np.pi / points
    # Fold the angle into [0, half]: 0 points at an outer vertex, `half` at an inner one.
    psi = half - np.abs(np.mod(np.arctan2(v, u), 2 * half) - half)
    rho = np.sqrt(u * u + v * v)
    px, py = rho * np.cos(psi), rho * np.sin(psi)
    ex, ey = inner * np.cos(half) - outer, inner * np.sin(half)  # edge outer -> inner vertex
    # Inside when on the same side of the edge as the origin (cross product sign).
    return ex * py - ey * (px - outer) >= 0


def _cross(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    au, av, arm, half_width = np.abs(u), np.abs(v), r, 0.33 * r
    return ((au <= half_width) & (av <= arm)) | ((av <= half_width) & (au <= arm))


_MASKS: dict[str, MaskFn] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
}


def shape_masks(
    labels: np.ndarray, centers: np.ndarray, radii: np.ndarray, angles: np.ndarray, size: int
) -> np.ndarray:
    """Rasterise one shape per image.

    Args:
        labels: int ``(m,)`` class indices into :data:`CLASSES`.
        centers: float ``(m, 2)`` as ``(cy, cx)`` in pixels.
        radii: float ``(m,)`` shape radius in pixels.
        angles: float ``(m,)`` rotation in radians.
        size: image height and width.

    Returns:
        bool ``(m, size, size)`` masks.
    """
    grid = np.arange(size, dtype=np.float32) + 0.5
    dy = grid[None, :, None] - centers[:, 0, None, None].astype(np.float32)
    dx = grid[None, None, :] - centers[:, 1, None, None].astype(np.float32)
    cos = np.cos(angles).astype(np.float32)[:, None, None]
    sin = np.sin(angles).astype(np.float32)[:, None, None]
    u, v = dx * cos + dy * sin, dy * cos - dx * sin
    r = radii.astype(np.float32)[:, None, None]
    masks = np.zeros((len(labels), size, size), dtype=bool)
    for index, name in enumerate(CLASSES):
        sel = np.flatnonzero(labels == index)
        if sel.size:
            masks[sel] = _MASKS[name](u[sel], v[sel], r[sel])
    return masks


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight bounding boxes of bool masks ``(m, H, W)`` -> int64 ``(m, 4)`` (y0, x0, y1, x1)."""
    rows: np.ndarray = np.asarray(masks.any(axis=2))
    cols: np.ndarray = np.asarray(masks.any(axis=1))
    height, width = masks.shape[1:]
    y0, y1 = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    return np.stack([y0, x0, y1, x1], axis=1).astype(np.int64)


# --- backgrounds and colours -------------------------------------------------------------


@dataclass(frozen=True)
class _Background:
    """Per-image background parameters, each with leading dimension n."""

    start: np.ndarray  # (n, 3) colour at one end of the gradient
    end: np.ndarray  # (n, 3) colour at the other end
    direction: np.ndarray  # (n,) gradient direction, radians
    stripe_amp: np.ndarray  # (n,) stripe amplitude in grey levels
    stripe_freq: np.ndarray  # (n,) radians per pixel
    stripe_dir: np.ndarray  # (n,)
    stripe_phase: np.ndarray  # (n,)
    noise: np.ndarray  # (n,) standard deviation of the (uniform) pixel noise


def _sample_background(rng: np.random.Generator, n: int) -> _Background:
    start = rng.uniform(0, 255, (n, 3))
    end = np.clip(start + rng.normal(0, 60, (n, 3)), 0, 255)
    return _Background(
        start=start,
        end=end,
        direction=rng.uniform(0, 2 * np.pi, n),
        stripe_amp=rng.uniform(0, 14, n),
        stripe_freq=rng.uniform(0.3, 1.2, n),
        stripe_dir=rng.uniform(0, np.pi, n),
        stripe_phase=rng.uniform(0, 2 * np.pi, n),
        noise=rng.uniform(2, 12, n),
    )


def _render_background(bg: _Background, sel: slice, size: int) -> np.ndarray:
    """Smooth gradient plus stripes for images ``sel`` -> float32 ``(m, 3, size, size)``.

    Channels first: NumPy broadcasts far faster over a long last axis than over one of 3.
    """
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    yy, xx = grid[None, :, None], grid[None, None, :]

    def project(angle: np.ndarray) -> np.ndarray:
        a = angle[sel].astype(np.float32)[:, None, None]
        return xx * np.cos(a) + yy * np.sin(a)

    t = project(bg.direction) * np.sqrt(np.float32(0.5)) + np.float32(0.5)
    start = bg.start[sel].astype(np.float32)[:, :, None, None]
    diff = bg.end[sel].astype(np.float32)[:, :, None, None] - start
    freq = (bg.stripe_freq[sel] * size).astype(np.float32)[:, None, None]
    phase = bg.stripe_phase[sel].astype(np.float32)[:, None, None]
    amp = bg.stripe_amp[sel].astype(np.float32)[:, None, None]
    stripes = amp * np.sin(freq * project(bg.stripe_dir) + phase)
    canvas = np.multiply(t[:, None], diff, dtype=np.float32)
    canvas += start
    canvas += stripes[:, None]
    return canvas


def _contrasting_colors(rng: np.random.Generator, bg: _Background, tries: int = 8) -> np.ndarray:
    """Per image, the candidate colour farthest from the background -> uint8 ``(n, 3)``."""
    n = len(bg.start)
    candidates = rng.integers(0, 256, (n, tries, 3)).astype(np.float64)
    refs = np.stack([bg.start, bg.end, (bg.start + bg.end) / 2], axis=1)  # (n, 3, 3)
    dist = np.linalg.norm(candidates[:, :, None, :] - refs[:, None, :, :], axis=-1).min(axis=2)
    best = dist.argmax(axis=1)
    return candidates[np.arange(n), best].astype(np.uint8)


# --- public generators -------------------------------------------------------------------


def _render(
    rng: np.random.Generator,
    objects: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    bg: _Background,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``k`` shapes per image over its background, then add noise.

    Args:
        objects: ``(labels (n, k), centers (n, k, 2), radii (n, k), angles (n, k),
            colors (n, k, 3))``; later shapes are drawn over earlier ones.

    Returns:
        images uint8 ``(n, size, size, 3)`` and boxes int64 ``(n, k, 4)``.
    """
    labels, centers, radii, angles, colors = objects
    n, k = labels.shape
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, k, 4), dtype=np.int64)
    for start in range(0, n, _CHUNK):
        sel = slice(start, min(start + _CHUNK, n))
        canvas = _render_background(bg, sel, size)
        for j in range(k):
            masks = shape_masks(
                labels[sel, j], centers[sel, j], radii[sel, j], angles[sel, j], size
            )
            boxes[sel, j] = mask_boxes(masks)
            color = colors[sel, j].astype(np.float32)[:, :, None, None]
            np.copyto(canvas, np.broadcast_to(color, canvas.shape), where=masks[:, None])
        _add_noise(rng, canvas, bg.noise[sel])
        np.clip(canvas, 0, 255, out=canvas)
        images[sel] = canvas.astype(np.uint8).transpose(0, 2, 3, 1)
    return images, boxes


def _add_noise(rng: np.random.Generator, canvas: np.ndarray, std: np.ndarray) -> None:
    """Add zero-mean uniform noise of per-image ``std (m,)`` to ``canvas (m, 3, H, W)`` in place.

    Uniform rather than Gaussian noise: it is several times faster to draw, and looks alike.
    """
    noise = rng.random(canvas.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= (std * np.sqrt(12.0)).astype(np.float32)[:, None, None, None]
    canvas += noise
    canvas += np.float32(0.5)  # so that the truncating cast to uint8 rounds


def _uniform_centers(rng: np.random.Generator, extent: np.ndarray, size: int) -> np.ndarray:
    """Centres ``(..., 2)`` keeping a disc of radius ``extent (...)`` inside the image."""
    low = extent[..., None]
    return rng.uniform(low, size - low, (*extent.shape, 2))


def generate_shapes(n: int, seed: int, size: int = 64) -> ShapeBatch:
    """Generate ``n`` images with one shape each, classes balanced and shuffled.

    Args:
        n: number of images.
        seed: seed of the :class:`numpy.random.Generator`; same seed, same images.
        size: image height and width in pixels.

    Returns:
        A :class:`ShapeBatch` with images ``(n, size, size, 3)``, labels ``(n,)`` and
        boxes ``(n, 4)``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    radii = rng.uniform(0.11 * size, 0.24 * size, n)
    centers = _uniform_centers(rng, _EXTENT * radii + 0.5, size)
    angles = rng.uniform(0, 2 * np.pi, n)
    bg = _sample_background(rng, n)
    colors = _contrasting_colors(rng, bg)
    objects = (labels[:, None], centers[:, None], radii[:, None], angles[:, None], colors[:, None])
    images, boxes = _render(rng, objects, bg, size)
    return ShapeBatch(images=images, labels=labels, boxes=boxes[:, 0], colors=colors)


def _place_pairs(rng: np.random.Generator, radii: np.ndarray, size: int) -> np.ndarray:
    """Centres ``(n, 2, 2)`` whose shapes' boxes are at least ``_PAIR_MARGIN`` apart.

    Rejection sampling, vectorised over the images still pending; ``radii (n, 2)`` is
    shrunk in place for an image that keeps failing, so the loop always ends.
    """
    centers = np.empty((len(radii), 2, 2))
    pending = np.arange(len(radii))
    for attempt in range(1000):
        if attempt and attempt % 20 == 0:
            radii[pending] *= 0.9
        extent = _EXTENT * radii[pending] + 0.5
        trial = _uniform_centers(rng, extent, size)
        gap = np.abs(trial[:, 0] - trial[:, 1]) - extent.sum(axis=1, keepdims=True)
        ok = (gap >= _PAIR_MARGIN).any(axis=1)
        centers[pending[ok]] = trial[ok]
        pending = pending[~ok]
        if not pending.size:
            return centers
    raise RuntimeError(f"could not place pairs in a {size}x{size} image")


def generate_pairs(n: int, seed: int, size: int = 64) -> PairBatch:
    """Generate ``n`` images with two shapes of different classes and disjoint boxes.

    Args:
        n: number of images.
        seed: seed of the :class:`numpy.random.Generator`; same seed, same images.
        size: image height and width in pixels.

    Returns:
        A :class:`PairBatch` with images ``(n, size, size, 3)``, labels ``(n, 2)`` and
        boxes ``(n, 2, 4)``.
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    first = rng.integers(0, k, n)
    labels = np.stack([first, (first + rng.integers(1, k, n)) % k], axis=1).astype(np.int64)
    radii = rng.uniform(0.11 * size, 0.17 * size, (n, 2))
    centers = _place_pairs(rng, radii, size)
    angles = rng.uniform(0, 2 * np.pi, (n, 2))
    bg = _sample_background(rng, n)
    colors = np.stack([_contrasting_colors(rng, bg), _contrasting_colors(rng, bg)], axis=1)
    images, boxes = _render(rng, (labels, centers, radii, angles, colors), bg, size)
    return PairBatch(images=images, labels=labels, boxes=boxes, colors=colors)
