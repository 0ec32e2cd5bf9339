"""Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, Eq. 1: the weight of channel k is the global
average of the gradient of the class score y^c over the feature map A^k,
``alpha_k^c = 1/Z sum_ij dy^c / dA^k_ij``.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class GradCAM(BaseCAM):
    name = "gradcam"

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        return tf.reduce_mean(ctx.grads, axis=(1, 2), keepdims=True)
