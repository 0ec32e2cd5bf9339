"""Benchmark the convscope engine against tf-keras-vis and a keras-io-style reference.

Run ``python benchmarks/engine.py [--quick]`` (needs the ``bench`` extra: tf-keras-vis).
Everything is measured in ONE process on the same models, images and class targets:

1. Grad-CAM throughput. ResNet50 (``keras.applications``, random weights, 224x224, batch 16,
   layer ``conv5_block3_out``, caffe preprocessing) and the course CIFAR CNN (32x32, batch 64,
   layer ``conv4``). Implementations:

   - ``convscope``: ``make_cam("gradcam", ...)``; takes raw pixels and preprocesses inside,
     returns heatmaps upsampled to the input size.
   - ``tf-keras-vis``: ``Gradcam(model, ReplaceToLinear(), clone=True)`` with
     ``CategoricalScore``, on the pre-processed batch (preprocessing done outside the timer).
   - ``keras-io ref``: our own short function following the documented approach of the
     keras-io example "Grad-CAM class activation visualization" (one ``grad_model`` with the
     layer's and the model's outputs, an eager ``GradientTape`` per image, mean-pooled
     gradients, weighted sum, ReLU, divide by the max). It returns layer-resolution maps.

   Each implementation is called once untimed (tracing, graph building: shown as "first s"),
   then the timed repeats run round-robin so that load from other processes hits all
   of them alike. Agreement: each reference's layer-resolution map is upsampled and scaled
   exactly as convscope does (bilinear, min-max), then compared with convscope's heatmap
   (Pearson r and max |difference|, over images whose maps are not constant).

2. Filter patterns. ResNet50 ``conv5_block3_out``, 8 filters, 20 steps, batched:
   ``FilterVisualizer.run`` against ``ActivationMaximization`` (its default modifiers,
   regularizers and optimizer) on the same raw-pixel model (caffe preprocessing inside), at
   equal steps. What each reached is measured alike: the mean of the filter's channel of the
   layer's output for the final uint8 image each produced, through the same forward pass.

A "bare graph" row in each case is a yardstick, not a competitor: the model's own compiled
forward pass (Grad-CAM), or compiled forward + backward steps on a plain pixel variable
(filters), run as Keras runs the model. Below 1x means convscope does all its work in less
time than that pass: it folds batch norm into the convolutions and runs micro-batches.
``--quick``: 2 Grad-CAM repeats, filter patterns with 2 filters x 20 steps, one timed run.
``--only gradcam|filters``: run one of the two parts.

Ratios are reference time / convscope time (> 1: convscope is faster). Wall-clock medians are
the headline; CPU seconds (user + system of this process) are printed beside them because a
shared machine makes wall time noisy.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# isort: off
import models  # noqa: F401  (before TensorFlow: the kernels of models/__init__.py)
# isort: on
import keras
import numpy as np
import tensorflow as tf
import tf_keras_vis
from tf_keras_vis.activation_maximization import ActivationMaximization
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from models.cam import make_cam
from models.cam.base import normalize_maps
from models.cifar_cnn import build_cifar_cnn
from models.filters import AscentOptions, FilterVisualizer
from models.graph import Probe
from models.preprocess import preprocess_images

OURS, TKV, KERAS_IO, BARE = "convscope", "tf-keras-vis", "keras-io ref", "bare graph"
TARGETS = {("gradcam", "resnet50"): 5.0, ("gradcam", "cifar10"): 3.0, ("filters", "resnet50"): 2.0}


@dataclass
class Settings:
    repeats: int  # timed Grad-CAM calls per implementation
    filter_repeats: int  # timed filter-pattern runs per implementation
    filters: int
    steps: int


FULL = Settings(repeats=5, filter_repeats=2, filters=8, steps=20)
QUICK = Settings(repeats=2, filter_repeats=1, filters=2, steps=20)  # equal steps, fewer filters


@dataclass
class Timing:
    """Seconds per call: the first (warm-up) call, not used in ratios, then the timed ones."""

    first: float = 0.0
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_interleaved(calls: Mapping[str, Callable[[], Any]], repeats: int,
                    warm_up: Mapping[str, Callable[[], Any]] | None = None,
                    ) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Warm each call up once, then time ``repeats`` rounds of all of them, round-robin."""
    timings = {name: Timing() for name in calls}
    results: dict[str, Any] = {}
    for name, call in (warm_up or calls).items():
        _, timings[name].first, _ = _timed(call)
    for _ in range(repeats):
        for name, call in calls.items():
            results[name], wall, cpu = _timed(call)
            timings[name].wall.append(wall)
            timings[name].cpu.append(cpu)
    return timings, results


# --- Grad-CAM implementations: (images, classes) -> heatmaps -----------------------------------

def convscope_gradcam(model: keras.Model, layer: str, preprocess: str) -> Callable:
    cam = make_cam("gradcam", model, layer, preprocess)
    return lambda raw, pre, classes: cam(raw, class_index=classes).heatmaps


def tf_keras_vis_gradcam(model: keras.Model, layer: str, expand: bool = True) -> Callable:
    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    return lambda raw, pre, classes: gradcam(
        CategoricalScore(list(classes)), pre, penultimate_layer=layer,
        seek_penultimate_conv_layer=False, expand_cam=expand)


def keras_io_gradcam(model: keras.Model, layer: str) -> Callable:
    """keras-io reference (our rewrite of the example's approach): one image at a time, eager.

    Returns ``(B, h, w)`` maps at the layer's resolution, each divided by its max.
    """
    head = keras.models.clone_model(model)
    head.set_weights(model.get_weights())
    head.layers[-1].activation = keras.activations.linear  # explain the logit, not the softmax
    grad_model = keras.Model(head.inputs, [head.get_layer(layer).output, head.output])

    def one(image: np.ndarray, class_index: int) -> np.ndarray:
        with tf.GradientTape() as tape:
            acts, preds = grad_model(image[None])
            score = preds[:, class_index]
        grads = tape.gradient(score, acts)
        pooled = tf.reduce_mean(grads, axis=(0, 1, 2))  # one weight per channel
        heat = tf.nn.relu(tf.tensordot(acts[0], pooled, axes=1))
        return tf.math.divide_no_nan(heat, tf.reduce_max(heat)).numpy()

    def gradcam(raw: np.ndarray, pre: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return np.stack([one(x, c) for x, c in zip(pre, classes, strict=True)])

    return gradcam


def bare_forward(model: keras.Model) -> Callable:
    """Yardstick: the model's own compiled forward pass on the batch, nothing else."""

    @tf.function
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return lambda raw, pre, classes: forward(tf.constant(pre)).numpy()


def agreement(ours: np.ndarray, layer_maps: np.ndarray) -> tuple[float, float, int]:
    """Mean Pearson r, max |difference| and images compared after convscope's upsampling."""
    size = ours.shape[1:3]
    ref = normalize_maps(tf.image.resize(layer_maps[..., None], size, method="bilinear")[..., 0])
    ref = ref.numpy().reshape(len(ours), -1)
    flat = ours.reshape(len(ours), -1)
    keep = (flat.std(axis=1) > 0) & (ref.std(axis=1) > 0)
    rs = [np.corrcoef(a, b)[0, 1] for a, b in zip(flat[keep], ref[keep], strict=True)]
    diff = float(np.abs(flat[keep] - ref[keep]).max()) if keep.any() else float("nan")
    return float(np.mean(rs)) if rs else float("nan"), diff, int(keep.sum())


@dataclass
class Row:
    """One line of the report."""

    case: str
    impl: str
    model: str
    timing: Timing
    images_per_s: float | None = None
    agreement: tuple[float, float, int] | None = None  # r, max |difference|, maps compared
    reached: np.ndarray | None = None  # mean activation per filter


@dataclass
class CamCase:
    name: str
    model: keras.Model
    layer: str
    preprocess: str
    batch: int


def gradcam_case(case: CamCase, repeats: int) -> list[Row]:
    """Time the implementations and the yardstick on one model; rows for the report."""
    shape = (case.batch, *case.model.inputs[0].shape[1:])
    raw = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    pre = preprocess_images(raw, case.preprocess).numpy()
    classes = np.arange(case.batch) * 37 % case.model.outputs[0].shape[-1]
    impls = {OURS: convscope_gradcam(case.model, case.layer, case.preprocess),
             TKV: tf_keras_vis_gradcam(case.model, case.layer),
             KERAS_IO: keras_io_gradcam(case.model, case.layer),
             BARE: bare_forward(case.model)}
    calls = {name: functools.partial(f, raw, pre, classes) for name, f in impls.items()}
    timings, results = run_interleaved(calls, repeats)
    layer_maps = {TKV: tf_keras_vis_gradcam(case.model, case.layer, expand=False)(
        raw, pre, classes), KERAS_IO: results[KERAS_IO]}
    label = f"Grad-CAM {case.name} (batch {case.batch})"
    return [Row(label, name, case.name, timing, case.batch / timing.median_wall,
                agreement(results[OURS], np.asarray(layer_maps[name]))
                if name in layer_maps else None)
            for name, timing in timings.items()]


# --- Filter patterns ---------------------------------------------------------------------------

def raw_pixel_layer_model(model: keras.Model, layer: str, preprocess: str) -> keras.Model:
    """Functional model: raw pixels 0..255 -> preprocessing -> ``layer``'s output."""
    features = keras.Model(model.inputs, model.get_layer(layer).output)
    inputs = keras.Input(model.inputs[0].shape[1:])
    prep = keras.layers.Lambda(lambda x: preprocess_images(x, preprocess), name="preprocess")
    return keras.Model(inputs, features(prep(inputs)))


def bare_ascent(model: keras.Model, filters: list[int], seed: np.ndarray) -> Callable:
    """Yardstick: compiled forward + backward + plain update on a pixel variable, only."""
    pixels = tf.Variable(seed)
    index = tf.constant(filters)

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            means = tf.reduce_mean(model(pixels, training=False), axis=(1, 2))
            score = tf.reduce_sum(tf.gather(means, index, axis=1, batch_dims=1))
        pixels.assign_add(tape.gradient(score, pixels))

    def run(steps: int) -> None:
        pixels.assign(seed)
        for _ in range(steps):
            step()

    return run


def reached_activation(probe: Probe, images: np.ndarray, filters: list[int]) -> np.ndarray:
    """Mean of channel ``filters[i]`` of the layer's output for uint8 image ``i``."""
    acts = probe(tf.constant(images, tf.float32)).activation
    means = tf.reduce_mean(acts, axis=(1, 2))
    return tf.gather(means, filters, axis=1, batch_dims=1).numpy()


def filters_case(model: keras.Model, layer: str, preprocess: str,
                 settings: Settings) -> list[Row]:
    n = settings.filters
    channels = model.get_layer(layer).output.shape[-1]
    filters = [int(f) for f in np.linspace(0, channels, n, endpoint=False)]
    ours = FilterVisualizer(model, layer, preprocess)
    layer_model = raw_pixel_layer_model(model, layer, preprocess)
    maximizer = ActivationMaximization(layer_model)
    seed = np.random.default_rng(0).uniform(0, 255, (n, *model.inputs[0].shape[1:]))
    seed = seed.astype(np.float32)
    bare = bare_ascent(layer_model, filters, seed)

    def theirs(steps: int) -> np.ndarray:
        out = maximizer(CategoricalScore(filters), seed_input=seed, steps=steps)
        return np.clip(np.round(np.asarray(out)), 0, 255).astype(np.uint8)

    def mine(steps: int) -> np.ndarray:
        return ours.run(filters, AscentOptions(steps=steps)).images

    impls = {OURS: mine, TKV: theirs, BARE: bare}
    calls = {name: functools.partial(f, settings.steps) for name, f in impls.items()}
    warm = {name: functools.partial(f, 2) for name, f in impls.items()}
    timings, results = run_interleaved(calls, settings.filter_repeats, warm_up=warm)
    probe = Probe(model, layer, preprocess)
    label = f"Filters resnet50 ({n} x {settings.steps} steps)"
    return [Row(label, name, "resnet50", timing, reached=None if name == BARE
                else reached_activation(probe, results[name], filters))
            for name, timing in timings.items()]


# --- Report ------------------------------------------------------------------------------------

def print_header(settings: Settings, quick: bool) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"convscope engine benchmark ({'quick' if quick else 'full'} run)")
    print(f"CPU cores: {os.cpu_count()} ({platform.processor() or platform.machine()}), "
          f"load average: {load}")
    print(f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras "
          f"{keras.__version__}, tf-keras-vis {tf_keras_vis.__version__}")
    print(f"Grad-CAM: {settings.repeats} timed repeats; filter patterns: "
          f"{settings.filter_repeats} timed run(s) of {settings.filters} filters x "
          f"{settings.steps} steps\n")


def _ratio_text(rows: list[Row], row: Row) -> str:
    if row.impl == OURS:
        return "-"
    ours = next(r for r in rows if r.case == row.case and r.impl == OURS)
    wall = row.timing.median_wall / ours.timing.median_wall
    cpu = row.timing.median_cpu / ours.timing.median_cpu
    return f"{wall:5.2f}x (cpu {cpu:5.2f}x)"


def _check_text(row: Row) -> str:
    if row.agreement is not None:
        r, diff, count = row.agreement
        return f"r={r:.4f} max|d|={diff:.1e} ({count} maps)"
    if row.reached is not None:
        return f"mean act {row.reached.mean():.3f}"
    return ""


def print_table(rows: list[Row]) -> None:
    head = (f"{'case':<38} {'implementation':<13} {'first s':>8} {'median s':>9} {'cpu s':>7}"
            f" {'img/s':>7}  {'ratio ref/ours':<21} check")
    print(head)
    print("-" * len(head))
    for row in rows:
        t = row.timing
        ips = f"{row.images_per_s:7.1f}" if row.images_per_s is not None else " " * 7
        print(f"{row.case:<38} {row.impl:<13} {t.first:8.2f} {t.median_wall:9.2f}"
              f" {t.median_cpu:7.2f} {ips}  {_ratio_text(rows, row):<21} {_check_text(row)}")


LEGEND = f"""
first s: the untimed first call (tracing, graph building; for filters a 2-step run).
median s / cpu s: the timed repeats, wall clock / this process's CPU time.
ratio: the implementation's median / convscope's (> 1: convscope is faster).
check: Grad-CAM maps against convscope's (r, max|d|); filters: mean activation reached.
{BARE}: a yardstick, not a competitor: the model's own compiled forward pass (Grad-CAM), or
compiled forward + backward steps on a plain pixel variable (filters), as Keras runs the model
(convscope folds batch norm into the convolutions and runs micro-batches, so it can be faster)."""


def print_targets(rows: list[Row], quick: bool, only: str | None = None) -> None:
    note = "; quick run, reduced settings: indicative only" if quick else ""
    print(f"\nTargets (convscope vs tf-keras-vis, wall-clock medians{note}):")
    for (kind, model), target in TARGETS.items():
        if only not in (None, kind):
            continue
        prefix = "Grad-CAM" if kind == "gradcam" else "Filters"
        case = {r.impl: r for r in rows if r.case.startswith(prefix) and r.model == model}
        ours, theirs = case[OURS], case[TKV]
        ratio = theirs.timing.median_wall / ours.timing.median_wall
        ok, extra = ratio >= target, ""
        if ours.reached is not None and theirs.reached is not None:
            mine, other = ours.reached.mean(), theirs.reached.mean()
            ok = ok and mine >= other
            sign = ">=" if mine >= other else "<"
            extra = f", mean activation {mine:.3f} vs {other:.3f} ({sign})"
        verdict = "MET" if ok else "MISSED"
        print(f"  {prefix} {model}: {ratio:.2f}x (target >= {target:.0f}x){extra}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and filters")
    parser.add_argument("--only", choices=["gradcam", "filters"],
                        help="run one of the two cases (its targets only)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    print_header(settings, args.quick)
    keras.utils.set_random_seed(0)
    resnet = keras.applications.ResNet50(weights=None)
    cases = [CamCase("resnet50", resnet, "conv5_block3_out", "caffe", 16),
             CamCase("cifar10", build_cifar_cnn(), "conv4", "raw", 64)]
    rows: list[Row] = []
    if args.only != "filters":
        for case in cases:
            rows += gradcam_case(case, settings.repeats)
    if args.only != "gradcam":
        rows += filters_case(resnet, "conv5_block3_out", "caffe", settings)
    print_table(rows)
    print(LEGEND)
    print_targets(rows, args.quick, args.only)
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
