"""Negative objective: what most suppresses a channel (Olah, Mordvintsev and Schubert,
"Feature Visualization", Distill 2017, section "Diversity": negative optimisation shows
the opposite of what a neuron detects):

    score(x) = −(1 / HW) Σ_{y,x} a_{y,x,c}(x)

on the pre-activation (below zero a ReLU's output says nothing about how far below), which is
also the value reported: the channel's mean before its activation function, lower is more
suppressed (after a ReLU the mean can even rise as the map's spread grows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import tensorflow as tf

from models.filters.objectives.base import Objective, channel_means
from models.graph import ProbeOutput


@dataclass(frozen=True)
class Negative(Objective):
    name: ClassVar[str] = "negative"

    def score(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        return -channel_means(out.pre_activation, index)

    def reached(self, out: ProbeOutput, index: tf.Tensor) -> tf.Tensor:
        return channel_means(out.pre_activation, index)
