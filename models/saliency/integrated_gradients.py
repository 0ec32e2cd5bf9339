"""Integrated gradients: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017, Eq. 1: ``IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x')) / dx_i da`` for a
baseline ``x'`` (:mod:`models.saliency.baselines`), approximated with ``steps`` intervals
(Eq. 3): the trapezoid rule (default, ``steps + 1`` gradients) or the right Riemann sum
(the paper's, ``steps`` gradients).

Completeness (Prop. 1): ``sum_i IG_i(x) = F(x) - F(x')``. The result reports per image the
relative gap of the approximation, ``|sum IG - (F(x) - F(x'))| / |F(x) - F(x')|``, as
``extras["completeness_gap"]``; the paper asks for steps that bring it within 5 % (Sec. 3).

A fixed step count is not enough for every image: on a ReLU network the path crosses kinks
(the trapezoid rule's error then falls as 1/m, not 1/m²), and where ``F(x) - F(x')`` is small
a small absolute error is a large relative one. So with a ``tolerance`` the images whose gap
exceeds it are computed again with twice the steps, and again, until each is within it or
reaches ``max_steps``; ``extras["steps"]`` says how many each image got. Only those images
are recomputed (the others keep their first result; the recomputed ones in a batch padded to
a power of two, so that each finer step is traced for few batch sizes), each from the same
baseline for the same class, so an image's result does not depend on the others in its batch
(except for the ``uniform`` baseline, drawn over the batch it is computed in).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.errors import InvalidInputError
from models.saliency.base import (
    BaseSaliency,
    SaliencyInputs,
    SaliencyResult,
    check_choice,
    check_positive_int,
)
from models.saliency.baselines import make_baseline

RULES = ("trapezoid", "riemann")
MAX_STEPS = 4096  # the most ``max_steps`` may be


class IntegratedGradients(BaseSaliency):
    name = "integrated_gradients"
    uses_gradients = False

    def __init__(self, model: keras.Model, preprocess: str = "raw", steps: int = 64,
                 baseline: str = "black", rule: str = "trapezoid", seed: int = 0,
                 target: str = "class", tolerance: float | None = None,
                 max_steps: int | None = None) -> None:
        self.steps = check_positive_int("steps", steps)
        self.baseline = check_choice("baseline", baseline, ("black", "blur", "uniform"))
        self.rule = check_choice("rule", rule, RULES)
        self.seed = int(seed)
        self.tolerance = None if tolerance is None else float(tolerance)
        if self.tolerance is not None and not self.tolerance >= 0:
            raise InvalidInputError(f"tolerance must be >= 0, got {tolerance!r}")
        self.max_steps = self.steps if max_steps is None else \
            check_positive_int("max_steps", max_steps)
        if not self.steps <= self.max_steps <= MAX_STEPS:
            raise InvalidInputError(f"max_steps must be in steps..{MAX_STEPS} "
                                    f"({self.steps}..{MAX_STEPS}), got {max_steps}")
        self._args = (model, preprocess, baseline, rule, seed, target)
        self._finer: dict[int, IntegratedGradients] = {}
        super().__init__(model, preprocess, target)

    def __call__(self, images: np.ndarray,
                 class_index: int | list[int | None] | np.ndarray | None = None
                 ) -> SaliencyResult:
        """As :meth:`BaseSaliency.__call__`, then the images whose completeness gap is over
        ``tolerance`` again with doubled steps, up to ``max_steps``."""
        res = super().__call__(images, class_index)
        res.extras["steps"] = np.full(len(res.maps), self.steps, np.int64)
        steps = self.steps
        while self.tolerance is not None and steps * 2 <= self.max_steps:
            over = np.flatnonzero(~(res.extras["completeness_gap"] <= self.tolerance))
            if not over.size:
                break
            steps *= 2
            finer = self._finer.get(steps)
            if finer is None:
                model, preprocess, baseline, rule, seed, target = self._args
                finer = self._finer[steps] = IntegratedGradients(
                    model, preprocess, steps, baseline, rule, seed, target)
            # padded to a power of two (the last image repeated), so each finer step is
            # traced for a few batch sizes, not for every count of images over the tolerance
            size, classes = 1 << (over.size - 1).bit_length(), res.class_index[over]
            picks = np.concatenate([over, np.repeat(over[-1:], size - over.size)])
            again = finer(np.asarray(images, np.float32)[picks],
                          class_index=[int(c) for c in np.asarray(res.class_index)[picks]])
            assert (again.class_index[:over.size] == classes).all()
            res.maps[over] = again.maps[:over.size]
            for key, values in again.extras.items():
                res.extras[key] = np.array(res.extras[key])  # writable
                res.extras[key][over] = values[:over.size]
            res.extras["steps"][over] = steps
        return res

    @property
    def traces(self) -> int:
        """Traces of this step and of the finer ones made for refining (see the module)."""
        return int(BaseSaliency.traces.fget(self)) + sum(  # type: ignore[attr-defined]
            f.traces for f in self._finer.values())

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
