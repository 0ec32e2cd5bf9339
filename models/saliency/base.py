"""Shared plumbing of the gradient-attribution (saliency) methods.

A saliency method is its attribution rule: given the images, each image's target class and
the clean forward pass, :meth:`BaseSaliency.attributions` returns signed attributions of the
target's score to every input value, ``(B, H, W, C)`` like the images. Scores are the
pre-softmax logits (as in the Grad-CAM family, :mod:`models.cam.base`), or their negatives
with ``target="negative"`` (what speaks against the class: Selvaraju et al. 2017's
counterfactual explanations, Sec. 5.3, for any method); attributions are with
respect to the raw pixels ``0..255`` (the model's ``preprocess`` runs inside, so it is part of
the differentiated function). Every image has its own target: the top prediction by default or
the one given for it.

Methods that evaluate the model on many copies of each image (noisy, interpolated, occluded)
use :meth:`BaseSaliency.accumulate`: the copies are made chunk by chunk inside one compiled
loop, about :attr:`BaseSaliency.pass_pixels` input pixels per model call, so memory does not
grow with the number of copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from models.cam.base import TARGETS, _resolve_targets
from models.compiled import Compiled
from models.errors import InvalidInputError
from models.graph import Probe, class_count

REDUCTIONS = ("sum", "max_abs")


@dataclass
class SaliencyInputs:
    """What an attribution rule may use; batch ``B``, images ``(H, W, C)``."""

    images: tf.Tensor  # (B, H, W, C) raw input pixels 0..255
    targets: tf.Tensor  # (B,) int32, the class explained for each image
    logits: tf.Tensor  # (B, K) pre-softmax scores of the images
    score: tf.Tensor  # (B,) f(x): the target's logit (negated for target "negative")
    grads: tf.Tensor  # (B, H, W, C) d f(x) / d x (zeros if the method needs none)
    extras: dict[str, tf.Tensor] = field(default_factory=dict)  # per-image numbers to report


@dataclass
class SaliencyResult:
    """Attributions and the forward pass they came from (arrays with batch ``B``)."""

    maps: np.ndarray  # float32 (B, H, W, C), signed attribution per input value
    class_index: np.ndarray  # int64 (B,), the explained class per image
    score: np.ndarray  # float32 (B,), the model's output (probability) for that class
    probs: np.ndarray  # float32 (B, K), the model's output
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. completeness_gap (B,)


def reduce_channels(maps: np.ndarray, how: str = "sum") -> np.ndarray:
    """One 2-D map per image for pictures: ``(B, H, W, C)`` -> float32 ``(B, H, W)``.

    ``sum`` keeps the sign (the attribution of each pixel as a whole: for integrated gradients
    the maps still sum to ``f(x) - f(baseline)``); ``max_abs`` is Simonyan et al.'s
    ``max_c |w_ijc|``, unsigned.
    """
    if how not in REDUCTIONS:
        raise InvalidInputError(f"unknown channel reduction {how!r}; expected one of {REDUCTIONS}")
    maps = np.asarray(maps, dtype=np.float32)
    if how == "sum":
        return maps.sum(axis=-1)
    return np.abs(maps).max(axis=-1)


def check_positive_int(name: str, value: int) -> int:
    """``value`` if it is an int >= 1, else InvalidInputError naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else InvalidInputError naming them."""
    if value not in choices:
        raise InvalidInputError(f"unknown {name} {value!r}; expected one of {choices}")
    return value


def target_logits(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """``logits[b, targets[b]]`` for ``logits`` (B, K) and ``targets`` (B,)."""
    return tf.gather(logits, targets, axis=1, batch_dims=1)


class BaseSaliency:
    """Gradient attribution of a model's class scores to its input pixels.

    ``images`` are raw pixels ``(B, H, W, C)`` 0..255; the model's ``preprocess`` is applied
    inside. ``target`` is ``class`` (explain the class logit) or ``negative`` (its negative).
    Subclasses override :meth:`attributions` (and set ``uses_gradients`` False when
    they need no input gradient of the clean images).
    """

    name = "base"
    uses_gradients = True
    # Input pixels per model call when a method runs many copies of each image: 12 copies of
    # a batch of 4 images of 64x64, or 1 of 4 images of 224x224.
    pass_pixels = 4 * 224 * 224

    def __init__(self, model: keras.Model, preprocess: str = "raw",
                 target: str = "class") -> None:
        self.target = check_choice("target", target, TARGETS)
        self.sign = -1.0 if target == "negative" else 1.0
        self.probe = Probe(model, None, preprocess)
        self._compiled = Compiled(self._forward)

    @property
    def traces(self) -> int:
        """How many times the compiled step was traced (once per new batch shape)."""
        return self._compiled.traces

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        """Signed attributions ``(B, H, W, C)`` of ``ctx.score``: the method's one rule."""
        raise NotImplementedError

    def score(self, logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """The explained score ``f`` (B,) of ``logits`` (B, K): the target logit, negated for
        target "negative"."""
        return self.sign * target_logits(logits, targets)

    def gradients(self, images: tf.Tensor, targets: tf.Tensor,
                  probe: Probe | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``(d f / d images, f)``: the score ``f`` (N,) (:meth:`score`) of each of ``images``
        (N, H, W, C) and its gradient, through ``probe`` (default the plain one)."""
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = self.score((probe or self.probe)(images).logits, targets)
        return tape.gradient(score, images), score

    def copies_per_pass(self, images: tf.Tensor) -> int:
        """How many copies of the whole batch one model call takes (at least 1)."""
        batch, height, width = (int(d) for d in images.shape[:3])
        return max(1, self.pass_pixels // max(1, batch * height * width))

    def accumulate(self, step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], count: int,
                   per_pass: int, shape: tf.TensorShape | tuple[int, ...]) -> tf.Tensor:
        """``sum_i step_i`` over copies ``i = 0 .. count-1``, ``per_pass`` copies at a time.

        ``step(indices, valid)`` gets the copies' indices (per_pass,) int32 and a float32 mask
        (per_pass,) that is 0 for the padding past ``count`` (their indices are clipped to
        ``count - 1``), and returns its contribution of ``shape``, already summed over its
        copies. Runs as one ``tf.while_loop`` (one copy of the model in the traced graph).
        """
        per_pass = max(1, min(per_pass, count))
        offsets = tf.range(per_pass, dtype=tf.int32)

        def body(start: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            indices = start + offsets
            valid = tf.cast(indices < count, tf.float32)
            return start + per_pass, total + step(tf.minimum(indices, count - 1), valid)

        _, total = tf.while_loop(lambda start, _: start < count, body,
                                 (tf.constant(0, tf.int32), tf.zeros(shape, tf.float32)))
        return total

    def _forward(self, images: tf.Tensor, targets: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = self.probe(images)
            chosen = tf.where(targets < 0, tf.argmax(out.logits, axis=-1, output_type=tf.int32),
                              targets)
            score = self.score(out.logits, chosen)
        grads = tape.gradient(score, images) if self.uses_gradients else tf.zeros_like(images)
        ctx = SaliencyInputs(images, chosen, out.logits, score, grads)
        maps = self.attributions(ctx)
        return maps, chosen, target_logits(out.probs, chosen), out.probs, ctx.extras

    def __call__(
        self, images: np.ndarray, class_index: int | list[int | None] | np.ndarray | None = None
    ) -> SaliencyResult:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise InvalidInputError(f"images must be (B, H, W, C), got shape {images.shape}")
        targets = _resolve_targets(class_index, images.shape[0], class_count(self.probe.model))
        maps, chosen, score, probs, extras = self._compiled(tf.constant(images), targets)
        return SaliencyResult(
            maps=maps.numpy().astype(np.float32), class_index=chosen.numpy().astype(np.int64),
            score=score.numpy(), probs=probs.numpy(),
            extras={key: value.numpy() for key, value in extras.items()},
        )
