"""Guided Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, Sec. 3 ("Guided Grad-CAM"): the guided
backpropagation map (:mod:`models.saliency.guided_backprop`) multiplied point by point with
the Grad-CAM map ``L^c = relu(sum_k alpha_k^c A^k)`` (Eq. 1-2, :class:`models.cam.GradCAM`)
bilinearly upsampled to the input size (and scaled to [0, 1]), the same map for every input
channel: ``M = R^0 * up(L^c)``. With target "negative" both factors explain ``-y^c``: the
counterfactual Grad-CAM of Sec. 5.3 has weights ``-alpha_k^c`` (:class:`models.cam.GradCAM`
with ``target="negative"``).
"""

from __future__ import annotations

import keras
import numpy as np

from models.cam.grad_cam import GradCAM
from models.heads import last_spatial_layer
from models.saliency.base import SaliencyResult
from models.saliency.guided_backprop import GuidedBackprop


class GuidedGradCAM(GuidedBackprop):
    name = "guided_gradcam"

    def __init__(self, model: keras.Model, preprocess: str = "raw",
                 layer: str | None = None, target: str = "class") -> None:
        super().__init__(model, preprocess, target)
        self.layer = layer if layer is not None else last_spatial_layer(model)
        self.cam = GradCAM(model, self.layer, preprocess, self.target)

    @property
    def traces(self) -> int:
        """Traces of the guided backprop step and of its Grad-CAM's."""
        return int(GuidedBackprop.traces.fget(self)) + self.cam.traces  # type: ignore[attr-defined]

    def __call__(
        self, images: np.ndarray, class_index: int | list[int | None] | np.ndarray | None = None
    ) -> SaliencyResult:
        guided = super().__call__(images, class_index)
        heat = self.cam(images, class_index=guided.class_index).heatmaps  # (B, H, W) in [0, 1]
        guided.maps = (guided.maps * heat[..., None]).astype(np.float32)
        guided.extras["gradcam"] = heat
        return guided
