"""Walk and probe Keras models: Sequential, functional and nested alike.

A layer is named by its path: outer and inner names joined by ``/``
(``resnet50/conv5_block3_out``). :class:`Probe` re-runs a model's graph on a batch and
captures, in the same forward pass, the input and output of one layer (at any nesting
depth), the pre-activation scores of the output layer (logits: the softmax or sigmoid
of the last layer is split off, as the Grad-CAM papers ask) and the probabilities.

A binary model, one sigmoid unit ``p = sigmoid(z)``, is seen as two classes: class 1 the
positive direction (logit ``z``, probability ``p``), class 0 the negative one (logit ``-z``,
probability ``1 - p``); see :func:`is_binary_sigmoid` and :func:`class_count`. A model
whose output is a dense prediction ``(H, W, K)`` (segmentation, fully convolutional) scores
class ``k`` of an image by its mean over the positions (:func:`image_scores`).

This avoids ``keras.Model(model.inputs, [layer.output, model.output])``, which fails for
Sequential models on Keras 3 and cannot reach layers inside a nested model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from models.folding import Fold, find_folds, folded_weights, has_graph, run_folded_conv
from models.keras_internals import accepts_training, producer, run_graph
from models.preprocess import preprocess_images

_SQUASHING = {"softmax", "sigmoid"}


class LayerNotFoundError(KeyError):
    """No layer with that path exists in the model."""

    def __init__(self, path: str, available: list[str]) -> None:
        hint = ", ".join(available[-8:])
        super().__init__(f"no layer {path!r} in the model (last layers: {hint})")
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


def walk_layers(model: keras.Model, prefix: str = "") -> Iterator[tuple[str, keras.Layer]]:
    """Yield ``(path, layer)`` for every layer, descending into nested models in order."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer, path + "/")


def get_layer(model: keras.Model, path: str) -> keras.Layer:
    """Return the layer at ``path`` (``outer/inner`` for a layer inside a nested model)."""
    for candidate, layer in walk_layers(model):
        if candidate == path:
            return layer
    raise LayerNotFoundError(path, [p for p, _ in walk_layers(model)])


def output_shape(layer: keras.Layer) -> list[int | None] | None:
    """Output shape without the batch dimension (first output of a multi-output layer)."""
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(out, (list, tuple)):
        out = out[0]
    return [None if d is None else int(d) for d in out.shape[1:]]


def output_rank(layer: keras.Layer) -> int | None:
    """Rank of the layer's (first) output, batch included; None if unknown."""
    shape = output_shape(layer)
    return None if shape is None else len(shape) + 1


def image_scores(scores: tf.Tensor) -> tf.Tensor:
    """Class scores ``(B, K)`` of a model's output: as they are when 2-D; a dense prediction
    ``(B, H, W, K)`` (segmentation) averaged over its positions, so that class ``k``'s score
    is its mean over the whole image (the whole-image target of Seg-Grad-CAM)."""
    rank = scores.shape.rank
    return tf.reduce_mean(scores, axis=list(range(1, rank - 1))) if rank and rank > 2 else scores


def output_operation(model: keras.Model) -> Any:
    """The operation giving the model's (first) output: a layer, or a nested model."""
    if isinstance(model, keras.Sequential):
        return model.layers[-1]
    return producer(model.outputs[0])


def _squashing_name(op: Any) -> str | None:
    """'softmax'/'sigmoid' if ``op`` ends with one, else None."""
    if isinstance(op, keras.layers.Softmax):
        return "softmax"
    activation = getattr(op, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in _SQUASHING else None


def is_binary_sigmoid(model: keras.Model) -> bool:
    """Whether the model's (first) output is one unit squashed by a sigmoid."""
    units = model.outputs[0].shape[-1]
    return units == 1 and _squashing_name(output_operation(model)) == "sigmoid"


def class_count(model: keras.Model) -> int:
    """The classes a target may name: the output's units, 2 for a binary sigmoid output."""
    return 2 if is_binary_sigmoid(model) else int(model.outputs[0].shape[-1])


def two_sided(logits: tf.Tensor, probs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A binary sigmoid's ``z`` and ``p`` ``(B, 1)`` as two classes ``(B, 2)``: logits
    ``[-z, z]``, probabilities ``[1 - p, p]``."""
    return tf.concat([-logits, logits], axis=-1), tf.concat([1.0 - probs, probs], axis=-1)


@dataclass
class ProbeOutput:
    """Tensors of one forward pass; shapes with batch ``B``."""

    activation: tf.Tensor  # the layer's output, e.g. (B, H, W, C)
    layer_input: tf.Tensor  # the layer's (first) input
    pre_activation: tf.Tensor  # the layer's output before its activation function
    logits: tf.Tensor  # (B, K) pre-softmax/sigmoid scores of the model's first output
    probs: tf.Tensor  # (B, K) the model's own output (K = 2 for a binary sigmoid: two_sided);
    # a dense (B, H, W, K) output comes as its mean over positions (image_scores)


class Probe:
    """Forward pass of ``model`` that also captures one layer's input and output.

    ``probe(images)`` takes raw RGB pixels, float32 ``(B, H, W, C)`` in 0..255, applies the
    model's ``preprocess`` mode, and returns a :class:`ProbeOutput`. It is traceable inside
    ``tf.function`` and ``tf.GradientTape``. ``layer=None`` captures nothing but the scores.
    ``fold_batchnorm`` runs each conv + batch-norm pair as one convolution
    (:mod:`models.folding`; the same values up to float rounding, fewer passes over memory),
    except a pair that holds the probed layer. ``relu``, when given, replaces every plain ReLU
    of the model (a layer's ``relu`` activation, a default ``ReLU`` layer, an
    ``Activation("relu")``), nested models included: guided backprop passes one with its own
    gradient (:mod:`models.saliency.guided_backprop`). A binary sigmoid output comes out as
    two classes (:func:`two_sided`).
    """

    def __init__(self, model: keras.Model, layer: str | None, preprocess: str = "raw",
                 fold_batchnorm: bool = True,
                 relu: Callable[[tf.Tensor], tf.Tensor] | None = None) -> None:
        self.model = model
        self.layer_path = layer
        self.preprocess = preprocess
        self.relu = relu
        self.layer = get_layer(model, layer) if layer is not None else None
        self._output_op = output_operation(model)
        self._squash = _squashing_name(self._output_op)
        self._binary = is_binary_sigmoid(model)
        self._folds: dict[int, Fold] = {}
        self._models_with_folds: set[int] = set()
        if fold_batchnorm:
            self._plan_folds(model)

    def _plan_folds(self, model: keras.Model) -> None:
        """Find the pairs to fold, their folded weights (now, eagerly), and every model on
        the way to them, which :meth:`_run` must then walk layer by layer."""
        keep = [] if self.layer is None else [self.layer]
        nested = [(path + "/", layer) for path, layer in walk_layers(model)
                  if isinstance(layer, keras.Model)]
        for prefix, owner in [("", model), *nested]:
            folds = find_folds(owner, keep)
            for fold in folds:
                folded_weights(fold)
                self._folds[id(fold.conv)] = self._folds[id(fold.norm)] = fold
            if folds:
                self._models_with_folds.update(
                    id(outer) for path, outer in nested if prefix.startswith(path))

    def __call__(self, images: tf.Tensor, tape: tf.GradientTape | None = None) -> ProbeOutput:
        """One forward pass; ``tape`` watches the layer's output from the moment it exists.

        Watching afterwards is not enough: a tape records an operation only if one of its
        inputs was already watched, and a frozen base (or folded, non-trainable weights)
        leaves nothing upstream of the layer watched.
        """
        captured: dict[str, Any] = {"tape": tape}
        x = preprocess_images(images, self.preprocess)
        out = self._run(self.model, x, "", captured, outermost=True)
        if isinstance(out, (list, tuple)):
            out = out[0]
        logits, out = image_scores(captured.get("logits", out)), image_scores(out)
        if self._binary:
            logits, out = two_sided(logits, out)
        return ProbeOutput(
            activation=captured.get("activation"),
            layer_input=captured.get("layer_input"),
            pre_activation=captured.get("pre_activation"),
            logits=logits,
            probs=out,
        )

    def _run(self, model: keras.Model, x: Any, prefix: str, cap: dict, outermost: bool) -> Any:
        def wrap(op: Any) -> Callable[..., Any]:
            return lambda *args, **kwargs: self._call_op(op, prefix, cap, outermost, args, kwargs)

        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                if not isinstance(layer, keras.layers.InputLayer):
                    x = wrap(layer)(x)
            return x
        return run_graph(model, x, wrap)

    def _call_op(
        self, op: Any, prefix: str, cap: dict, outermost: bool, args: tuple, kwargs: dict
    ) -> Any:
        path = prefix + getattr(op, "name", "")
        if accepts_training(op):
            kwargs["training"] = False
        target = self.layer_path
        fold = self._folds.get(id(op))
        if fold is not None:  # never the probed layer: find_folds kept its pair apart
            return run_folded_conv(fold, args[0]) if op is fold.conv else args[0]
        if isinstance(op, keras.Model) and has_graph(op) and (
                ((id(op) in self._models_with_folds or self.relu is not None)
                 and len(args) == 1 and kwargs.get("mask") is None)
                or (target is not None and target.startswith(path + "/"))):
            result = self._run(op, args[0], path + "/", cap, outermost=False)
        elif outermost and op is self._output_op and self._squash is not None:
            logits = _call_without_activation(op, args, kwargs)
            cap["logits"] = logits
            if path == target:  # the probed layer is the output: its pre-activation is the logit
                cap["pre_activation"] = logits
            result = tf.nn.softmax(logits) if self._squash == "softmax" else tf.sigmoid(logits)
        elif target is not None and path == target and _has_activation(op):
            pre = _call_without_activation(op, args, kwargs)
            cap["pre_activation"] = pre
            result = self.relu(pre) if self.relu and _is_plain_relu(op) else op.activation(pre)
        elif self.relu is not None and _is_plain_relu(op):
            result = self.relu(_call_without_activation(op, args, kwargs))
        else:
            result = op(*args, **kwargs)
        if target is not None and path == target:
            if cap.get("tape") is not None:
                cap["tape"].watch(result)
            cap["layer_input"] = args[0]
            cap["activation"] = result
            cap.setdefault("pre_activation", result)
        return result


def _has_activation(op: Any) -> bool:
    activation = getattr(op, "activation", None)
    return callable(activation) and activation is not keras.activations.linear


def _is_plain_relu(op: Any) -> bool:
    """``op`` ends with ``max(x, 0)``: a ``relu`` activation or a ``ReLU`` layer with its
    defaults (no cap, slope or threshold)."""
    if isinstance(op, keras.layers.ReLU):
        return op.max_value is None and not op.negative_slope and not op.threshold
    return getattr(op, "activation", None) is keras.activations.relu


def _call_without_activation(op: Any, args: tuple, kwargs: dict) -> Any:
    """``op``'s output before its activation function (its input, for an activation layer)."""
    if isinstance(op, (keras.layers.Softmax, keras.layers.Activation, keras.layers.ReLU)):
        return args[0]
    saved = op.activation
    op.activation = keras.activations.linear
    try:
        return op(*args, **kwargs)
    finally:
        op.activation = saved
