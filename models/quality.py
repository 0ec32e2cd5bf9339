"""How good is a heatmap? Deletion / insertion curves, their areas, and the pointing game,
with the reference maps and baseline images they are compared against.

- Deletion and insertion: Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018, Sec. 4.1. Pixels are removed (replaced by a
  baseline image) or inserted (into the baseline image) most-salient first; the target
  class's probability is recorded after each of ``steps`` equal steps, and the area is
  the trapezoid rule over the fraction of pixels in [0, 1]. A good map gives a low deletion
  area and a high insertion area. The baseline is a blurred copy of the image
  (:func:`gaussian_blur`; a black one barely moves a model that looks at shape) or black.
- Pointing game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016:
  a hit when the heatmap's maximum (the first in row-major order) falls inside a box.
- References: a seeded uniform random map per image (:func:`random_map`) and a centred
  Gaussian (:func:`centre_gaussian`), scored like any method.

Images are ``(H, W, C)`` (``(N, H, W, C)`` for batches), heatmaps ``(H, W)`` / ``(N, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # images (n, H, W, C) -> probabilities (n, K)
MODES = ("deletion", "insertion")


def trapezoid_auc(curves: np.ndarray) -> np.ndarray:
    """Area under ``curves`` ``(..., S + 1)`` sampled at fractions ``0, 1/S, .., 1``:
    ``(...)``, by the trapezoid rule."""
    curves = np.asarray(curves, np.float64)
    return np.sum(curves[..., 1:] + curves[..., :-1], axis=-1) / (2.0 * (curves.shape[-1] - 1))


def _trapezoid_area(curve: np.ndarray) -> float:
    return float(trapezoid_auc(curve))


def step_masks(heatmap: np.ndarray, steps: int) -> np.ndarray:
    """``(steps + 1, H, W)`` bool: at step ``k`` the ``round(H·W·k / steps)`` pixels with the
    highest heat (ties: the first in row-major order) are chosen."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    order = np.argsort(-heatmap.ravel(), kind="stable")
    ranks = np.empty(order.size, np.int64)
    ranks[order] = np.arange(order.size)
    counts = np.array([round(order.size * k / steps) for k in range(steps + 1)])
    return (ranks[None, :] < counts[:, None]).reshape(steps + 1, *heatmap.shape)


def curve_frames(image: np.ndarray, heatmap: np.ndarray, baseline: np.ndarray, mode: str,
                 steps: int) -> np.ndarray:
    """The ``(steps + 1, H, W, C)`` float32 images a curve is measured on."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {image.shape[:2]}")
    masks = step_masks(heatmap, steps)[..., None]
    first, second = (baseline, image) if mode == "deletion" else (image, baseline)
    return np.where(masks, first[None], second[None]).astype(np.float32)


def saliency_curve(
    predict: Predict, image: np.ndarray, heatmap: np.ndarray, class_index: int,
    mode: str = "deletion", steps: int = 16, baseline: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The class probability as pixels are deleted / inserted, and the curve's area, for one
    image; ``baseline`` defaults to black. Returns ``(curve (steps + 1,), area)``."""
    base = np.zeros_like(image, dtype=np.float32) if baseline is None else baseline
    probs = predict(curve_frames(image, heatmap, base, mode, steps))[:, class_index]
    return probs, _trapezoid_area(probs)


def deletion_insertion(
    predict: Predict, images: np.ndarray, heatmaps: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    baselines: np.ndarray, steps: int = 16, max_frames: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves ``(N, steps + 1)`` each of ``images`` ``(N, H, W, C)``
    under ``heatmaps`` ``(N, H, W)``, for class ``targets[i]``, towards ``baselines``
    ``(N, H, W, C)``. ``predict`` sees at most about ``max_frames`` images at a time."""
    n, frames = len(images), 2 * (steps + 1)
    deletion = np.zeros((n, steps + 1), np.float64)
    insertion = np.zeros((n, steps + 1), np.float64)
    group = max(1, max_frames // frames)
    for start in range(0, n, group):
        part = range(start, min(n, start + group))
        batch = np.concatenate([curve_frames(images[i], heatmaps[i], baselines[i], mode, steps)
                                for i in part for mode in MODES])
        probs = np.asarray(predict(batch), np.float64).reshape(len(part), 2, steps + 1, -1)
        for j, i in enumerate(part):
            deletion[i], insertion[i] = probs[j, 0, :, targets[i]], probs[j, 1, :, targets[i]]
    return deletion, insertion


def pointing_hit(heatmap: np.ndarray, box: tuple[int, int, int, int], tolerance: int = 0) -> bool:
    """Whether the heatmap's maximum lies in ``box`` (y0, x0, y1, x1, end-exclusive) ± tolerance."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    y0, x0, y1, x1 = box
    return bool(y0 - tolerance <= y < y1 + tolerance and x0 - tolerance <= x < x1 + tolerance)


def pointing_game(heatmaps: np.ndarray, boxes: np.ndarray, tolerance: int = 0) -> float:
    """Fraction of hits over ``heatmaps`` ``(n, H, W)`` and ``boxes`` ``(n, 4)``."""
    hits = [pointing_hit(h, tuple(b), tolerance) for h, b in zip(heatmaps, boxes, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def points_into(heatmap: np.ndarray, boxes_xyxy: Sequence[Sequence[float]]) -> bool:
    """Whether the heatmap's maximum lies in any of ``boxes_xyxy`` (``[x0, y0, x1, y1]``,
    ``x1``/``y1`` exclusive, in the heatmap's pixels); False for no boxes."""
    return any(pointing_hit(heatmap, (int(y0), int(x0), int(y1), int(x1)))
               for x0, y0, x1, y1 in boxes_xyxy)


def scale_box(box_xyxy: Sequence[float], size: tuple[int, int],
              to: tuple[int, int]) -> list[int]:
    """Box ``[x0, y0, x1, y1]`` of an image of ``size`` ``(h, w)`` in the pixels of the same
    image resized to ``to`` ``(H, W)``: the smallest whole-pixel box covering it."""
    (h, w), (height, width) = size, to
    x0, y0, x1, y1 = box_xyxy
    return [math.floor(x0 * width / w), math.floor(y0 * height / h),
            math.ceil(x1 * width / w), math.ceil(y1 * height / h)]


def random_map(shape: tuple[int, int], seed: int, index: int) -> np.ndarray:
    """A uniform random map ``(H, W)`` float32 of image ``index``: the same for the same
    ``(seed, index)`` whatever else is drawn, so chunking does not change it."""
    return np.random.default_rng([seed, index]).random(shape, dtype=np.float32)


def centre_gaussian(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A Gaussian ``(H, W)`` float32 centred on the image, 1 at the centre, with standard
    deviation ``sigma`` times the shorter side."""
    height, width = shape
    y = (np.arange(height) - (height - 1) / 2.0)[:, None]
    x = (np.arange(width) - (width - 1) / 2.0)[None, :]
    spread = 2.0 * (sigma * min(height, width)) ** 2
    return np.exp(-(y**2 + x**2) / spread).astype(np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian, radius ``ceil(3 sigma)``."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """``images`` ``(N, H, W, C)`` blurred by a separable Gaussian of ``sigma`` pixels,
    mirrored at the borders (a constant image stays constant); float32."""
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = np.asarray(images, np.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        size = out.shape[axis]
        out = sum(weight * np.take(padded, range(k, k + size), axis=axis)
                  for k, weight in enumerate(kernel))
    return out.astype(np.float32)


BASELINES = ("blur", "black")
BLUR_SIGMA = 0.1  # the blur baseline's standard deviation, times the image's shorter side


def baseline_images(images: np.ndarray, baseline: str = "blur") -> np.ndarray:
    """What deleted pixels become: ``images`` ``(N, H, W, C)`` blurred by a Gaussian of
    :data:`BLUR_SIGMA` times the shorter side (``blur``), or zeros (``black``)."""
    if baseline == "black":
        return np.zeros_like(images, dtype=np.float32)
    if baseline != "blur":
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    return gaussian_blur(images, BLUR_SIGMA * min(images.shape[1:3]))


def boxes_for(target: int, boxes: Sequence[tuple[int, Sequence[float]]]) -> list:
    """The boxes the pointing game uses for an image explained as class ``target``: its
    boxes of that class (``(class index, [x0, y0, x1, y1])``), else all its boxes."""
    own = [box for cls, box in boxes if cls == target]
    return own or [box for _, box in boxes]
