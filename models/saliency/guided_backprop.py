"""Guided backpropagation: Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for
Simplicity: The All Convolutional Net", ICLR Workshop 2015, Sec. 3.4 and Fig. 1: through a
ReLU ``f^{l+1} = relu(f^l)`` the backward signal is masked by both the forward input and the
signal itself, ``R^l_i = (f^l_i > 0) * (R^{l+1}_i > 0) * R^{l+1}_i``; every other layer
passes gradients as usual. The map is the resulting ``R^0`` at the input.

Every plain ReLU of the model (activation functions and ``ReLU`` / ``Activation("relu")``
layers, in nested models too) is replaced by :func:`guided_relu` through
:class:`models.graph.Probe`'s ``relu`` option; the forward values do not change.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.graph import Probe
from models.saliency.base import BaseSaliency, SaliencyInputs


@tf.custom_gradient
def guided_relu(x: tf.Tensor) -> tuple[tf.Tensor, object]:
    """``relu(x)`` whose gradient passes only positive signals where ``x > 0``."""

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        keep = tf.logical_and(x > 0, upstream > 0)
        return tf.where(keep, upstream, tf.zeros_like(upstream))

    return tf.nn.relu(x), grad


class GuidedBackprop(BaseSaliency):
    name = "guided_backprop"
    uses_gradients = False

    def __init__(self, model: keras.Model, preprocess: str = "raw",
                 target: str = "class") -> None:
        super().__init__(model, preprocess, target)
        self.guided = Probe(model, None, preprocess, relu=guided_relu)

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        return self.gradients(ctx.images, ctx.targets, self.guided)[0]
