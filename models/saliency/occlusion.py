"""Occlusion: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV
2014, Sec. 4.2: a ``window`` x ``window`` patch, filled from a baseline (the paper's grey
square by default, :mod:`models.saliency.baselines`), slides over the image with ``stride``;
the drop of the class score, ``f(x) - f(x with the patch at p)``, is credited to the pixels
under the patch. As in Captum's ``Occlusion``, each pixel gets the mean drop over the windows
that cover it, ``a_ij = sum_p drop_p [ij in p] / sum_p [ij in p]``, split evenly over its
``C`` channels (so :func:`reduce_channels` with ``sum`` gives ``a_ij``).

Windows start at ``0, stride, 2 * stride, ...``; when the stride does not end flush with the
border, one more window is placed flush with it, so every pixel is covered. A window larger
than the image is clipped to it. Many occluded copies run per model call.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.errors import InvalidInputError
from models.saliency.base import (
    BaseSaliency,
    SaliencyInputs,
    check_choice,
    check_positive_int,
)
from models.saliency.baselines import BASELINES, make_baseline


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """First row (or column) of each window along an axis of ``size`` pixels."""
    window = min(window, size)
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


class Occlusion(BaseSaliency):
    name = "occlusion"
    uses_gradients = False

    def __init__(self, model: keras.Model, preprocess: str = "raw", window: int = 8,
                 stride: int = 4, baseline: str = "grey", seed: int = 0,
                 target: str = "class") -> None:
        self.window = check_positive_int("window", window)
        self.stride = check_positive_int("stride", stride)
        if self.stride > self.window:
            raise InvalidInputError(f"stride {stride!r} is larger than the window {window!r}: "
                                    f"the pixels between windows would get no attribution")
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.seed = int(seed)
        super().__init__(model, preprocess, target)

    def windows(self, height: int, width: int) -> np.ndarray:
        """Masks of every window position, float32 ``(P, H, W)``, rows first."""
        masks = []
        for y0 in window_starts(height, self.window, self.stride):
            for x0 in window_starts(width, self.window, self.stride):
                mask = np.zeros((height, width), np.float32)
                mask[y0:y0 + self.window, x0:x0 + self.window] = 1.0
                masks.append(mask)
        return np.stack(masks)

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        images, shape = ctx.images, ctx.images.shape
        masks = self.windows(int(shape[1]), int(shape[2]))
        baseline = make_baseline(self.baseline, images, self.seed)
        table = tf.constant(masks)

        def step(indices: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
            mask = tf.gather(table, indices)  # (k, H, W)
            m = mask[:, None, :, :, None]
            occluded = tf.reshape(images[None] * (1.0 - m) + baseline[None] * m,
                                  (-1, *shape[1:]))
            scores = self.score(self.probe(occluded).logits, tf.tile(ctx.targets, [len(valid)]))
            drop = (ctx.score[None] - tf.reshape(scores, (len(valid), -1))) * valid[:, None]
            return tf.einsum("kb,khw->bhw", drop, mask)

        total = self.accumulate(step, len(masks), self.copies_per_pass(images), shape[:3])
        mean_drop = total / tf.constant(masks.sum(axis=0))[None]
        channels = int(shape[3])
        return tf.tile(mean_drop[..., None] / channels, (1, 1, 1, channels))
