"""Faster Score-CAM (github.com/tabayashi0117/Score-CAM; in tf-keras-vis as
``ScoreCAM(max_N=...)``): Score-CAM (Wang et al., CVPR Workshops 2020, Eq. 6-8) over the
``max_channels`` channels of each image whose activation maps vary most (variance over
``h, w``); the other channels get weight 0,
``M = relu(sum_{k in top-N var(A^k)} softmax(f(X * s(A^k)))_c A^k)``. ``max_N=-1`` (all
channels) is Score-CAM itself; tf-keras-vis's examples use ``max_N=10``, the default here.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import CamInputs
from models.cam.score_cam import ScoreCAM


class FasterScoreCAM(ScoreCAM):
    name = "faster_scorecam"
    max_channels = 10

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        channels = ctx.acts.shape[-1]
        top = min(self.max_channels, channels)
        variance = tf.math.reduce_variance(ctx.acts, axis=(1, 2))  # (B, C)
        _, ids = tf.math.top_k(variance, k=top)  # (B, top)
        chosen = tf.gather(ctx.acts, ids, axis=3, batch_dims=1)  # (B, h, w, top)
        scores = tf.transpose(self.channel_scores(chosen, ctx))  # (B, top)
        spread = tf.reduce_sum(tf.one_hot(ids, channels) * scores[..., None], axis=1)  # (B, C)
        return spread[:, None, None, :]
