"""Faithfulness of each image's own map: its deletion and insertion curves and areas
(:func:`models.quality.deletion_insertion`, Petsiuk et al. 2018, Sec. 4.1) beside those of a
seeded random map (:func:`models.quality.random_map`) on the same image.

Pixels are taken most-salient first, by the map's value, highest first (ties: row-major
order): for a Grad-CAM heatmap its heat, for a signed saliency map its signed value, so the
pixels that raise the explained score go first and those that lower it last. The curve is the
probability of the explained target: ``p`` of the class, or ``1 - p`` when the map explains
what lowers it (``negative``), so that for both a faithful map has a low deletion area and a
high insertion area.

The random map is drawn from ``seed`` alone (image index 0 of :func:`random_map`), the same
for every image of one size: an image's result does not depend on the images beside it.

Each image takes ``4 (steps + 1)`` model calls' worth of frames (two maps, two curves); the
model sees at most :data:`FRAME_PIXELS` input pixels at a time (32 frames of 224×224, about
400 of 64×64), so a large model at 128 steps does not get hundreds of frames in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.quality import Predict, baseline_images, deletion_insertion, random_map, trapezoid_auc

CURVES = ("deletion", "insertion", "random_deletion", "random_insertion")
FRAME_PIXELS = 32 * 224 * 224  # input pixels per model call


@dataclass
class ImageCurves:
    """Curves ``(N, steps + 1)`` of each image's map and of the random map."""

    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray

    def summary(self, i: int) -> dict[str, object]:
        """Image ``i``'s ``<curve>_auc`` (float) and ``<curve>_curve`` (list) of each of
        :data:`CURVES`."""
        out: dict[str, object] = {}
        for name in CURVES:
            curve = getattr(self, name)[i]
            out[f"{name}_auc"] = float(trapezoid_auc(curve))
            out[f"{name}_curve"] = [float(v) for v in curve]
        return out


def image_curves(predict: Predict, images: np.ndarray, maps: np.ndarray,
                 targets: Sequence[int], *, baseline: str = "blur", steps: int = 16,
                 seed: int = 0, negative: bool = False) -> ImageCurves:
    """Deletion and insertion curves of ``images`` ``(N, H, W, C)`` raw pixels under their
    ``maps`` ``(N, H, W)`` and under the random map, for class ``targets[i]``, towards the
    ``baseline`` image (:func:`models.quality.baseline_images`); ``negative`` measures
    ``1 - p``. ``predict`` maps images to probabilities ``(n, K)``."""
    images = np.asarray(images, np.float32)
    maps = np.asarray(maps, np.float32)
    if maps.shape != images.shape[:3]:
        raise ValueError(f"maps {maps.shape} do not match images {images.shape[:3]}")
    n, shape = len(images), images.shape[1:3]
    noise = np.broadcast_to(random_map(shape, seed, 0), maps.shape)
    per_call = max(1, FRAME_PIXELS // (shape[0] * shape[1]))

    def measure(frames: np.ndarray) -> np.ndarray:
        probs = np.concatenate([np.asarray(predict(frames[i:i + per_call]), np.float64)
                                for i in range(0, len(frames), per_call)])
        return 1.0 - probs if negative else probs

    bases = baseline_images(images, baseline)
    twice = list(targets) * 2
    deletion, insertion = deletion_insertion(
        measure, np.concatenate([images, images]), np.concatenate([maps, noise]), twice,
        np.concatenate([bases, bases]), steps, max_frames=per_call)
    return ImageCurves(deletion[:n], insertion[:n], deletion[n:], insertion[n:])
