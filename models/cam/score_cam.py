"""Score-CAM: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks", CVPR Workshops 2020, Eq. 6-8: each channel's map, upsampled to the input
size and scaled to [0, 1], masks the input; the channel's weight is the softmax probability
of the target class for that masked input (``1 - p`` for target "negative"). No gradients
are used.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs, normalize_maps, over_channels


class ScoreCAM(BaseCAM):
    name = "scorecam"
    uses_gradients = False
    masked_batch = 64  # masked images per forward pass
    open_batch = False  # its passes of masked copies are sized by the batch

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        return tf.transpose(self.channel_scores(ctx.acts, ctx))[:, None, None, :]

    def channel_scores(self, acts: tf.Tensor, ctx: CamInputs) -> tf.Tensor:
        """Eq. 8's score ``(C', B)`` of each channel of ``acts`` ``(B, h, w, C')``."""
        size = tf.shape(ctx.images)[1:3]
        maps = tf.image.resize(acts, size, method="bilinear")  # (B, H, W, C')
        masks = normalize_maps(tf.transpose(maps, (3, 0, 1, 2)))  # per channel, (C', B, H, W)
        chunk = max(1, self.masked_batch // max(1, ctx.images.shape[0] or 1))

        def score(ids: tf.Tensor) -> tf.Tensor:  # (chunk,) -> (chunk, B)
            masked = tf.gather(masks, ids)[..., None] * ctx.images[None]
            flat = tf.reshape(masked, (-1, *tf.unstack(tf.shape(ctx.images)[1:])))
            probs = self.probe(flat).probs
            targets = tf.tile(ctx.targets, [chunk])
            return tf.reshape(self.probability(probs, targets), (chunk, -1))

        return over_channels(score, acts.shape[-1], chunk)
