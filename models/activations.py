"""Intermediate activations: every feature map of a layer, with predictions from the same pass."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from models.graph import Probe


@dataclass
class Prediction:
    index: int
    label: str | None
    score: float


@dataclass
class LayerActivations:
    """``activations`` float32 ``(B, H, W, C)`` (or ``(B, C)`` for a flat layer)."""

    activations: np.ndarray
    probs: np.ndarray  # (B, K)
    predictions: list[list[Prediction]]  # top-k per image

    def channel_stats(self, i: int, channels: list[int] | None = None) -> list[dict]:
        """``[{"index", "mean", "max"}]`` for image ``i``."""
        acts = self.activations[i]
        flat = acts.reshape(-1, acts.shape[-1])
        chosen = range(acts.shape[-1]) if channels is None else channels
        return [
            {"index": int(c), "mean": float(flat[:, c].mean()), "max": float(flat[:, c].max())}
            for c in chosen
        ]


def top_k(probs: np.ndarray, k: int, classes: list[str] | None = None) -> list[list[Prediction]]:
    """The ``k`` best classes of each row of ``probs`` ``(B, K)``, best first."""
    k = max(1, min(k, probs.shape[-1]))
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [
        [Prediction(int(j), classes[j] if classes else None, float(row[j])) for j in idx]
        for row, idx in zip(probs, order, strict=True)
    ]


class ActivationExtractor:
    """Feature maps of ``layer`` for raw-pixel images ``(B, H, W, C)`` 0..255."""

    def __init__(self, model: keras.Model, layer: str, preprocess: str = "raw") -> None:
        self.probe = Probe(model, layer, preprocess)
        # reduce_retracing: a second batch size traces once more with the batch left open, and
        # no size traces again (a dataset's last, shorter chunk cost a trace per new size,
        # about 0.15 s for ``shapes``, over twice a chunk's compute)
        self._forward = tf.function(lambda x: self._outputs(x), reduce_retracing=True)

    def _outputs(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        out = self.probe(images)
        return out.activation, out.probs

    def __call__(self, images: np.ndarray, classes: list[str] | None = None,
                 k: int = 5) -> LayerActivations:
        acts, probs = self._forward(tf.constant(np.asarray(images, np.float32)))
        probs = probs.numpy()
        return LayerActivations(acts.numpy().astype(np.float32), probs, top_k(probs, k, classes))
