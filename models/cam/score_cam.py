"""Score-CAM: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks", CVPR Workshops 2020, Eq. 6-8: each channel's map, upsampled to the input
size and scaled to [0, 1], masks the input; the channel's weight is the softmax probability
of the target class for that masked input. No gradients are used.
"""

from __future__ import annotations

import tensorflow as tf

from models.cam.base import BaseCAM, CamInputs, normalize_maps


class ScoreCAM(BaseCAM):
    name = "scorecam"
    uses_gradients = False
    masked_batch = 64  # masked images per forward pass

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        size = tf.shape(ctx.images)[1:3]
        maps = tf.image.resize(ctx.acts, size, method="bilinear")  # (B, H, W, C)
        masks = normalize_maps(tf.transpose(maps, (0, 3, 1, 2)))  # per channel, (B, C, H, W)
        masks = tf.transpose(masks, (1, 0, 2, 3))  # (C, B, H, W)
        channels = ctx.acts.shape[-1]
        chunk = max(1, self.masked_batch // max(1, ctx.images.shape[0] or 1))
        padded = -channels % chunk
        masks = tf.pad(masks, [[0, padded], [0, 0], [0, 0], [0, 0]])
        groups = tf.reshape(masks, (-1, chunk, *tf.unstack(tf.shape(masks)[1:])))

        def score(group: tf.Tensor) -> tf.Tensor:  # (chunk, B, H, W) -> (chunk, B)
            masked = group[..., None] * ctx.images[None]
            flat = tf.reshape(masked, (-1, *tf.unstack(tf.shape(ctx.images)[1:])))
            probs = self.probe(flat).probs
            targets = tf.tile(ctx.targets, [chunk])
            return tf.reshape(tf.gather(probs, targets, axis=1, batch_dims=1), (chunk, -1))

        scores = tf.map_fn(score, groups, fn_output_signature=tf.float32, parallel_iterations=1)
        scores = tf.reshape(scores, (-1, tf.shape(ctx.images)[0]))[:channels]  # (C, B)
        return tf.transpose(scores)[:, None, None, :]
