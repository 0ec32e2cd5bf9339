"""tf-keras-vis 0.8.7 as the reference of ``benchmarks/methods.py``, set up as our methods are.

Every reference explains the same class of each image through the pre-softmax logit
(``ReplaceToLinear``; Score-CAM's weights are then tf-keras-vis's softmax of it, the
probability, as ours), on the same layer, and ends with our scaling:

- CAMs run with ``expand_cam=False``; their layer-resolution map is upsampled and scaled to
  [0, 1] as :class:`models.cam.base.BaseCAM` does (bilinear ``tf.image.resize``, min-max),
  inside the timed call. tf-keras-vis's own ``expand_cam`` (SciPy ``zoom``) places pixels
  half a cell off ours.
- ``Saliency`` runs with ``keepdims=True``, ``gradient_modifier=None`` and
  ``normalize_map=False``, so it returns the signed (mean) input gradient; both sides are
  then reduced to ``max_c |g|``. (Its default, ``abs`` before averaging, would give SmoothGrad
  the mean of ``|g|`` where ours takes the size of the mean gradient.) Timed, SmoothGrad draws
  its own noise; for agreement it is fed ours (:func:`fed_noise`), so r compares the
  arithmetic, not two random draws.
- Faster-ScoreCAM (``Scorecam(max_N=10)``) keeps the ``max_N`` channels of highest spread
  over the whole batch (the union of every image's top channels), ours per image: for
  agreement it explains one image per call (:func:`tkv_faster_scorecam_per_image`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from models.cam.base import normalize_maps
from models.cam.faster_score_cam import FasterScoreCAM
from models.saliency import make_saliency, reduce_channels
from models.saliency.smoothgrad import SmoothGrad
from worker.contract import OPTION_DEFAULTS

Explain = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
TKV_METHODS = ("gradients", "smoothgrad", "gradcam", "gradcam++", "layercam", "scorecam",
               "faster_scorecam")


def pearson_per_image(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Pearson's r of each pair of maps ``(N, H, W)``, over the images where neither map is
    constant."""
    a = ours.reshape(len(ours), -1).astype(np.float64)
    b = theirs.reshape(len(theirs), -1).astype(np.float64)
    keep = (a.std(axis=1) > 0) & (b.std(axis=1) > 0)
    a = a[keep] - a[keep].mean(axis=1, keepdims=True)
    b = b[keep] - b[keep].mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def r_summary(rs: np.ndarray) -> dict[str, Any]:
    """Median and lowest r, and how many maps were compared."""
    if not len(rs):
        return {"median": None, "min": None, "maps": 0}
    return {"median": float(np.median(rs)), "min": float(rs.min()), "maps": len(rs)}


def upsampled(cams: Any, size: tuple[int, int]) -> np.ndarray:
    """Layer-resolution maps ``(B, h, w)`` at ``size``, scaled as our CAMs are."""
    maps = tf.image.resize(tf.convert_to_tensor(cams, tf.float32)[..., None], size, "bilinear")
    return normalize_maps(maps[..., 0]).numpy()


def _cam(visualizer: Gradcam | Scorecam, layer: str, **options: Any) -> Explain:
    def explain(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict]:
        cams = visualizer(CategoricalScore(targets.tolist()), images, penultimate_layer=layer,
                          seek_penultimate_conv_layer=False, expand_cam=False, **options)
        return upsampled(cams, images.shape[1:3]), {}

    return explain


def _gradients(saliency: Saliency, samples: int, noise: float) -> Explain:
    def explain(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict]:
        grads = saliency(CategoricalScore(targets.tolist()), images, smooth_samples=samples,
                         smooth_noise=noise, keepdims=True, gradient_modifier=None,
                         normalize_map=False)
        return reduce_channels(np.asarray(grads), "max_abs"), {}

    return explain


def tkv_explainers(model: keras.Model, layer: str) -> dict[str, Explain]:
    """The references of :data:`TKV_METHODS`, with our methods' default settings."""
    linear = {"model_modifier": ReplaceToLinear(), "clone": True}
    saliency, scorecam = Saliency(model, **linear), Scorecam(model, **linear)
    defaults = OPTION_DEFAULTS["saliency"]
    return {"gradients": _gradients(saliency, 0, 0.0),
            "smoothgrad": _gradients(saliency, defaults["samples"], defaults["noise"]),
            "gradcam": _cam(Gradcam(model, **linear), layer),
            "gradcam++": _cam(GradcamPlusPlus(model, **linear), layer),
            "layercam": _cam(Layercam(model, **linear), layer),
            "scorecam": _cam(scorecam, layer),
            "faster_scorecam": _cam(scorecam, layer, max_N=FasterScoreCAM.max_channels)}


def tkv_faster_scorecam_per_image(model: keras.Model, layer: str, images: np.ndarray,
                                  targets: np.ndarray) -> np.ndarray:
    """tf-keras-vis Faster-ScoreCAM maps ``(N, H, W)``, one image per call."""
    explain = _cam(Scorecam(model, model_modifier=ReplaceToLinear(), clone=True), layer,
                   max_N=FasterScoreCAM.max_channels)
    return np.concatenate([explain(images[i:i + 1], targets[i:i + 1])[0]
                           for i in range(len(images))])


@contextlib.contextmanager
def fed_noise(smooth: SmoothGrad) -> Iterator[None]:
    """Within the block, tf-keras-vis's SmoothGrad draws our noise: it adds
    ``np.random.normal(0, sigma, (samples, *batch_shape))`` to the tiled batch, and that draw
    returns ``sigma`` times our copies' standard normal noise (:meth:`SmoothGrad.noise`, copy
    ``i`` drawn for the whole batch, as ours draws it)."""

    def normal(loc: float, scale: Any, size: tuple[int, ...]) -> np.ndarray:
        noise = np.stack([smooth.noise(i, size[1:]).numpy() for i in range(size[0])])
        return loc + np.asarray(scale) * noise

    with mock.patch.object(np.random, "normal", normal):
        yield


def smoothgrad_agreement(model: keras.Model, images: np.ndarray, targets: np.ndarray,
                         ours: np.ndarray) -> dict[str, Any]:
    """r of ``ours`` (our SmoothGrad heatmaps of ``images``, one batch, the contract's
    defaults) against tf-keras-vis fed the same noise; and of ours against ours with another
    seed (how far apart noise alone puts two runs)."""
    defaults = OPTION_DEFAULTS["saliency"]
    samples, noise = defaults["samples"], defaults["noise"]
    smooth = make_saliency("smoothgrad", model, samples=samples, noise=noise,
                           seed=defaults["seed"])
    other = make_saliency("smoothgrad", model, samples=samples, noise=noise,
                          seed=defaults["seed"] + 1)
    explain = _gradients(Saliency(model, model_modifier=ReplaceToLinear(), clone=True),
                         samples, noise)
    assert isinstance(smooth, SmoothGrad)
    with fed_noise(smooth):
        theirs, _ = explain(images, targets)
    reseeded = reduce_channels(other(images, class_index=targets).maps, "max_abs")
    return {"images": len(images), "samples": samples, "noise": noise,
            "r_fed_noise": r_summary(pearson_per_image(ours, theirs)),
            "r_other_seed": r_summary(pearson_per_image(ours, reseeded))}
