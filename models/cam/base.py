"""Shared plumbing of the Grad-CAM family.

A CAM method is its weighting rule: given the target layer's activations ``A`` of shape
``(B, h, w, C)`` and the gradients ``dy/dA`` of each image's target score (the
pre-softmax logit), :meth:`BaseCAM.weights` returns weights broadcastable to ``A``. The base
computes the map ``relu(sum_c weights * A)``, upsamples it bilinearly to the input size
``(H, W)`` and scales each map to [0, 1]. Every image has its own target class: the top
prediction by default or the one given for it.

``target="negative"`` explains what lowers the class instead: the score is the negated logit
``-y^c``, so every gradient is negated (Selvaraju et al. 2017, Sec. 5.3, "counterfactual
explanations": ``alpha_k = 1/Z sum_ij -dy^c/dA^k_ij``), and methods that weigh by the class's
probability use ``1 - p_c`` (:meth:`BaseCAM.score`, :meth:`BaseCAM.probability`). A binary
sigmoid model has two classes (:func:`models.graph.class_count`): class 0, logit ``-z``, is
the negative direction of class 1, so class 0 explained equals class 1 with ``negative``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from models.compiled import Compiled
from models.errors import InvalidInputError
from models.graph import Probe, class_count, get_layer

TARGETS = ("class", "negative")  # explain the class's score, or what lowers it


@dataclass
class CamInputs:
    """What a weighting rule may use; batch ``B``, target layer ``(h, w, C)``."""

    acts: tf.Tensor  # (B, h, w, C) the layer's activations A
    grads: tf.Tensor  # (B, h, w, C) d score / dA (score: BaseCAM.score; zeros if unused)
    logits: tf.Tensor  # (B, K) pre-softmax scores
    images: tf.Tensor  # (B, H, W, C_in) raw input pixels 0..255
    targets: tf.Tensor  # (B,) int32, the class explained for each image


@dataclass
class CamResult:
    """Heatmaps and the forward pass they came from (arrays with batch ``B``)."""

    heatmaps: np.ndarray  # float32 (B, H, W), values in [0, 1]
    class_index: np.ndarray  # int64 (B,), the explained class per image
    score: np.ndarray  # float32 (B,), the model's output for that class
    probs: np.ndarray  # float32 (B, K), the model's output
    layer: str


# At most this many micro-batches (copies of the model in one traced graph), so tracing
# a large batch stays cheap.
MAX_MICRO_BATCHES = 4


def normalize_maps(cams: tf.Tensor) -> tf.Tensor:
    """Scale each map ``(..., H, W)`` to [0, 1] by its own min and max (constant maps give 0)."""
    low = tf.reduce_min(cams, axis=(-2, -1), keepdims=True)
    high = tf.reduce_max(cams, axis=(-2, -1), keepdims=True)
    return tf.math.divide_no_nan(cams - low, high - low)


def over_channels(
    score: Callable[[tf.Tensor], tf.Tensor], channels: int, chunk: int
) -> tf.Tensor:
    """Per-channel scores ``(C, B)`` from ``score(ids)``, which takes ``chunk`` channel
    indices (int32) and returns their scores ``(chunk, B)``: one call per group of ``chunk``
    channels, in sequence. The last group is filled up with channel 0; its extra rows are
    dropped."""
    ids = tf.concat([tf.range(channels), tf.zeros(-channels % chunk, tf.int32)], axis=0)
    groups = tf.reshape(ids, (-1, chunk))
    scores = tf.map_fn(score, groups, fn_output_signature=tf.float32, parallel_iterations=1)
    return tf.reshape(scores, (-1, tf.shape(scores)[-1]))[:channels]


def _resolve_targets(
    class_index: int | list[int | None] | np.ndarray | None, batch: int, num_classes: int
) -> tf.Tensor:
    """One target per image; None (for all, or for one image in a list) means "the top
    prediction", passed on as -1."""
    if class_index is None:  # from NumPy: an eager tf.fill took 4x as long (266 against 62 µs)
        return tf.constant(np.full(batch, -1, np.int32))
    given = np.atleast_1d(np.asarray(class_index, dtype=object))
    top = np.array([t is None for t in given])
    targets = np.where(top, -1, given).astype(np.int64)
    if targets.size == 1:
        targets, top = np.repeat(targets, batch), np.repeat(top, batch)
    if targets.shape != (batch,):
        raise InvalidInputError(
            f"class_index has {targets.size} entries for a batch of {batch} images")
    # Checked here: an XLA gather clamps a bad index silently instead of failing.
    bad = targets[~top & ((targets < 0) | (targets >= num_classes))]
    if bad.size:
        raise InvalidInputError(
            f"class_index {bad.tolist()} out of range: the model has {num_classes} classes")
    return tf.constant(targets, tf.int32)


class BaseCAM:
    """Grad-CAM-style explanation of one layer of one model.

    ``layer`` is the path of the explained layer, always given (callers that want the usual
    default pass :func:`models.heads.last_spatial_layer`). ``images`` are raw pixels
    ``(B, H, W, C)`` 0..255; the model's ``preprocess`` is applied inside. Subclasses
    override :meth:`weights` (and set ``uses_gradients``; ``explains_class`` False for a
    method whose map does not depend on the class, which then takes no ``negative`` target).
    """

    name = "base"
    uses_gradients = True
    explains_class = True
    probe_type: type[Probe] = Probe  # how the model is run (a subclass may alter the layer)
    # Input pixels per forward pass. Images are independent, so a batch runs as micro-batches
    # of about four 224x224 images; small models still get one pass. Measured on 2 CPU cores,
    # ResNet50 Grad-CAM at batch 16, 10 interleaved calls: 1.17 s median in one pass, 1.01 s
    # in chunks of 4 (1.06 s in chunks of 8); 1.23 s in one pass without batch-norm folding.
    chunk_pixels = 4 * 224 * 224
    # Whether :meth:`weights` computes a batch the same way whatever its size: then batches
    # that run as one pass share one trace with the batch dimension open (models/compiled.py).
    # Not for methods that size their own passes by the batch (Score-CAM, Ablation-CAM).
    open_batch = True

    def __init__(
        self, model: keras.Model, layer: str, preprocess: str = "raw", target: str = "class"
    ) -> None:
        if not isinstance(layer, str) or not layer:
            raise TypeError(f"layer must be a layer path such as models.graph."
                            f"last_spatial_layer(model) gives, got {layer!r}")
        if target not in TARGETS:
            raise InvalidInputError(f"unknown target {target!r}; expected one of {TARGETS}")
        if target == "negative" and not self.explains_class:
            raise InvalidInputError(f"{self.name} does not depend on the class: it has no "
                                    "negative target")
        self.layer, self.target = layer, target
        self.sign = -1.0 if target == "negative" else 1.0
        self.probe = self.probe_type(model, layer, preprocess)
        if len(get_layer(model, layer).output.shape) != 4:
            raise InvalidInputError(f"layer {layer!r} has no spatial (4-D) output")
        self._compiled = Compiled(self._forward, self.opens_batch)

    @property
    def traces(self) -> int:
        """How many times the compiled step was traced (once per new batch shape, or once
        for every batch that runs as one pass when ``open_batch``)."""
        return self._compiled.traces

    def one_pass(self, shape: tf.TensorShape) -> int:
        """The most images of ``shape`` ``(B, H, W, C)`` one forward pass takes: about
        ``chunk_pixels`` input pixels (a model with free spatial dimensions counts 224²)."""
        return max(1, self.chunk_pixels // ((shape[1] or 224) * (shape[2] or 224)))

    def opens_batch(self, shape: tf.TensorShape | tuple[int, ...]) -> bool:
        """Whether a batch of ``shape`` ``(B, H, W, C)`` runs through the trace with the batch
        dimension open (any size, no new trace): with ``open_batch``, when it takes one pass."""
        return self.open_batch and shape[0] <= self.one_pass(shape)

    def weights(self, ctx: CamInputs) -> tf.Tensor:
        """Weights broadcastable to ``ctx.acts`` (B, h, w, C): the method's one rule."""
        raise NotImplementedError

    def score(self, logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """The explained score (N,) of ``logits`` (N, K): ``logits[n, targets[n]]``, negated
        for target "negative"."""
        return self.sign * tf.gather(logits, targets, axis=1, batch_dims=1)

    def probability(self, probs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """The explained probability (N,) of ``probs`` (N, K): ``p = probs[n, targets[n]]``,
        or ``1 - p`` for target "negative"."""
        chosen = tf.gather(probs, targets, axis=1, batch_dims=1)
        return 1.0 - chosen if self.target == "negative" else chosen

    def _forward(self, images: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The batch in micro-batches of about ``chunk_pixels`` input pixels each."""
        n, per = images.shape[0], self.one_pass(images.shape)
        if n is not None:  # each micro-batch is a copy of the model in the traced graph
            per = max(per, -(-n // MAX_MICRO_BATCHES))
        if n is None or per >= n:
            return self._forward_chunk(images, targets)
        parts = [self._forward_chunk(images[i:i + per], targets[i:i + per])
                 for i in range(0, n, per)]
        return tuple(tf.concat(part, axis=0) for part in zip(*parts, strict=True))

    def _forward_chunk(self, images: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            out = self.probe(images, tape=tape)
            acts = out.activation
            chosen = tf.where(targets < 0, tf.argmax(out.logits, axis=-1, output_type=tf.int32),
                              targets)
            score = self.score(out.logits, chosen)
        grads = tape.gradient(score, acts) if self.uses_gradients else tf.zeros_like(acts)
        ctx = CamInputs(acts, grads, out.logits, images, chosen)
        cams = tf.nn.relu(tf.reduce_sum(self.weights(ctx) * acts, axis=-1))
        cams = tf.image.resize(cams[..., None], tf.shape(images)[1:3], method="bilinear")[..., 0]
        probs = tf.gather(out.probs, chosen, axis=1, batch_dims=1)
        return normalize_maps(cams), chosen, probs, out.probs

    def __call__(
        self, images: np.ndarray, class_index: int | list[int | None] | np.ndarray | None = None
    ) -> CamResult:
        images = np.asarray(images, dtype=np.float32)
        targets = _resolve_targets(class_index, images.shape[0], class_count(self.probe.model))
        heat, chosen, score, probs = self._compiled(tf.constant(images), targets)
        return CamResult(
            heatmaps=heat.numpy().astype(np.float32), class_index=chosen.numpy().astype(np.int64),
            score=score.numpy(), probs=probs.numpy(), layer=self.layer,
        )
