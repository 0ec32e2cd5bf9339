"""The Grad-CAM family: one small module per method over :mod:`models.cam.base`."""

from __future__ import annotations

from models.cam.ablation_cam import AblationCAM
from models.cam.base import BaseCAM, CamResult
from models.cam.eigen_cam import EigenCAM
from models.cam.faster_score_cam import FasterScoreCAM
from models.cam.grad_cam import GradCAM
from models.cam.grad_cam_plus_plus import GradCAMPlusPlus
from models.cam.hires_cam import HiResCAM
from models.cam.layer_cam import LayerCAM
from models.cam.score_cam import ScoreCAM
from models.cam.xgrad_cam import XGradCAM
from models.errors import InvalidInputError

METHODS: dict[str, type[BaseCAM]] = {
    cls.name: cls for cls in (GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, HiResCAM, XGradCAM,
                              EigenCAM, AblationCAM, FasterScoreCAM)
}

__all__ = ["METHODS", "BaseCAM", "CamResult", "make_cam"]


def make_cam(method: str, model, layer: str, preprocess: str = "raw",
             target: str = "class") -> BaseCAM:
    """The CAM object for ``method`` (one of :data:`METHODS`) on ``layer`` (a path; required:
    the default, :func:`models.heads.last_spatial_layer`, is resolved once by the caller),
    explaining the class (``target`` "class") or what lowers it ("negative")."""
    if method not in METHODS:
        raise InvalidInputError(f"unknown CAM method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method](model, layer, preprocess, target)
