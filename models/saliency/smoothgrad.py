"""SmoothGrad: Smilkov et al., "SmoothGrad: removing noise by adding noise", ICML Workshop
2017, Eq. 3: the gradient averaged over ``n`` noisy copies of the image,
``M^_c(x) = 1/n sum_{i=1}^{n} M_c(x + N(0, sigma^2))``, with ``sigma`` a fraction of the
image's range, ``sigma = noise * (x_max - x_min)`` (Sec. 3.2; 10-20 % works best).

Copy ``i``'s noise is a stateless draw seeded by ``(seed, i)`` (:meth:`SmoothGrad.noise`), so
a seed gives the same map however the copies are split into model calls.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.errors import InvalidInputError
from models.saliency.base import BaseSaliency, SaliencyInputs, check_positive_int


class SmoothGrad(BaseSaliency):
    name = "smoothgrad"
    uses_gradients = False

    def __init__(self, model: keras.Model, preprocess: str = "raw", samples: int = 25,
                 noise: float = 0.15, seed: int = 0, target: str = "class") -> None:
        self.samples = check_positive_int("samples", samples)
        if not 0.0 <= float(noise) <= 1.0:
            raise InvalidInputError(f"noise must be a fraction of the input range in [0, 1], "
                                    f"got {noise!r}")
        self.noise_level = float(noise)
        self.seed = int(seed)
        super().__init__(model, preprocess, target)

    def noise(self, index: tf.Tensor | int, shape: tf.TensorShape | tuple[int, ...]) -> tf.Tensor:
        """Standard normal noise of copy ``index``, ``shape`` float32 (before scaling)."""
        seed = tf.stack([tf.constant(self.seed, tf.int32), tf.cast(index, tf.int32)])
        return tf.random.stateless_normal(shape, seed)

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        images, shape = ctx.images, ctx.images.shape
        low = tf.reduce_min(images, axis=(1, 2, 3), keepdims=True)
        sigma = self.noise_level * (tf.reduce_max(images, axis=(1, 2, 3), keepdims=True) - low)
        per_pass = self.copies_per_pass(images)

        def step(indices: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
            noise = tf.map_fn(lambda i: self.noise(i, shape), indices,
                              fn_output_signature=tf.float32)  # (k, B, H, W, C)
            noisy = tf.reshape(images[None] + sigma[None] * noise, (-1, *shape[1:]))
            grads, _ = self.gradients(noisy, tf.tile(ctx.targets, [len(valid)]))
            grads = tf.reshape(grads, (-1, *shape))
            return tf.tensordot(valid, grads, axes=1)

        return self.accumulate(step, self.samples, per_pass, shape) / self.samples
