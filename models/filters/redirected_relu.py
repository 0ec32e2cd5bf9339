"""A ReLU whose gradient is redirected while it is off, for feature visualisation.

Lucid's ``redirected_relu_grad`` (lucid/misc/redirected_relu_grad.py, used by its
``render_vis`` for every objective; Olah, Mordvintsev and Schubert, "Feature Visualization",
Distill 2017): near a flat start image the early ReLUs are off inside the picture, so the
gradient of one unit deep in the network is exactly zero and the ascent never moves. Where a
whole image's gradient through a ReLU ``y = max(x, 0)`` is zero, pass the incoming gradient
``g = ∂L/∂y`` anyway, except where it would push an off unit further down:

    ∂L/∂x = g · 1[x > 0]                    if that is non-zero anywhere in the image
    ∂L/∂x = g · 1[not (x < 0 and g > 0)]     otherwise

(``L`` is minimised, so ``g > 0`` lowers ``x``.) The forward value is the plain ReLU's.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


@tf.custom_gradient
def redirected_relu(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """``max(x, 0)`` with the redirected gradient above; ``x`` ``(batch, ...)``."""

    def grad(g: tf.Tensor) -> tf.Tensor:
        plain = tf.where(x > 0, g, tf.zeros_like(g))
        redirected = tf.where((x < 0) & (g > 0), tf.zeros_like(g), g)
        axes = list(range(1, len(x.shape)))
        flowing = tf.reduce_any(tf.not_equal(plain, 0), axis=axes, keepdims=True)
        return tf.where(flowing, plain, redirected)

    return tf.nn.relu(x), grad
