"""The ``class_cam`` and ``quality`` dataset-job kinds (:class:`worker.dataset_kinds.
DatasetKind`): their partials are sums (:mod:`models.array_sums`), merged by addition.

Each image's class is its label when the label names one of the model's classes (by name,
or a class index written as a number), else the class the model predicts for it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from models import array_sums, render
from models.array_sums import Sums
from models.cam import BaseCAM, make_cam
from models.graph import class_count
from models.quality import scale_box
from models.quality_scan import REFERENCES, Predictor, class_cam_sums, quality_sums
from models.zoo import LoadedModel
from worker.dataset_crops import PNG
from worker.dataset_inputs import ChunkImages, input_shape
from worker.dataset_kinds import Artifacts, DatasetKind
from worker.npy import npy_bytes
from worker.quality_pictures import CSV, curves_png, quality_csv
from worker.runner import _cache

NPY = "application/x-npy"
POINTING_RULE = ("a hit when the heatmap's maximum (first in row-major order) lies inside a "
                 "box of the image's class, or inside any of its boxes when none is of that "
                 "class; images without boxes are not counted")


def _classes(job: dict) -> tuple[list[str], int]:
    """The model's class names (indices as text when it has none) and their count."""
    loaded = _cache().get(job["model"])
    count = class_count(loaded.model)
    names = list(loaded.info.classes or [])
    return (names if len(names) == count else [str(i) for i in range(count)]), count


def class_index(label: str | None, names: list[str]) -> int:
    """The class ``label`` names (by name, or its index as text); -1 for none or unknown."""
    if label is None:
        return -1
    if label in names:
        return names.index(label)
    return int(label) if label.isdigit() and int(label) < len(names) else -1


def _cam(job: dict, method: str) -> BaseCAM:
    def build(loaded: LoadedModel) -> BaseCAM:
        return make_cam(method, loaded.model, job["layer"], loaded.info.preprocess)

    return _cache().tool(job["model"], ("cam", method, job["layer"]), build)


def _labels(chunk: ChunkImages, names: list[str]) -> np.ndarray:
    return np.array([class_index(image.label, names) for image in chunk.images], np.int64)


def _counted(sums: Sums, chunk: ChunkImages) -> Sums:
    sums["seen"] = np.array(len(chunk.images), np.int64)
    sums["corrupt"] = np.array(chunk.corrupt, np.int64)
    return sums


def _class_cam_partial(job: dict, chunk: ChunkImages) -> Sums:
    """Per class the sum of the heatmaps and the count, the confusion counts."""
    names, count = _classes(job)
    cam = _cam(job, job["options"]["method"])
    return _counted(class_cam_sums(cam, chunk.pixels, _labels(chunk, names), count), chunk)


def _class_cam_finish(job: dict, sums: Sums, chunks: int) -> tuple[dict, Artifacts]:
    """``classes`` [{index, label, count}] (classes with images), ``confusion`` (true ×
    predicted) and ``accuracy`` over the labelled images (None without any), and per class
    ``mean_cam_<index>`` (NPY float32 H×W) and ``mean_cam_<index>_png``."""
    names, _ = _classes(job)
    counts, labelled = sums["count"], int(sums["labelled"])
    classes, artifacts = [], {}
    for index in np.flatnonzero(counts):
        mean = (sums["cam_sum"][index] / counts[index]).astype(np.float32)
        artifacts[f"mean_cam_{index}"] = (npy_bytes(mean), NPY)
        artifacts[f"mean_cam_{index}_png"] = (render.to_png(render.heatmap_image(mean)), PNG)
        classes.append({"index": int(index), "label": names[index], "count": int(counts[index])})
    confusion = sums["confusion"]
    result = {**_common(job, sums, chunks), "method": job["options"]["method"],
              "classes": classes, "labelled": labelled,
              "confusion": {"labels": names, "matrix": confusion.tolist()} if labelled else None,
              "accuracy": float(np.trace(confusion) / labelled) if labelled else None}
    return result, artifacts


def _common(job: dict, sums: Sums, chunks: int) -> dict[str, Any]:
    loaded = _cache().get(job["model"])
    return {"dataset": job["dataset"], "images": int(sums["seen"]),
            "corrupt": int(sums["corrupt"]), "chunks": chunks, "layer": job["layer"],
            "image_size": input_shape(job)[:2],
            "random_weights": bool(loaded.info.random_weights)}


def _boxes(chunk: ChunkImages, names: list[str], shape: list[int]) -> list[list]:
    """Per image ``[(class index, [x0, y0, x1, y1])]`` at the model's input size."""
    return [[(class_index(str(cls), names), scale_box(box, image.size, (shape[0], shape[1])))
             for cls, *box in image.boxes] for image in chunk.images]


def _quality_partial(job: dict, chunk: ChunkImages) -> Sums:
    options = job["options"]
    names, _ = _classes(job)
    predict = _cache().tool(job["model"], ("predictor",),
                            lambda m: Predictor(m.model, m.info.preprocess))
    cams = {method: _cam(job, method) for method in options["methods"]}
    sums = quality_sums(cams, predict, chunk.pixels, chunk.indices, _labels(chunk, names),
                        _boxes(chunk, names, input_shape(job)), steps=options["steps"],
                        baseline=options["baseline"], seed=options["seed"])
    return _counted(sums, chunk)


def quality_rows(sums: Sums, methods: list[str]) -> list[dict[str, Any]]:
    """One row per method, then per reference map: means over the images (None / [] when
    no image was read; ``pointing_game`` None when no image had boxes)."""
    rows = []
    for i, name in enumerate([*methods, *REFERENCES]):
        count, pointed = int(sums["count"][i]), int(sums["pointed"][i])
        row: dict[str, Any] = {"method": name, "images": count, "pointing_images": pointed,
                               "pointing_game": float(sums["hits"][i] / pointed)
                               if pointed else None}
        for key in ("deletion_auc", "insertion_auc"):
            row[key] = float(sums[key][i] / count) if count else None
        for key in ("deletion_curve", "insertion_curve"):
            row[key] = (sums[key][i] / count).tolist() if count else []
        rows.append(row)
    return rows


def _quality_finish(job: dict, sums: Sums, chunks: int) -> tuple[dict, Artifacts]:
    """``methods`` and ``baselines`` rows, the table as ``quality_csv`` and the mean curves
    as ``quality_curves``."""
    options = job["options"]
    rows = quality_rows(sums, options["methods"])
    result = {**_common(job, sums, chunks), "methods": rows[:len(options["methods"])],
              "baselines": rows[len(options["methods"]):], "baseline": options["baseline"],
              "steps": options["steps"], "seed": options["seed"],
              "pointing_rule": POINTING_RULE}
    artifacts = {"quality_csv": (quality_csv(rows), CSV),
                 "quality_curves": (curves_png(rows, options["baseline"]), PNG)}
    return result, artifacts


def _dumps(sums: Sums) -> str:
    return json.dumps(array_sums.to_json(sums))


def _loads(raw: bytes) -> Sums:
    return array_sums.from_json(json.loads(raw))


CLASS_CAM = DatasetKind(partial=_class_cam_partial, merge=array_sums.add, dumps=_dumps,
                        loads=_loads, finish=_class_cam_finish)
QUALITY = DatasetKind(partial=_quality_partial, merge=array_sums.add, dumps=_dumps,
                      loads=_loads, finish=_quality_finish)
