"""The job kinds: ``KINDS = {name: run}``, one function per kind with one signature.

A kind's ``run(ctx)`` takes a :class:`JobContext` and returns ``(result, artifacts)``:
``result`` is small JSON with ``items`` (one per image, in order) and ``artifacts`` maps a
name to ``(bytes, content_type)``. Artifacts of image ``i > 0`` get the suffix ``.i``; every
item lists its own artifact names under ``artifacts``. Options arrive complete (the API
filled in :data:`worker.contract.OPTION_DEFAULTS`), so no default is chosen here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from models import render
from models.activations import ActivationExtractor, top_k
from models.cam import make_cam
from models.explain import explain_unit
from worker.filters_kind import run_filters
from worker.item_quality import add_quality
from worker.kind_base import (
    NPY,
    PNG,
    Artifacts,
    JobContext,
    artifact_name,
    render_each,
    same_size_groups,
    timed_maps,
)
from worker.npy import npy_bytes
from worker.saliency_kind import run_saliency


def bucket(n: int) -> int:
    """The batch size ``n`` images are padded to: the next power of two or three quarters of
    one (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...). Gathered batches come in every size and each
    new size traces the compiled model call again (except where the tool computes every size
    through one open trace: Grad-CAM and most of its variants on images that fit one pass);
    these buckets keep that to a handful while padding at most a third (powers of two alone
    padded up to half: a batch of 6 shapes images computed as 8 took 6.0 ms, as 6 about 5.1)."""
    power = 1 << (n - 1).bit_length()
    three_quarters = 3 * power // 4
    return three_quarters if n <= three_quarters and 4 * three_quarters == 3 * power else power


def _bucketed(images: list[np.ndarray], exact: bool = False) -> np.ndarray:
    """The images as one float32 batch, padded (with copies of the last one) to
    :func:`bucket` of their count; not padded when ``exact`` (the tool computes every size
    through one trace: padding would only cost, 7-17 % for ``shapes`` Grad-CAM from 5 to 6,
    9 to 12 and 13 to 16 images)."""
    size = len(images) if exact else bucket(len(images))
    padded = list(images) + [images[-1]] * (size - len(images))
    return np.stack(padded).astype(np.float32)


def _cam_per_image(ctx: JobContext, cam: Any) -> list[Any]:
    """One CAM result per image (``heatmap``, ``class_index``, ``score``, ``probs``), computed
    in as few model calls as the image sizes allow."""
    targets = ctx.options["class_index"]
    per_image: list[Any] = [None] * len(ctx.images)
    groups = same_size_groups(ctx.images)
    for done, group in enumerate(groups, 1):
        images = [ctx.images[i] for i in group]
        batch = _bucketed(images, exact=cam.opens_batch((len(images), *images[0].shape)))
        chosen = [targets[i] for i in group] if isinstance(targets, list) else [targets] * \
            len(group)
        res = cam(batch, class_index=chosen + [None] * (len(batch) - len(group)))
        for j, i in enumerate(group):
            per_image[i] = (res.heatmaps[j], res.class_index[j], res.score[j], res.probs[j])
        if done < len(groups):  # the end's progress (1.0) is set with the result
            ctx.progress(done / len(groups))
    return per_image


def run_activations(ctx: JobContext) -> tuple[dict, Artifacts]:
    extractor = ctx.tool(("activations", ctx.layer),
                         lambda m: ActivationExtractor(m.model, ctx.layer, m.info.preprocess))
    channels = ctx.options["channels"]
    items: list[Any] = [None] * len(ctx.images)
    artifacts: Artifacts = {}
    groups = same_size_groups(ctx.images)
    for done, group in enumerate(groups, 1):
        out = extractor(_bucketed([ctx.images[i] for i in group]), ctx.loaded.info.classes,
                        k=ctx.options["top_k"])
        for j, i in enumerate(group):
            acts = out.activations[j]
            names = {b: artifact_name(b, i) for b in ("grid", "activations")}
            artifacts[names["grid"]] = (render.to_png(render.activation_grid(acts, channels)),
                                        PNG)
            artifacts[names["activations"]] = (npy_bytes(acts.astype(np.float32)), NPY)
            items[i] = {"shape": list(acts.shape), "channels": out.channel_stats(j, channels),
                        "predictions": [dict(vars(p)) for p in out.predictions[j]],
                        "artifacts": names}
        if done < len(groups):  # the end's progress (1.0) is set with the result
            ctx.progress(done / len(groups))
    return {"items": items}, artifacts


def _cam_pictures(original: np.ndarray, heat: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """A heatmap's NPY, its PNG, and its overlay on ``original`` (PNG)."""
    return (npy_bytes(heat.astype(np.float32)), render.to_png(render.heatmap_image(heat)),
            render.to_png(render.overlay(original, heat)))


def run_gradcam(ctx: JobContext) -> tuple[dict, Artifacts]:
    method, target = ctx.options["method"], ctx.options["target"]
    cam = ctx.tool(("cam", method, ctx.layer, target),
                   lambda m: make_cam(method, m.model, ctx.layer, m.info.preprocess, target))
    per_image, timing = timed_maps(cam, lambda: _cam_per_image(ctx, cam), len(ctx.images))
    probs = np.stack([p[3] for p in per_image])
    preds = top_k(probs, ctx.options["top_k"], ctx.loaded.info.classes)
    items, artifacts = [], {}
    pictures = render_each(lambda i: _cam_pictures(ctx.originals[i], per_image[i][0]),
                            len(ctx.originals), ctx.originals)
    for i, original in enumerate(ctx.originals):
        _, class_index, score, _ = per_image[i]
        names = {k: artifact_name(k, i) for k in ("heatmap", "heatmap_png", "overlay")}
        for base, data in zip(("heatmap", "heatmap_png", "overlay"), pictures[i], strict=True):
            artifacts[names[base]] = (data, NPY if base == "heatmap" else PNG)
        items.append({"predictions": [dict(vars(p)) for p in preds[i]],
                      "class_index": int(class_index), "score": float(score),
                      "method": method, "target": target, **timing, "resize": ctx.resize,
                      "overlay_size": list(original.shape[:2]), "artifacts": names})
    add_quality(ctx, method, [p[0] for p in per_image], [int(p[1]) for p in per_image], items,
                artifacts, "heatmap")
    return {"items": items, "layer": cam.layer}, artifacts


def run_explain(ctx: JobContext) -> tuple[dict, Artifacts]:
    opts = ctx.options
    items = [explain_unit(ctx.loaded.model, ctx.layer, image.astype(np.float32), opts["filter"],
                          opts["y"], opts["x"], ctx.loaded.info.preprocess)
             for image in ctx.images]
    return {"items": items}, {}


KINDS: dict[str, Callable[[JobContext], tuple[dict, Artifacts]]] = {
    "activations": run_activations,
    "filters": run_filters,
    "gradcam": run_gradcam,
    "explain": run_explain,
    "saliency": run_saliency,
}


