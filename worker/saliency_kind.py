"""The ``saliency`` job kind: gradient attributions (:mod:`models.saliency`) per image.

Options arrive complete (:data:`worker.contract.OPTION_DEFAULTS`); each method is given only
the options it takes (:data:`METHOD_OPTIONS`), and ``baseline`` None becomes the method's own
(black for integrated gradients, grey for occlusion). Per image: the signed attribution
summed over the input's colour channels (``attribution``, NPY float32 H×W at the model's input
size), a picture of it in a diverging colour map (``attribution_png``: red for what raises the
explained score, blue for what lowers it, white for nothing) and an ``overlay`` of that
colour on the original image, stronger where the attribution is (:func:`models.render.
signed_overlay`). With the ``quality`` option each item also gets its deletion / insertion
curves (:mod:`worker.item_quality`), pixels ranked by the signed attribution, highest first.
"""

from __future__ import annotations

import numpy as np

from models import render
from models.activations import top_k
from models.saliency import make_saliency, reduce_channels
from worker import kind_base
from worker.item_quality import add_quality
from worker.npy import npy_bytes

METHOD_OPTIONS = {  # the job options each method takes, besides ``target``
    "gradients": (),
    "smoothgrad": ("samples", "noise", "seed"),
    "integrated_gradients": ("steps", "tolerance", "max_steps", "baseline", "seed"),
    "guided_backprop": (),
    "guided_gradcam": (),
    "occlusion": ("window", "stride", "baseline", "seed"),
}
DEFAULT_BASELINES = {"integrated_gradients": "black", "occlusion": "grey"}
ARTIFACTS = ("attribution", "attribution_png", "overlay")


def method_options(options: dict, layer: str) -> dict:
    """The keyword arguments of ``options["method"]``'s class for this job."""
    method = options["method"]
    chosen = {name: options[name] for name in METHOD_OPTIONS[method]}
    if "baseline" in chosen and chosen["baseline"] is None:
        chosen["baseline"] = DEFAULT_BASELINES[method]
    if method == "guided_gradcam":
        chosen["layer"] = layer
    return {**chosen, "target": options["target"]}


def _pictures(original: np.ndarray, signed: np.ndarray) -> tuple[bytes, bytes, bytes]:
    return (npy_bytes(signed.astype(np.float32)), render.to_png(render.signed_image(signed)),
            render.to_png(render.signed_overlay(original, signed)))


def run_saliency(ctx: kind_base.JobContext) -> tuple[dict, kind_base.Artifacts]:
    options = method_options(ctx.options, ctx.layer)
    method = ctx.options["method"]
    explainer = ctx.tool(("saliency", method, ctx.layer, tuple(sorted(options.items()))),
                         lambda m: make_saliency(method, m.model, m.info.preprocess, **options))
    targets = ctx.options["class_index"]
    maps: list[np.ndarray] = [np.empty(0)] * len(ctx.images)
    chosen, scores, probs = [0] * len(ctx.images), [0.0] * len(ctx.images), \
        [np.empty(0)] * len(ctx.images)
    extras: list[dict] = [{} for _ in ctx.images]
    groups = kind_base.same_size_groups(ctx.images)

    def compute() -> None:
        for done, group in enumerate(groups, 1):
            batch = np.stack([ctx.images[i] for i in group]).astype(np.float32)
            wanted = [targets[i] for i in group] if isinstance(targets, list) else targets
            res = explainer(batch, class_index=wanted)
            summed = reduce_channels(res.maps, "sum")
            for j, i in enumerate(group):
                maps[i], chosen[i] = summed[j], int(res.class_index[j])
                scores[i], probs[i] = float(res.score[j]), res.probs[j]
                extras[i] = {name: values[j].item() for name, values in res.extras.items()
                             if np.ndim(values) == 1}  # int steps stay int
            if done < len(groups):
                ctx.progress(done / len(groups))

    _, timing = kind_base.timed_maps(explainer, compute, len(ctx.images))
    preds = top_k(np.stack(probs), ctx.options["top_k"], ctx.loaded.info.classes)
    pictures = kind_base.render_each(lambda i: _pictures(ctx.originals[i], maps[i]), len(maps),
                            ctx.originals)
    items, artifacts = [], {}
    for i, original in enumerate(ctx.originals):
        names = {base: kind_base.artifact_name(base, i) for base in ARTIFACTS}
        for base, data in zip(ARTIFACTS, pictures[i], strict=True):
            kind = kind_base.NPY if base == "attribution" else kind_base.PNG
            artifacts[names[base]] = (data, kind)
        items.append({"predictions": [dict(vars(p)) for p in preds[i]], "class_index": chosen[i],
                      "score": scores[i], "method": method, "target": ctx.options["target"],
                      "sum": float(maps[i].sum()), "max_abs": float(np.abs(maps[i]).max()),
                      **extras[i], **timing, "resize": ctx.resize,
                      "overlay_size": list(original.shape[:2]), "artifacts": names})
    add_quality(ctx, method, maps, chosen, items, artifacts, "signed attribution")
    return {"items": items, "layer": ctx.layer}, artifacts
