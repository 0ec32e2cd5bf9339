"""Vanilla gradients: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR Workshop 2014, Eq. 2-3: the
class score ``S_c`` is approximated near the image ``I_0`` by its first-order Taylor
expansion ``S_c(I) ~ w^T I + b``, ``w = dS_c / dI |_{I_0}``; the saliency of each input value
is ``w`` (the paper then takes ``M_ij = max_c |w_h(i,j,c)|``: :func:`reduce_channels` with
``max_abs``).
"""

from __future__ import annotations

import tensorflow as tf

from models.saliency.base import BaseSaliency, SaliencyInputs


class Gradients(BaseSaliency):
    name = "gradients"

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        return ctx.grads
