"""Grad-CAM++: Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
Convolutional Networks", WACV 2018, Eq. 19 with the exponential score (Sec. 3.3): with
g = dY^c/dA^k_ij (Y^c = exp(S^c), so higher derivatives are powers of g),
``alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)`` and ``w_k = sum_ij alpha_ij relu(g)``.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class GradCAMPlusPlus(BaseCAM):
    name = "gradcam++"

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        grads = ctx.grads
        g2 = tf.square(grads)
        g3 = g2 * grads
        denom = 2.0 * g2 + tf.reduce_sum(ctx.acts, axis=(1, 2), keepdims=True) * g3
        alpha = tf.math.divide_no_nan(g2, tf.where(denom != 0.0, denom, tf.ones_like(denom)))
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
