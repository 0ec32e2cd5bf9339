"""Lucid-style image parametrisation: a Fourier basis with 1/f scaling and decorrelated colour.

Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017 (section
"Preconditioning and Parameterization"): optimising the image's spectrum, scaled by 1/f,
whitens the gradient so high frequencies do not dominate; colours are optimised in a
decorrelated space and mapped to RGB through the square root of the ImageNet colour
covariance, then squashed to 0..1 with a sigmoid.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Square root of the colour covariance of ImageNet (the figures published with Lucid).
_COLOR_SQRT_COV = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOR_MATRIX = _COLOR_SQRT_COV / np.max(np.linalg.norm(_COLOR_SQRT_COV, axis=0))
INIT_STD = 0.01  # spread of the initial spectrum


def spectrum_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """1/f^decay weights of the rfft2 bins, float32 ``(height, width // 2 + 1)``."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay
    return (scale * np.sqrt(height * width)).astype(np.float32)


class FourierImage:
    """A batch of ``n`` images ``(n, H, W, channels)`` in 0..1 from trainable spectra.

    ``seed`` makes the initial spectrum reproducible; ``variable`` is what the optimiser
    updates, float32 ``(n, channels, H, W // 2 + 1, 2)`` (real and imaginary parts).
    """

    def __init__(self, n: int, height: int, width: int, channels: int = 3, seed: int = 0,
                 init_std: float = INIT_STD) -> None:
        if n < 1 or height < 2 or width < 2:
            raise ValueError(f"need n >= 1 and a size of at least 2x2, got n={n}, {height}x{width}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        rng = np.random.default_rng(seed)
        shape = (n, channels, height, width // 2 + 1, 2)
        self.variable = tf.Variable(rng.normal(0.0, init_std, shape).astype(np.float32))
        self.scale = tf.constant(spectrum_scale(height, width))
        self.size = (height, width)
        self.channels = channels

    def __call__(self) -> tf.Tensor:
        spectrum = tf.complex(self.variable[..., 0], self.variable[..., 1])
        spectrum = spectrum * tf.cast(self.scale, tf.complex64)
        pixels = tf.signal.irfft2d(spectrum, fft_length=self.size)  # (n, c, H, W)
        pixels = tf.transpose(pixels, (0, 2, 3, 1)) / 4.0
        if self.channels == 3:
            pixels = tf.einsum("nhwc,dc->nhwd", pixels, tf.constant(_COLOR_MATRIX))
        return tf.sigmoid(pixels)
