"""Reference inputs ("baselines") for integrated gradients and occlusion, in raw pixels 0..255.

- ``black``   all zeros (Sundararajan et al. 2017, Sec. 3)
- ``grey``    all 127.5 (Zeiler & Fergus 2014 occlude with a grey square)
- ``blur``    a Gaussian-blurred copy of the image (Sturmfels et al., "Visualizing the Impact
  of Feature Attribution Baselines", Distill 2020): removes edges and texture, keeps colour
- ``uniform`` uniform noise in 0..255, seeded (Sturmfels et al. 2020)
"""

from __future__ import annotations

import math

import tensorflow as tf

from models.saliency.base import check_choice

BASELINES = ("black", "grey", "blur", "uniform")
# Blur's standard deviation as a fraction of the image's shorter side.
BLUR_SIGMA = 0.1


def gaussian_kernel(sigma: float, radius: int) -> tf.Tensor:
    """Normalized 1-D Gaussian ``(2 * radius + 1,)``, float32."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else tf.cast(x == 0, tf.float32)
    return kernel / tf.reduce_sum(kernel)


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """``images`` (B, H, W, C) blurred per channel with a separable Gaussian of ``sigma``
    pixels; borders are mirrored (a uniform image stays uniform)."""
    height, width, channels = (int(d) for d in images.shape[1:])
    radius = max(0, min(math.ceil(3 * sigma), height - 1, width - 1))
    kernel = gaussian_kernel(sigma, radius)
    rows = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
    cols = tf.reshape(rows, (1, -1, channels, 1))
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    x = tf.pad(images, pad, mode="SYMMETRIC")
    x = tf.nn.depthwise_conv2d(x, rows, (1, 1, 1, 1), "VALID")
    return tf.nn.depthwise_conv2d(x, cols, (1, 1, 1, 1), "VALID")


def make_baseline(kind: str, images: tf.Tensor, seed: int = 0) -> tf.Tensor:
    """The ``kind`` baseline (one of :data:`BASELINES`) of each image, ``images``' shape."""
    check_choice("baseline", kind, BASELINES)
    if kind == "black":
        return tf.zeros_like(images)
    if kind == "grey":
        return tf.fill(tf.shape(images), 127.5)
    if kind == "blur":
        return gaussian_blur(images, BLUR_SIGMA * min(int(d) for d in images.shape[1:3]))
    return tf.random.stateless_uniform(tf.shape(images), (seed, 0), 0.0, 255.0)
