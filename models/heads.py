"""Where a model's class scores come from, and what its layers can take.

- :func:`output_layer`: the path of the layer giving the model's first output, inside nested
  models too (``base/predictions``): the default layer of the ``class`` filter objective.
- :func:`last_spatial_layer`: the default layer of Grad-CAM and the other spatial kinds, the
  last ``(H, W, C)`` layer before the head. For a model whose output is a dense prediction
  ``(H, W, K)`` (fully convolutional, segmentation), the head is its logit layer and what
  follows it (a separate softmax, an upsampling to the input size).
- :func:`too_small`: whether an image of a given size goes through a model of free input size,
  by Keras's shape inference alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import keras

from models.graph import LayerNotFoundError, output_operation, output_rank, walk_layers
from models.keras_internals import run_graph

log = logging.getLogger(__name__)

L = keras.layers
# Weightless layers that may follow a dense prediction's logit layer: squashing, resizing.
_HEAD_TAIL = (L.Activation, L.Softmax, L.ReLU, L.UpSampling2D, L.Resizing, L.Reshape,
              L.Cropping2D, L.ZeroPadding2D)


def _head(model: keras.Model) -> tuple[str, Any]:
    """Path and operation of what gives the model's first output, through nested models."""
    op = output_operation(model)
    path = str(op.name)
    while isinstance(op, keras.Model) and op.layers:
        try:
            inner = output_operation(op)
        except (AttributeError, IndexError):  # a subclassed model: no graph to follow
            break
        op, path = inner, f"{path}/{inner.name}"
    return path, op


def output_layer(model: keras.Model) -> str | None:
    """Path of the layer giving the model's first output (its class scores); None when that
    is no layer of the table (a bare ``keras.ops`` operation)."""
    path, _ = _head(model)
    return path if any(p == path for p, _ in walk_layers(model)) else None


def last_spatial_layer(model: keras.Model) -> str:
    """Path of the last layer whose output is 4-D ``(batch, H, W, C)`` before the head: not
    the output layer or a nested model holding it, and for a dense-prediction output whose
    last layer has no weights (a separate softmax, an upsampling) not the weightless layers
    before it nor the logit layer they follow. Only when nothing else is spatial, the head."""
    head_path, head = _head(model)
    found = [(path, layer) for path, layer in walk_layers(model) if output_rank(layer) == 4]
    if not found:
        raise LayerNotFoundError("<last 4-D layer>", [p for p, _ in walk_layers(model)])
    rest = [(path, layer) for path, layer in found
            if path != head_path and not head_path.startswith(path + "/")]
    if rest and output_rank(head) == 4 and not head.weights:
        while rest and isinstance(rest[-1][1], _HEAD_TAIL) and not rest[-1][1].weights:
            rest.pop()
        if len(rest) > 1:
            rest.pop()  # the logit layer
    return (rest or found)[-1][0]


def too_small(model: keras.Model, height: int, width: int) -> str | None:
    """Why an image of ``height``×``width`` cannot go through ``model`` (a model of free input
    size): the layer whose output shape Keras refuses, e.g. an empty output after a valid
    convolution or a pooling wider than what reaches it, with Keras's reason; else None.
    Shapes only. A failure of the shape inference itself lets the image through: the
    computation then says what it says."""
    x = keras.KerasTensor((1, height, width, model.inputs[0].shape[-1]))

    def spec(op: Any) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                if isinstance(op, L.Concatenate):
                    _check_concatenation(op, args[0])
                return op.compute_output_spec(*args, **kwargs)
            except ValueError as exc:
                raise _Refused(f"layer {getattr(op, 'name', '?')!r}: "
                               f"{' '.join(str(exc).split())[:240]}") from exc
        return call

    try:
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                x = spec(layer)(x)
        else:
            run_graph(model, x, spec)
    except _Refused as refused:
        return str(refused)
    except Exception:  # noqa: BLE001 - a gap in the shape inference is not the image's fault
        log.warning("shape inference failed for %d×%d; computing anyway", width, height,
                    exc_info=True)
    return None


def _check_concatenation(op: Any, inputs: list[Any]) -> None:
    """Keras's shape inference of a Concatenate leaves a mismatch along another axis unknown
    (a U-Net's skip and its upsampled path, 9 rows against 8): refuse it as the op would."""
    shapes = [list(t.shape) for t in inputs]
    for shape in shapes:
        del shape[op.axis]
    if any(shape != shapes[0] for shape in shapes[1:]):
        raise ValueError(f"inputs of shapes {[tuple(t.shape) for t in inputs]} cannot be "
                         f"joined along axis {op.axis}")


class _Refused(Exception):
    """Keras's shape inference refused a layer's output (the reason its argument)."""
