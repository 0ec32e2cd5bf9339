"""HiResCAM: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", arXiv:2011.08891, 2020: the gradient is not averaged
over the map but multiplied element-wise with the activations,
``M = relu(sum_k dy^c/dA^k_ij * A^k_ij)``. With global average pooling and one Dense layer
after ``A`` the gradient is the same at every position, and HiResCAM equals Grad-CAM.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class HiResCAM(BaseCAM):
    name = "hirescam"

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        return ctx.grads
