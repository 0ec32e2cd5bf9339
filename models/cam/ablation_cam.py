"""Ablation-CAM: Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional
Network via Gradient-free Localization", WACV 2020: the weight of channel k is the relative
drop of the class score when that channel of the layer is set to zero,
``w_k^c = (y^c - y^c_k) / |y^c|`` (``y`` the pre-softmax score; 0 when ``y^c`` is 0). The
paper divides by ``y^c``, a positive score there; dividing by its size keeps a channel whose
removal lowers the score positive when the score is negative too (a class below zero, or
class 0 of a binary sigmoid, logit ``-z``, which then equals class 1 with target
"negative"). For target "negative" the weights are negated, ``-w_k^c``, as Grad-CAM's
counterfactual (negating the score alone would leave the ratio unchanged). The
model is run again with the layer's output ablated, a group of channels per forward pass
(each image once per channel of the group).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs, over_channels
from models.graph import Probe


class AblatingProbe(Probe):
    """A :class:`Probe` that multiplies its layer's output by ``keep`` ``(B, C)`` when set
    (set while a forward pass is traced, then reset to None)."""

    keep: tf.Tensor | None = None

    def _call_op(
        self, op: Any, prefix: str, cap: dict, outermost: bool, args: tuple, kwargs: dict
    ) -> Any:
        result = super()._call_op(op, prefix, cap, outermost, args, kwargs)
        if self.keep is not None and prefix + getattr(op, "name", "") == self.layer_path:
            return result * self.keep[:, None, None, :]
        return result


class AblationCAM(BaseCAM):
    name = "ablationcam"
    uses_gradients = False
    probe_type = AblatingProbe
    probe: AblatingProbe
    ablated_batch = 64  # ablated images per forward pass
    open_batch = False  # its passes of ablated copies are sized by the batch

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        probe = self.probe
        batch, channels = tf.shape(ctx.images)[0], ctx.acts.shape[-1]
        chunk = max(1, self.ablated_batch // max(1, ctx.images.shape[0] or 1))
        score = tf.gather(ctx.logits, ctx.targets, axis=1, batch_dims=1)  # (B,)

        def ablated(ids: tf.Tensor) -> tf.Tensor:  # (chunk,) -> (chunk, B)
            probe.keep = tf.repeat(1.0 - tf.one_hot(ids, channels), batch, axis=0)
            try:
                logits = probe(tf.tile(ctx.images, [chunk, 1, 1, 1])).logits
            finally:
                probe.keep = None
            drops = tf.gather(logits, tf.tile(ctx.targets, [chunk]), axis=1, batch_dims=1)
            return tf.reshape(drops, (chunk, -1))

        drops = score[None] - over_channels(ablated, channels, chunk)  # (C, B)
        weights = self.sign * tf.math.divide_no_nan(drops, tf.abs(score[None]))
        return tf.transpose(weights)[:, None, None, :]
