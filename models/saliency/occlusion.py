"""Occlusion: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV
2014, Sec. 4.2: a ``window`` x ``window`` patch, filled from a baseline (the paper's grey
square by default, :mod:`models.saliency.baselines`), slides over the image with ``stride``;
the drop of the class score, ``f(x) - f(x with the patch at p)``, is credited to the pixels
under the patch. As in Captum's ``Occlusion``, each pixel gets the mean drop over the windows
that cover it, ``a_ij = sum_p drop_p [ij in p] / sum_p [ij in p]``, split evenly over its
``C`` channels (so :func:`reduce_channels` with ``sum`` gives ``a_ij``).

Windows start at ``0, stride, 2 * stride, ...``; when the stride does not end flush with the
border, one more window is placed flush with it, so every pixel is covered. A window larger
than the image is clipped to it. Many occluded copies run per model call; each copy's mask is
made from its window's corner inside the compiled step (a table of every mask would be
positions × H × W floats: 0.6 GB for a 224×224 image at window 8, stride 4). At most
:data:`MAX_WINDOWS` positions per image (one model pass per position and image).
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

MAX_WINDOWS = 4096  # window positions per image (55 × 55 for 224×224 at window 8, stride 4)


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

    def corners(self, height: int, width: int) -> np.ndarray:
        """``(y0, x0)`` of every window position, int32 ``(P, 2)``, rows first; P at most
        :data:`MAX_WINDOWS` (InvalidInputError beyond)."""
        ys = window_starts(height, self.window, self.stride)
        xs = window_starts(width, self.window, self.stride)
        if len(ys) * len(xs) > MAX_WINDOWS:
            raise InvalidInputError(
                f"window {self.window} with stride {self.stride} makes {len(ys)} × {len(xs)} "
                f"positions on a {height}×{width} image; at most {MAX_WINDOWS}: use a larger "
                f"stride")
        return np.array([(y, x) for y in ys for x in xs], np.int32).reshape(-1, 2)

    def _covered(self, size: int, starts: np.ndarray) -> np.ndarray:
        """Along one axis of ``size`` pixels, how many of the windows starting at the distinct
        ``starts`` cover each pixel."""
        count = np.zeros(size, np.float32)
        for start in np.unique(starts):
            count[start:start + self.window] += 1.0
        return count

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        images, shape = ctx.images, ctx.images.shape
        height, width = int(shape[1]), int(shape[2])
        corners = self.corners(height, width)
        baseline = make_baseline(self.baseline, images, self.seed)
        table = tf.constant(corners)
        rows, cols = tf.range(height), tf.range(width)
        # how many windows cover each pixel: the positions are a grid of row × column starts
        coverage = np.outer(self._covered(height, corners[:, 0]),
                            self._covered(width, corners[:, 1]))

        def step(indices: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
            yx = tf.gather(table, indices)  # (k, 2)
            inside_y = (rows[None] >= yx[:, :1]) & (rows[None] < yx[:, :1] + self.window)
            inside_x = (cols[None] >= yx[:, 1:]) & (cols[None] < yx[:, 1:] + self.window)
            mask = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32)  # (k, H, W)
            m = mask[:, None, :, :, None]
            occluded = tf.reshape(images[None] * (1.0 - m) + baseline[None] * m,
                                  (-1, *shape[1:]))
            scores = self.score(self.probe(occluded).logits, tf.tile(ctx.targets, [len(valid)]))
            drop = (ctx.score[None] - tf.reshape(scores, (len(valid), -1))) * valid[:, None]
            return tf.einsum("kb,khw->bhw", drop, mask)

        total = self.accumulate(step, len(corners), self.copies_per_pass(images), shape[:3])
        mean_drop = total / tf.constant(coverage)[None]
        channels = int(shape[3])
        return tf.tile(mean_drop[..., None] / channels, (1, 1, 1, channels))
