"""Integrated gradients: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017, Eq. 1: ``IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x')) / dx_i da`` for a
baseline ``x'`` (:mod:`models.saliency.baselines`), approximated with ``steps`` intervals
(Eq. 3): the trapezoid rule (default, ``steps + 1`` gradients) or the right Riemann sum
(the paper's, ``steps`` gradients).

Completeness (Prop. 1): ``sum_i IG_i(x) = F(x) - F(x')``. The result reports per image the
relative gap of the approximation, ``|sum IG - (F(x) - F(x'))| / |F(x) - F(x')|``, as
``extras["completeness_gap"]``; the paper asks for steps that bring it within 5 % (here the
test asks 1 %).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.saliency.base import (
    BaseSaliency,
    SaliencyInputs,
    check_choice,
    check_positive_int,
)
from models.saliency.baselines import make_baseline

RULES = ("trapezoid", "riemann")


class IntegratedGradients(BaseSaliency):
    name = "integrated_gradients"
    uses_gradients = False

    def __init__(self, model: keras.Model, preprocess: str = "raw", steps: int = 64,
                 baseline: str = "black", rule: str = "trapezoid", seed: int = 0,
                 target: str = "class") -> None:
        self.steps = check_positive_int("steps", steps)
        self.baseline = check_choice("baseline", baseline, ("black", "blur", "uniform"))
        self.rule = check_choice("rule", rule, RULES)
        self.seed = int(seed)
        super().__init__(model, preprocess, target)

    def path_weights(self) -> tuple[tf.Tensor, tf.Tensor]:
        """``(alphas, weights)`` of the quadrature over [0, 1]; the weights sum to 1."""
        m = self.steps
        if self.rule == "riemann":
            return tf.range(1, m + 1, dtype=tf.float32) / m, tf.fill((m,), 1.0 / m)
        ends = tf.constant([0.5], tf.float32)
        weights = tf.concat([ends, tf.ones((m - 1,), tf.float32), ends], 0) / m
        return tf.range(m + 1, dtype=tf.float32) / m, weights

    def attributions(self, ctx: SaliencyInputs) -> tf.Tensor:
        images, shape = ctx.images, ctx.images.shape
        baseline = make_baseline(self.baseline, images, self.seed)
        alphas, weights = self.path_weights()

        def step(indices: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
            a = tf.reshape(tf.gather(alphas, indices), (-1, 1, 1, 1, 1))
            path = tf.reshape(baseline[None] + a * (images - baseline)[None], (-1, *shape[1:]))
            grads, _ = self.gradients(path, tf.tile(ctx.targets, [len(valid)]))
            return tf.tensordot(valid * tf.gather(weights, indices),
                                tf.reshape(grads, (-1, *shape)), axes=1)

        count = int(alphas.shape[0])
        mean_grads = self.accumulate(step, count, self.copies_per_pass(images), shape)
        attributions = (images - baseline) * mean_grads
        gain = ctx.score - self.score(self.probe(baseline).logits, ctx.targets)
        total = tf.reduce_sum(attributions, axis=(1, 2, 3))
        ctx.extras["completeness_gap"] = tf.math.divide_no_nan(tf.abs(total - gain),
                                                               tf.abs(gain))
        ctx.extras["score_gain"] = gain
        return attributions
