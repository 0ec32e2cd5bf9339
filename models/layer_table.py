"""The layer table: one plain-JSON row per layer, with shapes, parameters and receptive fields.

Receptive field (RF) of one output unit, per spatial axis ``(H, W)``: its size ``r`` in input
pixels and its jump ``j`` (input pixels between neighbouring units, the product of strides).
It is propagated through the model's real graph (branches, merges, nested models)::

    conv / depthwise / separable conv / pooling:  r_out = r_in + (k_eff − 1)·j_in,  j_out = j_in·s
    element-wise, normalisation, activation, padding, cropping, merges:  r, j pass through
        (merges take the largest r and j over their inputs)

with ``k_eff = d·(k − 1) + 1``. This is the theoretical RF: every input pixel that can affect
the unit, ignoring the image border (it may exceed the input size) and weight values.
``None`` means no local field applies: after Flatten, Dense, global pooling, reshapes and
unknown layers, and after any merge with such a branch (a squeeze-and-excitation product
depends on the whole image). A layer called more than once keeps the largest RF seen.

With this rule VGG16 gives ``block5_conv3`` 196 and ``block5_pool`` 212, and ResNet50
(Keras's v1, which strides in the first 1×1 conv of a stage) gives ``conv5_block3_out`` 483,
the usually quoted figures: the residual Add keeps the main branch's field, which is larger
than the shortcut's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import keras

from models.conv_arithmetic import conv_output_size, conv_params
from models.graph import output_shape, walk_layers
from models.keras_internals import graph_nodes

L = keras.layers
_CONVS = (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)
_POOLS = (L.MaxPooling2D, L.AveragePooling2D)
_PASS_THROUGH = (
    L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax,
    L.BatchNormalization, L.LayerNormalization, L.GroupNormalization, L.UnitNormalization,
    L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
    L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum, L.Concatenate,
    L.ZeroPadding2D, L.Cropping2D, L.Rescaling, L.Normalization, L.Identity,
)  # fmt: skip
_ACTIVATION_LAYERS = {L.ReLU: "relu", L.Softmax: "softmax", L.LeakyReLU: "leaky_relu"}


@dataclass(frozen=True)
class Field:
    """Receptive field of one unit: ``size`` (rh, rw) in input pixels, ``jump`` (jh, jw)."""

    size: tuple[int, int]
    jump: tuple[int, int]


State = Field | None  # None: no local receptive field
_UNIT = Field((1, 1), (1, 1))


def _window(layer: keras.Layer) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(kernel, strides, dilation)`` of a 2-D conv or pooling layer, each ``(h, w)``."""
    if isinstance(layer, _POOLS):
        return tuple(layer.pool_size), tuple(layer.strides), (1, 1)
    return tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)


def _through_window(layer: keras.Layer, field: Field) -> Field:
    kernel, strides, dilation = _window(layer)
    steps = zip(field.size, kernel, dilation, field.jump, strict=True)
    size = tuple(r + d * (k - 1) * j for r, k, d, j in steps)
    jump = tuple(j * s for j, s in zip(field.jump, strides, strict=True))
    return Field(size, jump)  # type: ignore[arg-type]


def _merge(states: Sequence[State]) -> State:
    if not states or any(s is None for s in states):
        return None
    fields = [s for s in states if s is not None]
    size = tuple(max(f.size[i] for f in fields) for i in range(2))
    jump = tuple(max(f.jump[i] for f in fields) for i in range(2))
    return Field(size, jump)  # type: ignore[arg-type]


S = TypeVar("S")


class _Propagation(Generic[S]):
    """Runs states through a model's graph, recording the state after each layer path.

    ``None`` is the state "no local field". A subclass sets what a layer does to its inputs'
    states (:meth:`layer_state`) and how states meet (:meth:`merge`); the defaults are the
    ``(size, jump)`` rule of the module docstring. :mod:`models.receptive_field` reuses the
    walk (branches, merges, nested models) for per-unit pixel boxes.
    """

    def __init__(self) -> None:
        self.fields: dict[str, S | None] = {}

    def layer_state(self, op: Any, ins: list[S | None]) -> S | None:
        return _layer_state(op, ins)  # type: ignore[arg-type, return-value]

    def merge(self, states: list[S | None]) -> S | None:
        return _merge(states)  # type: ignore[arg-type, return-value]

    def run(self, model: keras.Model, inputs: list[S | None], prefix: str) -> list[S | None]:
        """States of ``model``'s outputs given states of its inputs."""
        if isinstance(model, keras.Sequential):
            states = inputs
            for layer in model.layers:
                if not isinstance(layer, L.InputLayer):
                    states = self.apply(layer, states, prefix, n_out=1)
            return states
        values = {id(t): s for t, s in zip(model.inputs, inputs, strict=True)}
        for node in graph_nodes(model):
            if any(id(t) not in values for t in node.inputs):
                continue
            ins = [values[id(t)] for t in node.inputs]
            outs = self.apply(node.operation, ins, prefix, n_out=len(node.outputs))
            values.update({id(t): s for t, s in zip(node.outputs, outs, strict=True)})
        return [values.get(id(t)) for t in model.outputs]

    def apply(self, op: Any, ins: list[S | None], prefix: str, n_out: int) -> list[S | None]:
        """Output states of ``op`` (one per output tensor); records ``prefix + op.name``."""
        path = prefix + op.name
        if isinstance(op, keras.Model):
            outs = self.run(op, ins, path + "/")
            outs = (outs + [None] * n_out)[:n_out]
        else:
            outs = [self.layer_state(op, ins)] * n_out
        self._record(path, outs[0] if outs else None)
        return outs

    def _record(self, path: str, state: S | None) -> None:
        """Keep the largest field of a layer called more than once (None counts as largest)."""
        self.fields[path] = self.merge([self.fields[path], state]) if path in self.fields else state


def _layer_state(op: Any, ins: list[State]) -> State:
    if isinstance(op, (*_CONVS, *_POOLS)):
        return _through_window(op, ins[0]) if len(ins) == 1 and ins[0] is not None else None
    if isinstance(op, _PASS_THROUGH):
        return _merge(ins)
    return None


def receptive_fields(model: keras.Model) -> dict[str, list[int] | None]:
    """``{path: [rh, rw] or None}`` for every layer path of ``model`` (see module docstring).

    Model inputs of shape ``(batch, H, W, C)`` start at a 1×1 field with jump 1; other inputs
    have no local field.
    """
    starts: list[State] = [_UNIT if len(t.shape) == 4 else None for t in model.inputs]
    propagation: _Propagation[Field] = _Propagation()
    propagation.run(model, starts, "")
    return {p: (list(s.size) if s else None) for p, s in propagation.fields.items()}


def _as_list(value: Any) -> list[int] | None:
    return None if value is None else [int(v) for v in value]


def _activation_name(layer: keras.Layer) -> str | None:
    for cls, name in _ACTIVATION_LAYERS.items():
        if isinstance(layer, cls):
            return name
    fn: Callable[..., Any] | None = getattr(layer, "activation", None)
    return getattr(fn, "__name__", None) if callable(fn) else None


def _arithmetic(layer: keras.Layer) -> dict[str, str | None] | None:
    """Formulas for the height axis of a 2-D conv or pooling layer, else None."""
    if not isinstance(layer, (*_CONVS, *_POOLS)):
        return None
    kernel, strides, dilation = _window(layer)
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    in_shape = layer.input.shape
    height = in_shape[1] if channels_last else in_shape[2]
    size = None
    if height is not None:
        size = conv_output_size(height, kernel[0], strides[0], layer.padding, dilation[0])
    params = None
    c_in = in_shape[-1] if channels_last else in_shape[1]
    if isinstance(layer, L.Conv2D) and c_in is not None:
        c_in //= layer.groups
        params = conv_params(kernel, c_in, layer.filters, layer.use_bias).formula
    return {"output_size": size.explanation if size else None, "params": params}


def _row(path: str, layer: keras.Layer, field: list[int] | None) -> dict[str, Any]:
    pool_size = getattr(layer, "pool_size", None)
    kernel = pool_size if pool_size is not None else getattr(layer, "kernel_size", None)
    dilation = getattr(layer, "dilation_rate", None) if pool_size is None else None
    padding = getattr(layer, "padding", None)
    filters = getattr(layer, "filters", None)
    return {
        "name": path,
        "type": type(layer).__name__,
        "output_shape": output_shape(layer),
        "params": int(layer.count_params()) if layer.built else 0,
        "kernel_size": _as_list(kernel),
        "strides": _as_list(getattr(layer, "strides", None)),
        "padding": padding if isinstance(padding, str) else None,
        "dilation_rate": _as_list(dilation),
        "filters": int(filters) if isinstance(filters, int) else None,
        "activation": _activation_name(layer),
        "receptive_field": field,
        "arithmetic": _arithmetic(layer),
    }


def layer_table(model: keras.Model) -> list[dict[str, Any]]:
    """One JSON-ready row per layer of a built model, in :func:`walk_layers` order.

    Keys: ``name`` (path, ``outer/inner`` inside nested models), ``type``, ``output_shape``
    (batch dropped, None for unknown dims), ``params``, ``kernel_size``, ``strides``,
    ``padding``, ``dilation_rate``, ``filters``, ``activation``, ``receptive_field``
    (``[rh, rw]`` input pixels or None) and ``arithmetic`` (``{"output_size", "params"}``
    formula strings for 2-D conv and pooling rows, else None). Fields that do not apply
    are None.
    """
    fields = receptive_fields(model)
    return [_row(path, layer, fields.get(path)) for path, layer in walk_layers(model)]
