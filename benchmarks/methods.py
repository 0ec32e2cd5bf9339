"""Every heatmap method on two-object ``shapes`` images: where it points, how faithful it is,
how fast it runs, and how it agrees with tf-keras-vis, in one table.

``make bench-methods`` (or ``python benchmarks/methods.py [--images N] [--quick] [--json F]``;
needs the ``bench`` extra: tf-keras-vis 0.8.7). All in ONE process, with the trained
``shapes`` model (``data/models``, trained on first use) and ``--images`` (default 320)
seeded two-shape images (:func:`models.shapes_data.generate_pairs`). Each image is explained
as the class of one of its shapes, the first and the second in turn. Rows:

- every CAM method of ``worker.contract.CAM_METHODS`` (``models/cam``) on the model's last
  spatial layer and every saliency method of ``SALIENCY_METHODS`` (``models/saliency``) with
  the contract's default options (smoothgrad 25 samples, noise 0.15; integrated gradients 64
  steps from black, each image whose completeness gap is over 1 % again with doubled steps,
  up to 1024; occlusion 8x8 windows, stride 4, grey);
- the random and centre-Gaussian maps (:data:`models.quality_scan.REFERENCES`).

A saliency map ``(H, W, C)`` becomes one heatmap by :data:`REDUCTION`: a gradient is a
sensitivity, so its size counts (``max_c |g|``, Simonyan et al.); integrated gradients and
occlusion are signed shares of the score, summed over the colour channels.

Columns:

- pointing game and deletion / insertion AUC against the blurred image, 16 steps (the
  ``quality`` dataset job's defaults), computed by :func:`models.quality_scan.quality_sums`
  batch by batch and averaged by :func:`worker.cam_dataset_kinds.quality_rows`;
- time per image: each method is called once on the first batch untimed (tracing: "first s"),
  then timed on every batch of 32 when ``quality_sums`` asks for its maps; the median over the
  batches, divided by 32;
- tf-keras-vis (Saliency, SmoothGrad, Gradcam, GradcamPlusPlus, Layercam, Scorecam and
  Faster-ScoreCAM) on the first 96 images (3 batches; its Score-CAM and SmoothGrad are the
  slowest part of a run), timed in the same loop right after ours, with the same class, layer
  and scaling (:mod:`benchmarks.methods_references`); agreement is Pearson's r per image
  (median, and the lowest) against our heatmap.

Integrated gradients' completeness gap ``|sum IG - (f(x) - f(x'))| / |f(x) - f(x')|`` comes
from the method's own report, per image, at the default steps; the 16 images furthest from
complete are explained again at 256 steps (the most a job may ask for), to show where the gap
comes from.

``--quick``: 32 images (one batch), Faster-ScoreCAM's agreement on 8; ``--json F`` writes
the report (rows, targets, settings, environment) to ``F``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# isort: off
import models  # noqa: F401  (before TensorFlow: the kernels of models/__init__.py)
# isort: on
import keras
import numpy as np
import tensorflow as tf
import tf_keras_vis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.methods_references import (  # noqa: E402
    Explain,
    pearson_per_image,
    r_summary,
    smoothgrad_agreement,
    tkv_explainers,
    tkv_faster_scorecam_per_image,
)
from benchmarks.methods_report import TARGETS, print_report, target_checks  # noqa: E402
from models import array_sums  # noqa: E402
from models.cam import make_cam  # noqa: E402
from models.heads import last_spatial_layer  # noqa: E402
from models.quality_scan import Predictor, quality_sums  # noqa: E402
from models.saliency import make_saliency, reduce_channels  # noqa: E402
from models.shapes_data import generate_pairs  # noqa: E402
from worker.cam_dataset_kinds import quality_rows  # noqa: E402
from worker.contract import (  # noqa: E402
    CAM_METHODS,
    DATASET_OPTION_DEFAULTS,
    MAX_SALIENCY_SAMPLES,
    OPTION_DEFAULTS,
    SALIENCY_METHODS,
)
from worker.saliency_kind import method_options  # noqa: E402

BATCH = 32
IG_RECHECK = 16  # integrated gradients' least complete images, explained again at more steps
QUALITY = DATASET_OPTION_DEFAULTS["quality"]  # blur baseline, 16 steps
REDUCTION = {"gradients": "max_abs", "smoothgrad": "max_abs", "guided_backprop": "max_abs",
             "guided_gradcam": "max_abs", "integrated_gradients": "sum", "occlusion": "sum"}


@dataclass(frozen=True)
class Settings:
    images: int = 320
    seed: int = 0
    reference_images: int = 96  # the first images tf-keras-vis explains, by batches of 32
    faster_images: int = 32  # ... and its Faster-ScoreCAM one at a time, for agreement


QUICK = Settings(images=32, reference_images=32, faster_images=8)


@dataclass
class Heatmaps:
    heatmaps: np.ndarray  # (B, H, W), what quality_sums reads


@dataclass
class Timed:
    """A method as :func:`quality_sums` calls it, ``method(images, class_index=...)``; it
    times each call and keeps the heatmaps and the per-image extras."""

    explain: Explain
    first: float = 0.0
    calls: list[tuple[int, float]] = field(default_factory=list)  # (images, seconds)
    maps: list[np.ndarray] = field(default_factory=list)
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def warm(self, images: np.ndarray, targets: np.ndarray) -> None:
        start = time.perf_counter()
        self.explain(images, targets)
        self.first = time.perf_counter() - start

    def __call__(self, images: np.ndarray, class_index: Any) -> Heatmaps:
        start = time.perf_counter()
        heat, extras = self.explain(images, np.asarray(class_index, np.int64))
        self.calls.append((len(images), time.perf_counter() - start))
        self.maps.append(np.asarray(heat, np.float32))
        for key, value in extras.items():
            if np.ndim(value) == 1:
                self.extras.setdefault(key, []).append(np.asarray(value))
        return Heatmaps(self.maps[-1])

    def ms_per_image(self, batch: int) -> float:
        full = [seconds for count, seconds in self.calls if count == batch]
        return 1000.0 * statistics.median(full) / batch

    def all_maps(self) -> np.ndarray:
        return np.concatenate(self.maps)


def cam_explainer(method: str, model: keras.Model, layer: str) -> Explain:
    cam = make_cam(method, model, layer)
    return lambda images, targets: (cam(images, class_index=targets).heatmaps, {})


def saliency_explainer(method: str, model: keras.Model, layer: str) -> Explain:
    options = method_options({**OPTION_DEFAULTS["saliency"], "method": method}, layer)
    saliency = make_saliency(method, model, **options)

    def explain(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, dict]:
        res = saliency(images, class_index=targets)
        return reduce_channels(res.maps, REDUCTION[method]), res.extras

    return explain


@dataclass
class Task:
    images: np.ndarray  # float32 (N, 64, 64, 3), raw pixels
    targets: np.ndarray  # int64 (N,), the class explained
    boxes: list[list[tuple[int, list[int]]]]  # per image: both shapes' (class, [x0, y0, x1, y1])


def shapes_task(n: int, seed: int) -> Task:
    pairs = generate_pairs(n, seed)
    boxes = [[(int(c), [int(x0), int(y0), int(x1), int(y1)])
              for c, (y0, x0, y1, x1) in zip(labels, shape_boxes, strict=True)]
             for labels, shape_boxes in zip(pairs.labels, pairs.boxes, strict=True)]
    return Task(pairs.images.astype(np.float32), pairs.labels[np.arange(n), np.arange(n) % 2],
                boxes)


def measure(model: keras.Model, settings: Settings) -> dict[str, Any]:
    """Run everything; the report as plain JSON-able data."""
    layer = last_spatial_layer(model)
    task = shapes_task(settings.images, settings.seed)
    ours = {m: Timed(cam_explainer(m, model, layer)) for m in CAM_METHODS}
    ours.update({m: Timed(saliency_explainer(m, model, layer)) for m in SALIENCY_METHODS})
    theirs = {m: Timed(explain) for m, explain in tkv_explainers(model, layer).items()}
    batch = min(BATCH, settings.images)
    parts = [slice(i, min(i + batch, settings.images)) for i in range(0, settings.images, batch)]
    for timed in (*ours.values(), *theirs.values()):
        timed.warm(task.images[parts[0]], task.targets[parts[0]])
    predict, sums = Predictor(model), None
    for part in parts:
        images, targets = task.images[part], task.targets[part]
        # quality_sums calls each method as ``method(images, class_index=...).heatmaps`` only
        partial = quality_sums(ours, predict, images,  # type: ignore[arg-type]
                               range(part.start, part.stop), targets, task.boxes[part],
                               steps=QUALITY["steps"], baseline=QUALITY["baseline"],
                               seed=settings.seed)
        sums = partial if sums is None else array_sums.add(sums, partial)
        if part.stop <= max(batch, settings.reference_images):
            for timed in theirs.values():
                timed(images, targets)
        print(f"  images {part.stop}/{settings.images} done", file=sys.stderr, flush=True)
    assert sums is not None
    rows = quality_rows(sums, list(ours))
    for row in rows:
        row.update(method_timing(row["method"], ours, theirs, batch))
    special = special_agreements(model, layer, task, ours, theirs, settings)
    by_method = {row["method"]: row for row in rows}
    by_method["smoothgrad"]["agreement"] = special["smoothgrad"]["r_fed_noise"]
    by_method["faster_scorecam"]["agreement"] = special["faster_scorecam"]["agreement"]
    return {"settings": asdict(settings), "layer": layer, "batch": batch, "rows": rows,
            "tkv_images": len(theirs["gradcam"].all_maps()), **special,
            "ig_completeness": ig_completeness(model, layer, task, ours["integrated_gradients"]),
            "environment": environment()}


def special_agreements(model: keras.Model, layer: str, task: Task, ours: Mapping[str, Timed],
                       theirs: Mapping[str, Timed], settings: Settings) -> dict[str, Any]:
    """SmoothGrad's r with tf-keras-vis fed our noise (on the first batch), with its details,
    and Faster-ScoreCAM's with tf-keras-vis explaining one image per call."""
    first = len(ours["smoothgrad"].maps[0])
    smooth = smoothgrad_agreement(model, task.images[:first], task.targets[:first],
                                  ours["smoothgrad"].maps[0])
    mine, other = ours["smoothgrad"].all_maps(), theirs["smoothgrad"].all_maps()
    smooth["r_own_noise"] = r_summary(pearson_per_image(mine[:len(other)], other))
    count = settings.faster_images
    faster = tkv_faster_scorecam_per_image(model, layer, task.images[:count],
                                           task.targets[:count])
    return {"smoothgrad": smooth, "faster_scorecam": {
        "images": count, "agreement": r_summary(pearson_per_image(
            ours["faster_scorecam"].all_maps()[:count], faster))}}


def ig_completeness(model: keras.Model, layer: str, task: Task, timed: Timed) -> dict[str, Any]:
    """Integrated gradients' completeness gaps with the job defaults (64 steps, each image over
    1 % refined up to 1024) and the steps the images got; the :data:`IG_RECHECK` images still
    furthest from complete explained again at the most steps a job may ask for."""
    gaps = np.concatenate(timed.extras["completeness_gap"])
    gains = np.abs(np.concatenate(timed.extras["score_gain"]))
    out: dict[str, Any] = {"median": float(np.median(gaps)), "max": float(gaps.max()),
                           "images": len(gaps),
                           "within_1pct": float(np.mean(gaps <= TARGETS["ig_gap"])),
                           "median_abs_gain": float(np.median(gains))}
    if "steps" in timed.extras:
        steps = np.concatenate(timed.extras["steps"])
        out["steps"] = {"median": float(np.median(steps)), "max": int(steps.max()),
                        "refined": float(np.mean(steps > OPTION_DEFAULTS["saliency"]["steps"]))}
    over = np.argsort(-gaps)[:min(IG_RECHECK, int(np.sum(gaps > TARGETS["ig_gap"])))]
    if over.size:
        options = method_options({**OPTION_DEFAULTS["saliency"],
                                  "method": "integrated_gradients"}, layer)
        options["steps"] = options["max_steps"] = MAX_SALIENCY_SAMPLES
        ig = make_saliency("integrated_gradients", model, **options)
        again = ig(task.images[over], class_index=task.targets[over]).extras["completeness_gap"]
        worst = int(np.argmax(again))
        out["worst_again"] = {"images": int(over.size), "steps": MAX_SALIENCY_SAMPLES,
                              "median": float(np.median(again)), "max": float(again[worst]),
                              "within_1pct": float(np.mean(again <= TARGETS["ig_gap"])),
                              "max_abs_gain": float(gains[over[worst]])}
    return out


def method_timing(name: str, ours: Mapping[str, Timed], theirs: Mapping[str, Timed],
                  batch: int) -> dict[str, Any]:
    """Our time per image and first call; tf-keras-vis's time and agreement where it runs (on
    the images it explained)."""
    if name not in ours:
        return {}
    out: dict[str, Any] = {"ms_per_image": ours[name].ms_per_image(batch),
                           "first_s": ours[name].first}
    if name in theirs:
        reference = theirs[name].all_maps()
        out["tkv_ms_per_image"] = theirs[name].ms_per_image(batch)
        out["tkv_first_s"] = theirs[name].first
        out["agreement"] = r_summary(pearson_per_image(ours[name].all_maps()[:len(reference)],
                                                       reference))
    return out


def environment() -> dict[str, Any]:
    return {"cpu_cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "tf_keras_vis": tf_keras_vis.__version__}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description="Every CAM and saliency method on two-shape images, in one table: pointing "
                    "game, deletion / insertion AUC, time per image, agreement with tf-keras-vis.")
    parser.add_argument("--images", type=int, help="two-shape images (default 320; quick 32)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 32 images (Faster-ScoreCAM agreement on 8)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "data" / "models",
                        help="where the trained shapes model is cached")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.images is not None:
        if args.images < 1:
            parser.error(f"--images must be at least 1, got {args.images}")
        settings = Settings(**{**asdict(settings), "images": args.images,
                               "reference_images": min(settings.reference_images, args.images),
                               "faster_images": min(settings.faster_images, args.images)})
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    keras.utils.disable_interactive_logging()  # tf-keras-vis's Scorecam calls model.predict
    tf.get_logger().setLevel("ERROR")  # each saliency object traces its own graph: no warning
    from models.shapes_model import load_or_train_shapes

    keras.utils.set_random_seed(settings.seed)  # tf-keras-vis's SmoothGrad noise (NumPy)
    report = measure(load_or_train_shapes(args.model_dir), settings)
    report["targets"] = target_checks(report)
    print_report(report, args.quick)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
