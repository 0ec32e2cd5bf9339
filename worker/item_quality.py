"""The ``quality`` option of ``gradcam`` and ``saliency`` jobs: each item's map scored by its
deletion and insertion curves beside a seeded random map's (:mod:`models.image_quality`),
with the curves drawn as the ``quality_curves`` PNG (:func:`worker.quality_pictures.
curves_png`, as the dataset ``quality`` job draws its mean curves).

Options arrive complete: ``quality`` is False or ``{"baseline", "steps", "seed"}``. Each image
is scored on its own (its map, its class, the random map of the seed), so a job batched with
others gets what it would alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.image_quality import image_curves
from models.quality_scan import Predictor
from worker import kind_base
from worker.quality_pictures import curves_png

ARTIFACT = "quality_curves"
MEASURES = {False: "probability of the class", True: "1 - probability of the class"}


def add_quality(ctx: kind_base.JobContext, label: str, maps: list[np.ndarray],
                targets: list[int], items: list[dict[str, Any]],
                artifacts: kind_base.Artifacts, ranked_by: str) -> None:
    """When the job asks for it, each of ``items`` gets ``quality`` and the artifact
    ``quality_curves`` of its map ``maps[i]`` (H×W at the model's input size, the pixels
    ranked by it, highest first) for class ``targets[i]``; ``label`` names the map's curves
    in the picture."""
    options = ctx.options.get("quality")
    if not options:
        return
    predict = ctx.tool(("predictor",), lambda m: Predictor(m.model, m.info.preprocess))
    negative = ctx.options.get("target") == "negative"
    for group in kind_base.same_size_groups(ctx.images):
        curves = image_curves(predict, np.stack([ctx.images[i] for i in group]),
                              np.stack([maps[i] for i in group]),
                              [targets[i] for i in group], baseline=options["baseline"],
                              steps=options["steps"], seed=options["seed"], negative=negative)
        for j, i in enumerate(group):
            summary = curves.summary(j)
            items[i]["quality"] = {**summary, **options, "ranked_by": ranked_by,
                                   "probability": "1 - p(class)" if negative else "p(class)"}
            name = kind_base.artifact_name(ARTIFACT, i)
            picture = curves_png(_rows(label, summary), options["baseline"], ("random",),
                                 MEASURES[negative])
            artifacts[name] = (picture, kind_base.PNG)
            items[i]["artifacts"][ARTIFACT] = name


def _rows(label: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The map's and the random map's curves as :func:`curves_png` rows."""
    return [{"method": name, **{f"{mode}_{part}": summary[f"{prefix}{mode}_{part}"]
                                for mode in ("deletion", "insertion")
                                for part in ("curve", "auc")}}
            for name, prefix in ((label, ""), ("random", "random_"))]
