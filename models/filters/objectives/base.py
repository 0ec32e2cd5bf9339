"""What one filter-pattern image is optimised for: the base of the objectives.

The ascent (:mod:`models.filters.ascent`) owns the image, the transforms, the optimiser and
the loop; an objective only says what to maximise. Image ``i`` of a batch is made for the
channel (or unit) ``index[i]`` of the probed layer; :meth:`Objective.score` gives each image's
score from one forward pass of its micro-batch, and :meth:`Objective.batch_score` a term over
the whole batch (zero unless the images are coupled, as in
:mod:`models.filters.objectives.diversity`). The ascent maximises

    L(x) = Σ_i score_i(x_i) + batch_score(x_1 .. x_n).

Objectives are frozen dataclasses: hashable, so a compiled step is kept per objective, and
checked in ``__post_init__`` (errors name the bad value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import tensorflow as tf

from models.errors import InvalidInputError
from models.graph import ProbeOutput


def channel_means(acts: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Mean activation of channel ``index[i]`` in image ``i``: ``(n, ..., C) -> (n,)``."""
    if acts.shape.rank > 2:
        acts = tf.reduce_mean(acts, axis=list(range(1, acts.shape.rank - 1)))
    return tf.gather(acts, index, axis=1, batch_dims=1)


@dataclass(frozen=True)
class Objective:
    """Maximise the mean of channel ``index[i]`` over image ``i``'s feature map.

    Subclasses override :meth:`score` (and, where the reported value differs,
    :meth:`reached`). ``spatial``: the objective needs a layer with an ``(H, W, C)`` output.
    ``redirect_relu``: the model's ReLUs pass a redirected gradient while they are off
    (:mod:`models.filters.redirected_relu`), for objectives a flat start gives no gradient.
    """

    name: ClassVar[str] = "channel"
    spatial: ClassVar[bool] = True
    redirect_relu: ClassVar[bool] = False

    def check(self, layer_shape: Sequence[int | None], filters: Sequence[int]) -> None:
        """Refuse a layer (output shape without the batch axis) or filters it cannot use."""
        if self.spatial and len(layer_shape) != 3:
            raise InvalidInputError(f"objective {self.name!r} needs a layer with an H×W×C "
                                    f"output, got {list(layer_shape)}")

    def plan(self, filters: Sequence[int]) -> list[tuple[int, tuple[int, ...]]]:
        """Per image of the batch: its channel and the key its start is drawn from (with the
        seed). One image per filter, started from ``(seed, filter)`` alone."""
        return [(f, (f,)) for f in filters]

    def score(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        """``(n,)`` what image ``i`` maximises. The pre-activation keeps a gradient where a
        ReLU would have cut it off."""
        return channel_means(out.pre_activation, index)

    def batch_score(self, activations: list[tf.Tensor]) -> tf.Tensor | float:
        """A term over the whole batch (``activations``: the layer's output per micro-batch)."""
        return 0.0

    def reached(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        """``(n,)`` the value reported per image: the channel's mean activation."""
        return channel_means(out.activation, index)
