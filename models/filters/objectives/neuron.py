"""Neuron objective: one unit of a channel's feature map (Olah, Mordvintsev and Schubert,
"Feature Visualization", Distill 2017, the "neuron" of their objective figure):

    score(x) = a_{y,x,c}(x)

the pre-activation at row ``y``, column ``x`` of the layer's output (default: the centre).
Only the unit's receptive field reaches it, so the pattern fills that window alone. Near the
flat start image the early ReLUs are off inside the picture and one interior unit has no
gradient at all, so the model's ReLUs pass Lucid's redirected gradient
(:mod:`models.filters.redirected_relu`).
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
class Neuron(Objective):
    """``y``, ``x``: the unit's position in the layer's output grid; None: the centre."""

    name: ClassVar[str] = "neuron"
    redirect_relu: ClassVar[bool] = True
    y: int | None = None
    x: int | None = None

    def __post_init__(self) -> None:
        for axis, value in (("y", self.y), ("x", self.x)):
            if value is not None and value < 0:
                raise InvalidInputError(f"neuron {axis} must be >= 0, got {value}")

    def check(self, layer_shape: Sequence[int | None], filters: Sequence[int]) -> None:
        super().check(layer_shape, filters)
        for axis, value, size in (("y", self.y, layer_shape[0]), ("x", self.x, layer_shape[1])):
            if value is not None and size is not None and value >= size:
                raise InvalidInputError(f"neuron {axis}={value} is outside the layer's "
                                        f"output grid ({size} positions)")

    def _unit(self, acts: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        height, width = acts.shape[1], acts.shape[2]
        y = height // 2 if self.y is None else self.y
        x = width // 2 if self.x is None else self.x
        if y >= height or x >= width:  # a free-size model: the grid follows the image size
            raise InvalidInputError(f"neuron (y={y}, x={x}) is outside the layer's "
                                    f"{height}×{width} output grid")
        return tf.gather(acts[:, y, x, :], index, axis=1, batch_dims=1)

    def score(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        return self._unit(out.pre_activation, index)

    def reached(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        return self._unit(out.activation, index)
