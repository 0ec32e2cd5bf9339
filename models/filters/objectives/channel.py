"""Channel objective: the mean activation of one channel (Olah, Mordvintsev and Schubert,
"Feature Visualization", Distill 2017, the "channel" of their objective figure):

    score(x) = (1 / HW) Σ_{y,x} a_{y,x,c}(x)

taken before the layer's activation function, so a ReLU does not stop the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from models.filters.objectives.base import Objective


@dataclass(frozen=True)
class Channel(Objective):
    """The base's own rule: image ``i`` maximises the mean of channel ``index[i]``."""

    name: ClassVar[str] = "channel"
