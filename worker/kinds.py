"""One function per job kind: arrays in (raw images), result items and artifacts out.

Each returns ``(result, artifacts)`` where ``result`` is small JSON and ``artifacts`` maps a
name to ``(bytes, content_type)``. Artifacts of image ``i > 0`` get the suffix ``.i``;
every item lists its own artifact names under ``artifacts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from models import render
from models.activations import ActivationExtractor, top_k
from models.cam import make_cam
from models.explain import explain_unit
from models.filters import AscentOptions, FilterVisualizer
from models.zoo import LoadedModel
from worker.npy import npy_bytes

PNG, NPY = "image/png", "application/x-npy"
Artifacts = dict[str, tuple[bytes, str]]
ToolGetter = Callable[[tuple, Callable[[LoadedModel], Any]], Any]


def _name(base: str, i: int) -> str:
    return base if i == 0 else f"{base}.{i}"


def run_activations(loaded: LoadedModel, tool: ToolGetter, layer: str, options: dict,
                    images: list[np.ndarray], progress: Callable[[float], None]) -> tuple:
    extractor = tool(("activations", layer),
                     lambda m: ActivationExtractor(m.model, layer, m.info.preprocess))
    items, artifacts = [], {}
    for i, image in enumerate(images):
        out = extractor(image[None].astype(np.float32), loaded.info.classes,
                        k=int(options.get("top_k", 5)))
        acts = out.activations[0]
        channels = options.get("channels") or list(range(acts.shape[-1]))
        names = {"grid": _name("grid", i), "activations": _name("activations", i)}
        artifacts[names["grid"]] = (render.to_png(render.activation_grid(acts, channels)), PNG)
        artifacts[names["activations"]] = (npy_bytes(acts.astype(np.float32)), NPY)
        items.append({"shape": list(acts.shape), "channels": out.channel_stats(0, channels),
                      "predictions": [asdict(p) for p in out.predictions[0]],
                      "artifacts": names})
        progress((i + 1) / len(images))
    return {"items": items}, artifacts


def run_gradcam(loaded: LoadedModel, tool: ToolGetter, layer: str, options: dict,
                images: list[np.ndarray], progress: Callable[[float], None]) -> tuple:
    method = options.get("method", "gradcam")
    cam = tool(("cam", method, layer),
               lambda m: make_cam(method, m.model, layer, m.info.preprocess))
    targets = options.get("class_index")
    items, artifacts = [], {}
    for i, image in enumerate(images):
        target = targets[i] if isinstance(targets, list) else targets
        res = cam(image[None].astype(np.float32), class_index=target)
        heat = res.heatmaps[0]
        names = {k: _name(k, i) for k in ("heatmap", "heatmap_png", "overlay")}
        artifacts[names["heatmap"]] = (npy_bytes(heat.astype(np.float32)), NPY)
        artifacts[names["heatmap_png"]] = (render.to_png(render.heatmap_image(heat)), PNG)
        artifacts[names["overlay"]] = (render.to_png(render.overlay(image, heat)), PNG)
        preds = top_k(res.probs, int(options.get("top_k", 5)), loaded.info.classes)[0]
        items.append({"predictions": [asdict(p) for p in preds],
                      "class_index": int(res.class_index[0]), "score": float(res.score[0]),
                      "method": method, "artifacts": names})
        progress((i + 1) / len(images))
    return {"items": items, "layer": cam.layer}, artifacts


def run_filters(loaded: LoadedModel, tool: ToolGetter, layer: str, options: dict,
                progress: Callable[[float], None], should_cancel: Callable[[], bool]) -> tuple:
    viz = tool(("filters", layer), lambda m: FilterVisualizer(m.model, layer, m.info.preprocess))
    filters = options.get("filters") or list(range(min(16, viz.num_channels)))
    opts = AscentOptions(steps=int(options.get("steps", 64)), size=options.get("size"),
                         seed=int(options.get("seed", 0)))
    out = viz.run(filters, opts, progress=lambda done, total: progress(done / total),
                  should_cancel=should_cancel)
    artifacts: Artifacts = {"grid": (render.to_png(render.image_grid(
        out.images, [str(f) for f in out.filters])), PNG)}
    for f, image in zip(out.filters, out.images, strict=True):
        artifacts[f"filter_{f}"] = (render.to_png(image), PNG)
    result = {"filters": [{"index": f, "activation": float(a), "artifact": f"filter_{f}"}
                          for f, a in zip(out.filters, out.activation, strict=True)],
              "steps": out.steps}
    return result, artifacts


def run_explain(loaded: LoadedModel, layer: str, options: dict,
                images: list[np.ndarray]) -> tuple:
    items = []
    for image in images:
        items.append(explain_unit(loaded.model, layer, image.astype(np.float32),
                                  int(options.get("filter", 0)), int(options.get("y", 0)),
                                  int(options.get("x", 0)), loaded.info.preprocess))
    return {"items": items}, {}
