"""Explain one unit of a Conv2D layer: input patch × kernel per channel, summed, plus bias.

For output position ``(y, x)`` of filter ``f`` the unit sees, in each input channel ``c``, the
``kh × kw`` input values at rows ``y·sh − pad_top + i·dh`` and columns ``x·sw − pad_left + j·dw``
(zeros where ``same`` padding pads). Its value is
``activation(sum_c sum_ij patch_c[i, j] · kernel[i, j, c, f] + bias[f])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from models.conv_arithmetic import same_padding
from models.errors import InvalidInputError
from models.graph import Probe, get_layer


class LayerNotConvError(InvalidInputError):
    """The layer is not a Conv2D layer this explanation applies to."""


class UnitOutOfRangeError(InvalidInputError, IndexError):
    """The unit (filter, y, x) lies outside the layer's output."""


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pad_before: tuple[int, int]  # zeros added above / left of the input (0 for valid)


def conv_geometry(layer: keras.Layer, in_hw: tuple[int, int]) -> ConvGeometry:
    """Kernel, strides, dilation and the top/left padding Keras (TF) uses for ``layer``."""
    kernel, strides, dilation = layer.kernel_size, layer.strides, layer.dilation_rate
    pads = [0, 0]
    if layer.padding == "same":
        pads = [same_padding(in_hw[a], (kernel[a] - 1) * dilation[a] + 1, strides[a])[0]
                for a in range(2)]
    return ConvGeometry(tuple(kernel), tuple(strides), tuple(dilation), (pads[0], pads[1]))


def receptive_patch(inputs: np.ndarray, geo: ConvGeometry, y: int, x: int) -> np.ndarray:
    """The ``(kh, kw, C_in)`` input values unit ``(y, x)`` sees; zeros where padding is."""
    rows = y * geo.strides[0] - geo.pad_before[0] + np.arange(geo.kernel[0]) * geo.dilation[0]
    cols = x * geo.strides[1] - geo.pad_before[1] + np.arange(geo.kernel[1]) * geo.dilation[1]
    patch = np.zeros((len(rows), len(cols), inputs.shape[-1]), dtype=np.float64)
    h, w = inputs.shape[:2]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if 0 <= r < h and 0 <= c < w:
                patch[i, j] = inputs[r, c]
    return patch


def _check_layer(layer: keras.Layer, name: str) -> None:
    if type(layer) is not keras.layers.Conv2D:
        raise LayerNotConvError(f"layer {name!r} is a {type(layer).__name__}, not a Conv2D")
    if getattr(layer, "groups", 1) != 1 or layer.data_format != "channels_last":
        raise LayerNotConvError(f"layer {name!r}: grouped or channels_first convs are not covered")


def explain_unit(model: keras.Model, layer: str, image: np.ndarray, filter_index: int, y: int,
                 x: int, preprocess: str = "raw") -> dict:
    """Explain unit ``(y, x)`` of filter ``filter_index`` for one raw image ``(H, W, C)``.

    Returns plain data: ``channels`` [{index, patch, kernel, sum}], ``bias``, ``pre_activation``,
    ``activation`` (computed here, in float64), ``model_activation`` (what the model produced),
    plus ``rows``/``cols`` of the patch in the layer's input and the ``padding`` used.
    """
    probe = Probe(model, layer, preprocess)
    conv = get_layer(model, layer)
    _check_layer(conv, layer)
    out = probe(tf.constant(np.asarray(image, np.float32)[None]))
    inputs, produced = out.layer_input.numpy()[0], out.activation.numpy()[0]
    oh, ow, filters = produced.shape
    if not (0 <= filter_index < filters and 0 <= y < oh and 0 <= x < ow):
        raise UnitOutOfRangeError(
            f"unit (filter={filter_index}, y={y}, x={x}) outside the output {oh}×{ow}×{filters}"
        )
    geo = conv_geometry(conv, inputs.shape[:2])
    patch = receptive_patch(inputs, geo, y, x)
    kernel = np.asarray(conv.kernel.numpy()[..., filter_index], dtype=np.float64)
    sums = (patch * kernel).sum(axis=(0, 1))
    bias = float(conv.bias.numpy()[filter_index]) if conv.use_bias else 0.0
    pre = float(sums.sum() + bias)
    act = float(np.asarray(conv.activation(tf.constant([pre], tf.float32)))[0])
    return {
        "channels": [
            {"index": c, "patch": patch[..., c].tolist(), "kernel": kernel[..., c].tolist(),
             "sum": float(sums[c])}
            for c in range(patch.shape[-1])
        ],
        "bias": bias, "pre_activation": pre, "activation": act,
        "model_activation": float(produced[y, x, filter_index]),
        "model_pre_activation": float(out.pre_activation.numpy()[0][y, x, filter_index]),
        "rows": [y * geo.strides[0] - geo.pad_before[0] + i * geo.dilation[0]
                 for i in range(geo.kernel[0])],
        "cols": [x * geo.strides[1] - geo.pad_before[1] + j * geo.dilation[1]
                 for j in range(geo.kernel[1])],
        "padding": conv.padding, "strides": list(geo.strides),
        "dilation": list(geo.dilation),
    }
