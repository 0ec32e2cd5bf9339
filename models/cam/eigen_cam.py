"""Eigen-CAM: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal
Components", IJCNN 2020: the activations of one image as a ``(h*w, C)`` matrix
``O = U S V^T`` (SVD, not mean-centred: the paper factorises ``O`` itself), and the map is
their projection on the first right singular vector, ``L = O V_1``. The sign of a singular
vector is arbitrary: it is chosen so that the map correlates positively with the mean
activation over channels. No gradients and no class: any model output will do.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class EigenCAM(BaseCAM):
    name = "eigencam"
    uses_gradients = False
    explains_class = False

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        shape = tf.shape(ctx.acts)
        flat = tf.reshape(ctx.acts, (shape[0], -1, shape[3]))  # (B, h*w, C)
        _, _, v = tf.linalg.svd(flat, full_matrices=False)
        first = v[:, :, 0]  # (B, C)
        projection = tf.einsum("bnc,bc->bn", flat, first)
        mean = tf.reduce_mean(flat, axis=-1)

        def centred(x: tf.Tensor) -> tf.Tensor:
            return x - tf.reduce_mean(x, axis=-1, keepdims=True)

        agreement = tf.reduce_sum(centred(projection) * centred(mean), axis=-1)
        sign = tf.where(agreement < 0.0, -1.0, 1.0)
        return (sign[:, None] * first)[:, None, None, :]
