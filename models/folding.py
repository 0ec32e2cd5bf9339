"""Batch-norm folding for inference: ``BN(conv(x))`` as one conv with rescaled weights.

In inference mode a :class:`keras.layers.BatchNormalization` after a linear ``Conv2D`` is an
affine map per output channel, ``y = (conv(x) - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``, so the pair equals one convolution with kernel ``W * s``
and bias ``(b - mean) * s + beta``. Running the folded conv skips two elementwise passes over
every such feature map, forward and backward. :func:`find_folds` lists the pairs of one
(functional or Sequential) model that can be folded; :func:`folded_conv_weights` computes the
new weights (also used to fold the ``shapes`` model after training) and :func:`folded_weights`
keeps them as variables, once per conv layer, for as long as the layer lives. The cache assumes
the model's weights do not change afterwards (models here are loaded once and only read).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from models.keras_internals import call_count, graph_nodes, is_functional, producer


@dataclass(frozen=True)
class Fold:
    """A ``Conv2D`` whose only consumer is a ``BatchNormalization``."""

    conv: keras.layers.Conv2D
    norm: keras.layers.BatchNormalization


def _plain_float32(op: Any) -> bool:
    """float32 compute and variables (no mixed precision), called in exactly one graph."""
    policy = getattr(op, "dtype_policy", None)
    return getattr(policy, "name", None) == "float32" and call_count(op) == 1


def _foldable_conv(op: Any) -> bool:
    return (type(op) is keras.layers.Conv2D and op.data_format == "channels_last"
            and op.activation is keras.activations.linear and _plain_float32(op))


def _foldable_norm(op: Any) -> bool:
    axis = op.axis if isinstance(op, keras.layers.BatchNormalization) else None
    return (type(op) is keras.layers.BatchNormalization and axis in (-1, 3)
            and _plain_float32(op))


def has_graph(model: Any) -> bool:
    """A Sequential or functional model (a subclassed model has no graph to fold in)."""
    return isinstance(model, keras.Sequential) or is_functional(model)


def _pairs(model: keras.Model) -> Iterable[tuple[Any, Any]]:
    """``(producer, consumer)`` for each conv -> batch-norm edge that nothing else shares."""
    if isinstance(model, keras.Sequential):
        layers = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
        yield from zip(layers, layers[1:], strict=False)
        return
    nodes = graph_nodes(model)
    consumers: dict[int, list[Any]] = {}  # a layer called twice is refused by _plain_float32
    for node in nodes:
        for tensor in node.inputs:
            consumers.setdefault(id(producer(tensor)), []).append(node.operation)
    outputs = {id(producer(t)) for t in model.outputs}
    for node in nodes:
        users = consumers.get(id(node.operation), [])
        if len(users) == 1 and id(node.operation) not in outputs:
            yield node.operation, users[0]


def find_folds(model: keras.Model, keep: Iterable[Any] = ()) -> list[Fold]:
    """Foldable conv + batch-norm pairs of ``model``'s own graph (not inside nested models).

    A pair with either layer in ``keep`` is left alone (a probed layer must keep its own
    output and input), and so is a layer called in more than one graph or run in mixed
    precision.
    """
    if not has_graph(model):
        return []
    kept = {id(layer) for layer in keep}
    return [Fold(conv, norm) for conv, norm in _pairs(model)
            if _foldable_conv(conv) and _foldable_norm(norm)
            and id(conv) not in kept and id(norm) not in kept]


_CACHE: weakref.WeakKeyDictionary[Any, tuple[tf.Variable, tf.Variable]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def folded_conv_weights(conv: Any, norm: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Kernel ``W * s`` ``(kh, kw, c_in, c_out)`` and bias ``(b - mean) * s + beta``
    ``(c_out,)`` of ``norm(conv(x))`` as one convolution, ``s = gamma / sqrt(var + eps)``.

    Eager tensors computed from the layers' current weights (a missing conv bias counts as
    zero; batch norm without ``scale`` / ``center`` as gamma 1 / beta 0).
    """
    with tf.init_scope():  # eager even when first asked for while tracing
        scale = tf.math.rsqrt(tf.convert_to_tensor(norm.moving_variance) + norm.epsilon)
        if norm.gamma is not None:
            scale = scale * tf.convert_to_tensor(norm.gamma)
        bias = -tf.convert_to_tensor(norm.moving_mean)
        if conv.bias is not None:
            bias = bias + tf.convert_to_tensor(conv.bias)
        bias = bias * scale
        if norm.beta is not None:
            bias = bias + tf.convert_to_tensor(norm.beta)
        return tf.convert_to_tensor(conv.kernel) * scale, bias


def folded_weights(fold: Fold) -> tuple[tf.Variable, tf.Variable]:
    """:func:`folded_conv_weights` of ``fold`` as variables, cached while the conv lives."""
    with _LOCK:
        cached = _CACHE.get(fold.conv)
        if cached is not None:
            return cached
        kernel, bias = folded_conv_weights(fold.conv, fold.norm)
        with tf.init_scope():
            name = fold.conv.name
            cached = (tf.Variable(kernel, trainable=False, name=f"{name}_folded_kernel"),
                      tf.Variable(bias, trainable=False, name=f"{name}_folded_bias"))
        _CACHE[fold.conv] = cached
        return cached


def run_folded_conv(fold: Fold, x: tf.Tensor) -> tf.Tensor:
    """``fold.norm(fold.conv(x))`` in inference mode, as one convolution plus bias."""
    kernel, bias = folded_weights(fold)
    return tf.nn.bias_add(fold.conv.convolution_op(x, kernel), bias)
