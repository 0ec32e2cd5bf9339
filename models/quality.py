"""How good is a heatmap? Deletion / insertion curves and the pointing game.

- Deletion and insertion: Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018, Sec. 4.1. Pixels are removed (replaced by a
  baseline) or inserted (into the baseline) most-salient first; the class probability is
  recorded after each step. A good map gives a low deletion area and a high insertion area.
- Pointing game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016:
  a hit when the heatmap's maximum falls inside the object's box (within a tolerance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _trapezoid_area(curve: np.ndarray) -> float:
    """Area under ``curve`` sampled at evenly spaced fractions of 0..1."""
    return float(np.sum((curve[1:] + curve[:-1]) / 2.0) / (len(curve) - 1))


def saliency_curve(
    predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, heatmap: np.ndarray,
    class_index: int, mode: str = "deletion", steps: int = 16,
    baseline: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The class probability as pixels are deleted / inserted, and the curve's area.

    ``predict`` maps raw images ``(n, H, W, C)`` to probabilities ``(n, K)``; ``image`` is
    ``(H, W, C)`` and ``heatmap`` ``(H, W)``. Returns ``(curve (steps + 1,), area)``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {image.shape[:2]}")
    base = np.zeros_like(image, dtype=np.float32) if baseline is None else baseline
    order = np.argsort(-heatmap.ravel(), kind="stable")
    n = order.size
    frames = []
    for k in range(steps + 1):
        chosen = np.zeros(n, dtype=bool)
        chosen[order[: round(n * k / steps)]] = True
        mask = chosen.reshape(heatmap.shape)[..., None]
        if mode == "deletion":
            frames.append(np.where(mask, base, image))
        else:
            frames.append(np.where(mask, image, base))
    probs = predict(np.stack(frames).astype(np.float32))[:, class_index]
    return probs, _trapezoid_area(probs)


def pointing_hit(heatmap: np.ndarray, box: tuple[int, int, int, int], tolerance: int = 0) -> bool:
    """Whether the heatmap's maximum lies in ``box`` (y0, x0, y1, x1, end-exclusive) ± tolerance."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    y0, x0, y1, x1 = box
    return bool(y0 - tolerance <= y < y1 + tolerance and x0 - tolerance <= x < x1 + tolerance)


def pointing_game(heatmaps: np.ndarray, boxes: np.ndarray, tolerance: int = 0) -> float:
    """Fraction of hits over ``heatmaps`` ``(n, H, W)`` and ``boxes`` ``(n, 4)``."""
    hits = [pointing_hit(h, tuple(b), tolerance) for h, b in zip(heatmaps, boxes, strict=True)]
    return float(np.mean(hits)) if hits else 0.0
