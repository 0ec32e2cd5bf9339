"""The filter ascent's affine warp: a hand-written raw op against keras.ops.image.affine_transform.

Run ``python benchmarks/affine_transform.py [--quick]`` (no extra packages). Both warps
resample a batch through the same ``(n, 8)`` projective matrices (bilinear, reflected border);
everything runs in ONE process, the implementations interleaved round-robin so machine load
hits both alike:

1. The warp alone, compiled, forward and backward (the ascent differentiates through it):
   batches 8x224x224x3 and 16x64x64x3.
2. The whole compiled ascent step (``FilterVisualizer.run``, with :mod:`models.filters`'s
   ``warp`` swapped at trace time): MobileNetV2 (seeded random weights), 8 filters at 224,
   and the shapes CNN (untrained), 16 filters at 64, both on their last 4-D layer.

Printed: median wall seconds per call, the ratio keras / hand-written (> 1: Keras slower),
and the largest difference between the two outputs (the same op underneath: expect 0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

# isort: off
import models  # noqa: F401  (before TensorFlow: the kernels of models/__init__.py)
# isort: on
import keras
import numpy as np
import tensorflow as tf

from models.filters import AscentOptions, FilterVisualizer, transforms
from models.heads import last_spatial_layer
from models.keras_internals import seeded_weights
from models.shapes_model import build_shapes_model

Warp = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
HAND, KERAS = "hand-written", "keras.ops"


def hand_written_warp(images: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """The hand-written warp: TensorFlow's projective-transform kernel called directly."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrix, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT",
    )


def keras_warp(images: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Keras's public affine transform with the same settings."""
    return keras.ops.image.affine_transform(images, matrix, interpolation="bilinear",
                                            fill_mode="reflect")


WARPS: dict[str, Warp] = {HAND: hand_written_warp, KERAS: keras_warp}


def interleaved(calls: Mapping[str, Callable[[], Any]],
                repeats: int) -> dict[str, tuple[float, float]]:
    """One untimed call each, then ``repeats`` rounds, the order reversed every other round.

    Returns ``{name: (median wall s, median CPU s)}`` per call; CPU seconds (user + system of
    this process) move less than wall time when other processes load the machine.
    """
    for call in calls.values():
        call()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    order = list(calls)
    for round_no in range(repeats):
        for name in order if round_no % 2 == 0 else order[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            calls[name]()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
            for name, ts in times.items()}


def report(case: str, medians: dict[str, tuple[float, float]], diff: float,
           per: int = 1) -> tuple[float, float]:
    """Print one row (times divided by ``per``); returns the (wall, CPU) ratios."""
    (hand_wall, hand_cpu), (keras_wall, keras_cpu) = medians[HAND], medians[KERAS]
    ratios = keras_wall / hand_wall, keras_cpu / hand_cpu
    print(f"{case:<46} {hand_wall / per:9.4f} {keras_wall / per:9.4f} {ratios[0]:6.3f}   "
          f"{hand_cpu / per:9.4f} {keras_cpu / per:9.4f} {ratios[1]:6.3f} {diff:8.1e}")
    return ratios


def warp_alone(shape: tuple[int, int, int, int], repeats: int) -> tuple[float, float]:
    """Compiled forward + backward of each warp on one batch; returns the ratio."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 1, shape).astype(np.float32))
    scale = tf.constant(rng.uniform(0.92, 1.08, shape[0]).astype(np.float32))
    angle = tf.constant(rng.uniform(-0.14, 0.14, shape[0]).astype(np.float32))
    matrix = tf.concat([transforms.affine_matrix(images[i:i + 1], scale[i], angle[i])
                        for i in range(shape[0])], axis=0)  # a different warp per image

    def compiled(warp: Warp) -> Callable[[], tuple[tf.Tensor, tf.Tensor]]:
        @tf.function
        def step() -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(images)
                out = warp(images, matrix)
                loss = tf.reduce_sum(out * out)
            return out, tape.gradient(loss, images)

        return step

    steps = {name: compiled(warp) for name, warp in WARPS.items()}
    medians = interleaved({name: lambda s=s: s()[1].numpy() for name, s in steps.items()},
                          repeats)
    (out_a, grad_a), (out_b, grad_b) = steps[HAND](), steps[KERAS]()
    diff = max(float(tf.reduce_max(tf.abs(out_a - out_b))),
               float(tf.reduce_max(tf.abs(grad_a - grad_b))))
    return report(f"warp fwd+bwd {'x'.join(map(str, shape))}", medians, diff)


@contextmanager
def warp_in_use(warp: Warp) -> Iterator[None]:
    """The ascent's transforms use ``warp`` while inside (the step is traced on first use)."""
    saved = transforms.warp
    transforms.warp = warp
    try:
        yield
    finally:
        transforms.warp = saved


def ascent(name: str, model: keras.Model, preprocess: str, n: int, size: int, steps: int,
           repeats: int) -> tuple[float, float]:
    """Whole ascent runs, one FilterVisualizer (one traced step) per warp; returns the ratio."""
    layer = last_spatial_layer(model)
    channels = model.get_layer(layer).output.shape[-1]
    filters = [int(f) for f in np.linspace(0, channels, n, endpoint=False)]
    options = AscentOptions(steps=steps, size=size, seed=0)
    visualizers = {impl: FilterVisualizer(model, layer, preprocess) for impl in WARPS}

    def run(impl: str) -> np.ndarray:
        with warp_in_use(WARPS[impl]):
            return visualizers[impl].run(filters, options).images

    medians = interleaved({impl: lambda i=impl: run(i) for impl in WARPS}, repeats)
    diff = float(np.abs(run(HAND).astype(int) - run(KERAS).astype(int)).max())
    return report(f"ascent step {name} {n}x{size}x{size} ({layer})", medians, diff, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    args = parser.parse_args()
    repeats, steps = (3, 4) if args.quick else (25, 10)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores, "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'':<46} {'wall clock, median s':^26}   {'CPU, median s':^26}")
    print(f"{'case':<46} {'hand':>9} {'keras':>9} {'ratio':>6}   {'hand':>9} {'keras':>9} "
          f"{'ratio':>6} {'max |d|':>8}")
    ratios = [warp_alone((8, 224, 224, 3), repeats), warp_alone((16, 64, 64, 3), 4 * repeats)]
    with seeded_weights(0):
        mobilenet = keras.applications.MobileNetV2(weights=None)
        shapes = build_shapes_model()
    ratios.append(ascent("mobilenetv2", mobilenet, "tf", 8, 224, steps, max(2, repeats // 3)))
    ratios.append(ascent("shapes", shapes, "raw", 16, 64, steps, max(2, repeats // 2)))
    print("hand: the hand-written warp; keras: keras.ops.image.affine_transform; ratio: keras / "
          "hand (> 1: Keras slower); ascent rows: seconds per step; max |d|: largest output "
          "difference")
    worst = max(cpu for _, cpu in ratios)
    verdict = "no slower" if worst <= 1.03 else "slower"
    print(f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}; worst CPU "
          f"ratio {worst:.3f}: keras.ops.image.affine_transform is {verdict} (3% noise allowed)")


if __name__ == "__main__":
    main()
