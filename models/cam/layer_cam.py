"""LayerCAM: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021, Eq. 5-6: each location has its own weight, the positive
gradient, ``M = relu(sum_k relu(dy^c/dA^k_ij) * A^k_ij)``.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs


class LayerCAM(BaseCAM):
    name = "layercam"

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        return tf.nn.relu(ctx.grads)
