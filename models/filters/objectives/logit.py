"""Class objective: activation maximisation of a logit or Dense unit (Simonyan, Vedaldi and
Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop, eq. 1, without their
L2 term: the Fourier parametrisation and transforms regularise instead):

    x* = argmax_x S_k(x)

``S_k`` is unit ``k`` of a flat layer before its activation function: for the model's last
layer, the logit before the softmax or sigmoid (:class:`models.graph.Probe` splits it off), as
the paper asks, since maximising a softmax probability can lower the other classes instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import tensorflow as tf

from models.errors import InvalidInputError
from models.filters.objectives.base import Objective
from models.graph import ProbeOutput


@dataclass(frozen=True)
class ClassLogit(Objective):
    """Image ``i`` maximises unit ``index[i]`` of a layer with a flat ``(K,)`` output."""

    name: ClassVar[str] = "class"
    spatial: ClassVar[bool] = False

    def check(self, layer_shape: Sequence[int | None], filters: Sequence[int]) -> None:
        if len(layer_shape) != 1:
            raise InvalidInputError(f"objective 'class' needs a layer with a flat output (a "
                                    f"Dense layer, e.g. the model's last), got {list(layer_shape)}")

    def score(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        return tf.gather(out.pre_activation, index, axis=1, batch_dims=1)

    def reached(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        """The unit's value before the activation function (the logit)."""
        return self.score(out, index)
