"""How pixels are fed to a model: the ``preprocess`` modes.

Input is always raw RGB pixels, float32 ``(B, H, W, C)`` in 0..255 (C = 3, or 1 for
greyscale models). Modes:

- ``raw``   the pixels as they are (a model that wants another scale carries a Rescaling layer)
- ``unit``  divided by 255, so 0..1
- ``tf``    scaled to -1..1 (MobileNet, Inception family in ``keras.applications``)
- ``caffe`` RGB→BGR, minus the ImageNet channel means (VGG16, ResNet50)
- ``torch`` 0..1, minus the ImageNet mean, divided by its standard deviation
"""

from __future__ import annotations

import tensorflow as tf

from models.errors import InvalidInputError

PREPROCESS_MODES = ("raw", "unit", "tf", "caffe", "torch")

# ImageNet channel statistics used by keras.applications (RGB order).
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def check_mode(mode: str) -> str:
    """Return ``mode`` if known, else raise InvalidInputError naming the valid ones."""
    if mode not in PREPROCESS_MODES:
        raise InvalidInputError(
            f"unknown preprocess mode {mode!r}; expected one of {PREPROCESS_MODES}")
    return mode


def preprocess_images(images: tf.Tensor, mode: str) -> tf.Tensor:
    """Map raw pixels ``(B, H, W, C)`` 0..255 to what the model expects."""
    x = tf.cast(images, tf.float32)
    check_mode(mode)
    if mode == "raw":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(_CAFFE_MEAN_RGB[::-1], tf.float32)
    return (x / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
