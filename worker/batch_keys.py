"""Which queued jobs can share one model call: same model, kind, layer and every option that
changes the computation (a Grad-CAM method, ``top_k``, the channels shown); only the class
explained may differ, image by image. Jobs with the same key wait in one Redis list, from
which a worker gathers them (see ``JobStore.claim_companions``). TensorFlow-free: the API
computes the key when it queues a job."""

from __future__ import annotations

import hashlib
import json

BATCHED_KINDS = ("activations", "gradcam", "saliency")
PER_IMAGE_OPTIONS = ("class_index",)  # may differ between jobs of one batch


def _random_per_batch(kind: str, options: dict) -> bool:
    """Saliency methods drawing seeded noise over the whole batch (smoothgrad's copies, the
    uniform baseline): merged with other jobs an image would get other noise than alone."""
    return kind == "saliency" and (options.get("method") == "smoothgrad"
                                   or options.get("baseline") == "uniform")


def batch_key(kind: str, model: str, layer: str | None, options: dict) -> str | None:
    """The key of the jobs this one can be computed with, or None if it runs alone."""
    if kind not in BATCHED_KINDS or _random_per_batch(kind, options):
        return None
    shared = {k: v for k, v in options.items() if k not in PER_IMAGE_OPTIONS}
    text = json.dumps([kind, model, layer, shared], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
