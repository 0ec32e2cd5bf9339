"""Gradient attributions (saliency maps): one small module per method over
:mod:`models.saliency.base`."""

from __future__ import annotations

import inspect
from typing import Any

import keras

from models.errors import InvalidInputError
from models.saliency.base import BaseSaliency, SaliencyResult, reduce_channels
from models.saliency.gradients import Gradients
from models.saliency.guided_backprop import GuidedBackprop
from models.saliency.guided_gradcam import GuidedGradCAM
from models.saliency.integrated_gradients import IntegratedGradients
from models.saliency.occlusion import Occlusion
from models.saliency.smoothgrad import SmoothGrad

METHODS: dict[str, type[BaseSaliency]] = {
    cls.name: cls for cls in (Gradients, SmoothGrad, IntegratedGradients, GuidedBackprop,
                              GuidedGradCAM, Occlusion)
}

__all__ = ["METHODS", "BaseSaliency", "SaliencyResult", "make_saliency", "reduce_channels"]


def make_saliency(method: str, model: keras.Model, preprocess: str = "raw",
                  **options: Any) -> BaseSaliency:
    """The saliency object for ``method`` (one of :data:`METHODS`) with its ``options``
    (keyword arguments of that method's class, e.g. ``steps`` and ``baseline``)."""
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown saliency method {method!r}; expected one of {sorted(METHODS)}")
    cls = METHODS[method]
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "model", "preprocess"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(f"saliency method {method!r} takes no option(s) {unknown}; "
                                f"it takes {sorted(known)}")
    return cls(model, preprocess, **options)
