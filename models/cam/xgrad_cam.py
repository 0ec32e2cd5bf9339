"""XGrad-CAM: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation
of CNNs", BMVC 2020: each gradient is weighted by its activation's share of the map,
``alpha_k^c = sum_ij (A^k_ij / sum_ab A^k_ab) * dy^c / dA^k_ij`` (0 for an all-zero map).
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class XGradCAM(BaseCAM):
    name = "xgradcam"

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        share = tf.math.divide_no_nan(ctx.acts, tf.reduce_sum(ctx.acts, axis=(1, 2), keepdims=True))
        return tf.reduce_sum(share * ctx.grads, axis=(1, 2), keepdims=True)
