"""A chunk of a dataset through a model, as sums for the ``class_cam`` and ``quality`` jobs
(:mod:`models.array_sums`: chunks merge by addition).

Images are raw pixels float32 ``(n, H, W, C)`` 0..255 at the model's input size; ``labels``
``(n,)`` are class indices, -1 where an image has none (then its predicted class is used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from models.array_sums import Sums
from models.cam import BaseCAM
from models.graph import Probe
from models.quality import (
    baseline_images,
    boxes_for,
    centre_gaussian,
    deletion_insertion,
    points_into,
    random_map,
    trapezoid_auc,
)

REFERENCES = ("random", "centre")  # maps scored like the methods
Boxes = Sequence[tuple[int, Sequence[float]]]  # one image's (class index, [x0, y0, x1, y1])


class Predictor:
    """``predictor(images)``: the model's output ``(n, K)`` float32 for raw ``images``."""

    def __init__(self, model: keras.Model, preprocess: str = "raw") -> None:
        probe = Probe(model, None, preprocess)
        self._run = tf.function(lambda x: probe(x).probs, reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(tf.constant(images, tf.float32)), np.float32)


def class_cam_sums(cam: BaseCAM, images: np.ndarray, labels: np.ndarray,
                   num_classes: int) -> Sums:
    """``cam_sum`` ``(K, H, W)`` float64 (heatmaps of each image's class, labelled else
    predicted, summed by that class), ``count`` ``(K,)``, ``confusion`` ``(K, K)`` (true
    × predicted, labelled images only), ``labelled`` ``()``."""
    n, height, width = images.shape[:3]
    sums: Sums = {"cam_sum": np.zeros((num_classes, height, width)),
                  "count": np.zeros(num_classes, np.int64),
                  "confusion": np.zeros((num_classes, num_classes), np.int64),
                  "labelled": np.array(0, np.int64)}
    if n == 0:
        return sums
    labels = np.asarray(labels, np.int64)
    known = labels >= 0
    res = cam(images, class_index=[int(v) if v >= 0 else None for v in labels])
    predicted = np.argmax(res.probs, axis=1)
    target = np.where(known, labels, predicted)
    np.add.at(sums["cam_sum"], target, res.heatmaps.astype(np.float64))
    sums["count"] += np.bincount(target, minlength=num_classes)
    np.add.at(sums["confusion"], (labels[known], predicted[known]), 1)
    sums["labelled"] = np.array(int(known.sum()), np.int64)
    return sums


def _maps(cams: Mapping[str, BaseCAM], images: np.ndarray, targets: np.ndarray,
          indices: Sequence[int], seed: int) -> list[np.ndarray]:
    """Per row (each method, then random and centre) the ``(n, H, W)`` maps."""
    shape = images.shape[1:3]
    maps = [cam(images, class_index=targets.tolist()).heatmaps for cam in cams.values()]
    maps.append(np.stack([random_map(shape, seed, int(i)) for i in indices]))
    maps.append(np.broadcast_to(centre_gaussian(shape), (len(images), *shape)))
    return maps


def quality_sums(cams: Mapping[str, BaseCAM], predict: Predictor, images: np.ndarray,
                 indices: Sequence[int], labels: np.ndarray, boxes: Sequence[Boxes], *,
                 steps: int = 16, baseline: str = "blur", seed: int = 0) -> Sums:
    """Per row (``cams``' methods in order, then :data:`REFERENCES`): sums of
    ``deletion_auc`` / ``insertion_auc`` ``(M,)``, of ``deletion_curve`` /
    ``insertion_curve`` ``(M, steps + 1)``, ``count`` ``(M,)`` images, and pointing-game
    ``hits`` / ``pointed`` ``(M,)`` over the images with boxes (:func:`boxes_for`)."""
    rows, n = len(cams) + len(REFERENCES), len(images)
    sums: Sums = {name: np.zeros(rows) for name in ("deletion_auc", "insertion_auc")}
    sums.update({name: np.zeros((rows, steps + 1))
                 for name in ("deletion_curve", "insertion_curve")})
    sums.update({name: np.zeros(rows, np.int64) for name in ("count", "hits", "pointed")})
    if n == 0:
        return sums
    labels = np.asarray(labels, np.int64)
    targets = np.where(labels >= 0, labels, np.argmax(predict(images), axis=1))
    bases = baseline_images(images, baseline)
    chosen = [boxes_for(int(t), b) for t, b in zip(targets, boxes, strict=True)]
    for row, maps in enumerate(_maps(cams, images, targets, indices, seed)):
        deletion, insertion = deletion_insertion(predict, images, maps, targets, bases, steps)
        sums["deletion_auc"][row] = trapezoid_auc(deletion).sum()
        sums["insertion_auc"][row] = trapezoid_auc(insertion).sum()
        sums["deletion_curve"][row] = deletion.sum(axis=0)
        sums["insertion_curve"][row] = insertion.sum(axis=0)
        sums["count"][row] = n
        sums["hits"][row] = sum(points_into(m, b) for m, b in zip(maps, chosen, strict=True))
        sums["pointed"][row] = sum(1 for b in chosen if b)
    return sums
