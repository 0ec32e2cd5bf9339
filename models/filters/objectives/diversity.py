"""Diversity objective: ``n`` images of one channel, pushed apart in style (Olah, Mordvintsev
and Schubert, "Feature Visualization", Distill 2017, section "Diversity", after Gatys et al.'s
style Gram matrices):

    L(x_1..x_n) = Σ_i mean_{y,x} a_{y,x,c}(x_i) − λ · (1 / n(n−1)) Σ_{i≠j} cos(G_i, G_j)

where ``G_i = A_iᵀ A_i / HW`` is the ``C × C`` Gram matrix of image ``i``'s activations
``A_i`` (the layer's output flattened to ``HW × C``), flattened for the cosine. Image ``k``
starts from ``(seed, channel, k)`` (image 0 from ``(seed, channel)``, as the channel
objective), since identical starts would get identical gradients and never part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import tensorflow as tf

from models.errors import InvalidInputError
from models.filters.objectives.base import Objective

MAX_IMAGES = 16  # n: the Gram matrices of the whole batch are held at once


def gram_similarity(acts: tf.Tensor) -> tf.Tensor:
    """Mean pairwise cosine similarity of the Gram matrices of ``acts`` ``(n, H, W, C)``
    (0 for one image)."""
    n = acts.shape[0]
    if n is None or n < 2:
        return tf.constant(0.0)
    flat = tf.reshape(acts, (n, -1, acts.shape[-1]))
    gram = tf.einsum("npc,npd->ncd", flat, flat) / tf.cast(tf.shape(flat)[1], acts.dtype)
    unit = tf.math.l2_normalize(tf.reshape(gram, (n, -1)), axis=1)
    cos = tf.matmul(unit, unit, transpose_b=True)
    return (tf.reduce_sum(cos) - tf.linalg.trace(cos)) / (n * (n - 1))


@dataclass(frozen=True)
class Diversity(Objective):
    """``n`` images of one channel; ``weight`` is λ."""

    name: ClassVar[str] = "diversity"
    n: int = 4
    weight: float = 10.0

    def __post_init__(self) -> None:
        if not 2 <= self.n <= MAX_IMAGES:
            raise InvalidInputError(f"diversity n must be in 2..{MAX_IMAGES}, got {self.n}")
        if self.weight < 0:
            raise InvalidInputError(f"diversity_weight must be >= 0, got {self.weight}")

    def check(self, layer_shape: Sequence[int | None], filters: Sequence[int]) -> None:
        super().check(layer_shape, filters)
        if len(filters) != 1:
            raise InvalidInputError(f"objective 'diversity' makes n images of ONE channel, "
                                    f"got filters {list(filters)}")

    def plan(self, filters: Sequence[int]) -> list[tuple[int, tuple[int, ...]]]:
        c = filters[0]
        return [(c, (c,) if k == 0 else (c, k)) for k in range(self.n)]

    def batch_score(self, activations: list[tf.Tensor]) -> tf.Tensor | float:
        return -self.weight * gram_similarity(tf.concat(activations, axis=0))
