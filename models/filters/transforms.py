"""Robustness transforms for feature visualisation, done in TensorFlow on the batch.

Each is a small object with one ``__call__(images, seed) -> images`` over ``(n, H, W, C)``;
``seed`` is a stateless-random seed ``(2,)`` int32 tensor, so a run is reproducible.
Parameters are checked in ``__init__``.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class Jitter:
    """Shift by up to ``pixels`` in each direction (reflect-padded, then randomly cropped)."""

    def __init__(self, pixels: int) -> None:
        if pixels < 0:
            raise ValueError(f"jitter pixels must be >= 0, got {pixels}")
        self.pixels = pixels

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if self.pixels == 0:
            return images
        p = self.pixels
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        dy, dx = tf.unstack(tf.random.stateless_uniform((2,), seed, 0, 2 * p + 1, tf.int32))
        size = tf.shape(images)
        return tf.slice(padded, [0, dy, dx, 0], size)


class RandomAffine:
    """Zoom and rotate in one resampling (one bilinear pass instead of two).

    A scale drawn from ``[low, high]`` and an angle from ``[-degrees, degrees]``.
    """

    def __init__(self, low: float = 0.9, high: float = 1.1, degrees: float = 5.0) -> None:
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got ({low}, {high})")
        if degrees < 0:
            raise ValueError(f"rotation degrees must be >= 0, got {degrees}")
        self.low, self.high, self.degrees = low, high, degrees

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        draws = tf.random.stateless_uniform((2,), seed, 0.0, 1.0)
        factor = self.low + (self.high - self.low) * draws[0]
        angle = (2.0 * draws[1] - 1.0) * self.degrees * (math.pi / 180.0)
        return warp(images, affine_matrix(images, factor, angle))


def affine_matrix(images: tf.Tensor, scale: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """``(n, 8)`` projective rows that zoom ``images`` by ``scale`` and rotate them by
    ``angle`` radians about the centre: output pixel ``(x, y)`` samples the input at
    ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, the layout :func:`warp` takes."""
    shape = tf.shape(images)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cy, cx = (h - 1.0) / 2.0, (w - 1.0) / 2.0
    a2 = cx - cos * cx + sin * cy
    b2 = cy - sin * cx - cos * cy
    row = tf.stack([cos, -sin, a2, sin, cos, b2, 0.0, 0.0])
    return tf.tile(row[None], [shape[0], 1])


def warp(images: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Resample ``images`` ``(n, H, W, C)`` through ``matrix`` ``(n, 8)`` (bilinear,
    reflected at the border), with Keras's own affine transform.

    It replaced a direct call of TensorFlow's ImageProjectiveTransformV3 (the kernel Keras
    runs underneath: identical outputs and gradients) after measuring no slower in
    ``benchmarks/affine_transform.py`` (2 cores, two runs, CPU-time ratio Keras /
    hand-written): warp alone 8x224x224x3 1.03 and 0.89, 16x64x64x3 1.01 and 1.01; whole
    ascent step, MobileNetV2 8x224 0.95 and 1.03, shapes CNN 16x64 0.96 and 1.02: noise.
    """
    return keras.ops.image.affine_transform(images, matrix, interpolation="bilinear",
                                            fill_mode="reflect")


def standard_transforms(size: int) -> list:
    """The default chain, scaled to the image size (Lucid's ``standard_transforms`` spirit)."""
    jitter = max(1, size // 16)
    return [Jitter(jitter), RandomAffine(0.92, 1.08, 8.0), Jitter(max(1, jitter // 2))]
