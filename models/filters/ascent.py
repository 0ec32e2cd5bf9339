"""Filter patterns by gradient ascent on the input.

All requested channels of one layer are optimised together as one batch: image ``i`` is
made for channel (or unit) ``filters[i]`` under an objective (:mod:`models.filters.objectives`:
by default the channel's mean activation). Images are Fourier-parametrised
(:mod:`models.filters.parametrization`) and pass random jitter / scale / rotation
(:mod:`models.filters.transforms`) before the model, so the patterns are robust rather than
adversarial noise. One compiled step does forward, backward and an Adam update; it is traced
once per batch shape and reused by later runs (no XLA: it is slower here on CPU and cannot
compile the affine transform).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from models.errors import InvalidInputError
from models.filters.objectives import Objective, make_objective
from models.filters.parametrization import INIT_STD, FourierImage
from models.filters.redirected_relu import redirected_relu
from models.filters.transforms import standard_transforms
from models.graph import Probe, ProbeOutput, get_layer, output_shape
from models.heads import too_small

MAX_STEPS = 10_000  # the service's step budget (CONVSCOPE_MAX_FILTER_STEPS) stays below this
MIN_SIZE, MAX_SIZE = 8, 512  # side of a pattern image, pixels
# Bump when a change here, in the parametrisation or in the transforms changes the pixels a
# (model, layer, filter, options) gives: cached patterns (worker/filter_cache.py) carry it.
# 2: each filter's initial spectrum is drawn from (seed, filter index) alone.
# 3: objectives; each cached filter carries ``dead``.
ASCENT_VERSION = 3
DEAD_EPSILON = 1e-6  # |reached| at or below this, at the start and the end: a dead channel


class AscentCanceled(Exception):
    """Raised inside the loop when the cancel check says stop."""


@dataclass
class FilterPatterns:
    """``images`` uint8 ``(n, H, W, C)``; ``activation`` float32 ``(n,)`` the objective's
    reported value per image at the end (``start``: at the start); ``dead`` bool ``(n,)``:
    it stayed at 0 from start to end (a channel that never fires); ``filters[i]``: image
    ``i``'s channel or unit (one channel ``n`` times for the diversity objective)."""

    images: np.ndarray
    activation: np.ndarray
    filters: list[int]
    steps: int
    start: np.ndarray
    dead: np.ndarray


@dataclass(frozen=True)
class AscentOptions:
    steps: int = 128  # the README picture (docs/filters-grid.png); 64 comes out grey
    size: int | None = None  # image side; default: the model's input size (or 128 if free)
    seed: int = 0
    learning_rate: float = 0.05
    check_every: int = 4  # steps between progress reports and cancel checks

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInputError(f"steps must be in 1..{MAX_STEPS}, got {self.steps}")
        if self.size is not None and not MIN_SIZE <= self.size <= MAX_SIZE:
            raise InvalidInputError(f"size must be in {MIN_SIZE}..{MAX_SIZE}, got {self.size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


class _Adam:
    """Adam (Kingma and Ba, 2015) on one variable, in TensorFlow ops; :meth:`reset` restarts it."""

    def __init__(self, var: tf.Variable, b1: float = 0.9, b2: float = 0.999) -> None:
        self.var, self.b1, self.b2 = var, b1, b2
        self.lr = tf.Variable(0.0, trainable=False)
        self.m = tf.Variable(tf.zeros_like(var), trainable=False)
        self.v = tf.Variable(tf.zeros_like(var), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)

    def reset(self, lr: float) -> None:
        self.lr.assign(lr)
        self.m.assign(tf.zeros_like(self.m))
        self.v.assign(tf.zeros_like(self.v))
        self.t.assign(0.0)

    def apply(self, grad: tf.Tensor) -> None:
        self.t.assign_add(1.0)
        self.m.assign(self.b1 * self.m + (1 - self.b1) * grad)
        self.v.assign(self.b2 * self.v + (1 - self.b2) * tf.square(grad))
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        self.var.assign_sub(self.lr * m_hat / (tf.sqrt(v_hat) + 1e-8))


def _model_hw(model: keras.Model) -> tuple[int | None, int | None, int]:
    shape = model.inputs[0].shape
    return shape[1], shape[2], shape[3]


# Pixels per micro-batch of the step. The images of a batch do not interact, so the step runs
# the model on chunks of about two 224x224 images: measured on 2 CPU cores (ResNet50,
# 8 x 224x224), 20-25% faster than one pass over the whole batch, which spills the caches.
CHUNK_PIXELS = 2 * 224 * 224
MAX_MICRO_BATCHES = 4  # copies of the model in the traced step, so tracing stays cheap


class _AscentProgram:
    """Images, optimiser state and compiled step for one batch shape (``n`` images
    ``size²``) and one objective.

    The step is traced once per program, not once per run; :meth:`reset` starts a new run on
    the same variables. One run at a time (``lock``). The model runs on micro-batches of
    ``chunk`` images (the same gradient: each image's score depends on that image alone).
    """

    def __init__(self, forward: Callable[[tf.Tensor], ProbeOutput], n: int, size: int,
                 channels: int, objective: Objective) -> None:
        self.forward, self.n, self.size, self.channels = forward, n, size, channels
        self.objective = objective
        self.chunk = max(1, CHUNK_PIXELS // (size * size), -(-n // MAX_MICRO_BATCHES))
        self.image = FourierImage(n, size, size, channels)
        self.adam = _Adam(self.image.variable)
        self.transforms = standard_transforms(size)
        self.lock = threading.Lock()
        self.step = tf.function(self._step)
        self.reached = tf.function(self._reached)

    def reset(self, options: AscentOptions, keys: Sequence[tuple[int, ...]]) -> None:
        """Start a run: image ``i`` starts from a spectrum drawn from ``(seed, *keys[i])``
        alone (the objective's plan: the filter), so a filter's pattern does not depend on
        the other filters of the batch."""
        shape = self.image.variable.shape[1:]
        start = [np.random.default_rng([options.seed, *key]).normal(0.0, INIT_STD, shape)
                 for key in keys]
        self.image.variable.assign(np.stack(start).astype(np.float32))
        self.adam.reset(options.learning_rate)

    def _step(self, index: tf.Tensor, seed: tf.Tensor, step_no: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            pixels = self.image()
            for k, transform in enumerate(self.transforms):
                pixels = transform(pixels, tf.stack([seed, step_no * 16 + k]))
            total: tf.Tensor | float = 0.0
            layer_outputs = []
            for start in range(0, self.n, self.chunk):  # micro-batches
                out = self.forward(pixels[start:start + self.chunk])
                total += tf.reduce_sum(self.objective.score(out, index[start:start +
                                                                        self.chunk]))
                layer_outputs.append(out.activation)
            loss = -(total + self.objective.batch_score(layer_outputs))
        self.adam.apply(tape.gradient(loss, self.image.variable))

    def _reached(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The pixels ``(n, size, size, C)`` 0..1 and the objective's value for each."""
        pixels = self.image()
        out = self.forward(pixels)
        return pixels, self.objective.reached(out, index)


class FilterVisualizer:
    """Gradient ascent for channels of ``layer`` in ``model`` (raw-pixel images 0..255)."""

    max_programs = 4  # compiled batch shapes kept, least recently used dropped first

    def __init__(self, model: keras.Model, layer: str, preprocess: str = "raw") -> None:
        self.model, self.layer, self.preprocess = model, layer, preprocess
        self.probe = Probe(model, layer, preprocess)
        self.height, self.width, self.channels = _model_hw(model)
        self.layer_shape = output_shape(get_layer(model, layer)) or []
        self.num_channels = self.layer_shape[-1] if self.layer_shape else 0
        self._programs: OrderedDict[tuple[int, int, Objective], _AscentProgram] = \
            OrderedDict()
        self._programs_lock = threading.Lock()

    @functools.cached_property
    def redirected_probe(self) -> Probe:
        """The probe whose ReLUs pass the redirected gradient (made when first needed)."""
        return Probe(self.model, self.layer, self.preprocess, relu=redirected_relu)

    def _check(self, filters: Sequence[int], objective: Objective) -> list[int]:
        filters = [int(f) for f in filters]
        bad = [f for f in filters if not 0 <= f < (self.num_channels or 0)]
        if not filters or bad:
            raise InvalidInputError(
                f"filters {bad or filters} out of range: layer has {self.num_channels} channels"
            )
        objective.check(self.layer_shape, filters)
        return filters

    def _forward(self, pixels: tf.Tensor, redirect_relu: bool = False) -> ProbeOutput:
        """The probe on ``pixels`` ``(n, H, W, C)`` in 0..1, resized to the model's input;
        ``redirect_relu``: the one whose ReLUs pass the redirected gradient."""
        size = (self.height, self.width)
        if None not in size and tuple(pixels.shape[1:3]) != size:  # same size: resize is identity
            pixels = tf.image.resize(pixels, size, method="bilinear")
        probe = self.redirected_probe if redirect_relu else self.probe
        return probe(pixels * 255.0)

    def side(self, size: int | None) -> int:
        """The side of the images an ascent with ``size`` makes: ``size``, else the model's
        input height (128 for a model of free input size)."""
        return size or self.height or 128

    def _program(self, n: int, size: int, objective: Objective | None = None) -> _AscentProgram:
        objective = objective or make_objective("channel")
        with self._programs_lock:
            program = self._programs.pop((n, size, objective), None)
            if program is None:
                forward = functools.partial(self._forward,
                                            redirect_relu=objective.redirect_relu)
                program = _AscentProgram(forward, n, size, self.channels, objective)
            self._programs[(n, size, objective)] = program
            while len(self._programs) > self.max_programs:
                self._programs.popitem(last=False)
            return program

    def run(
        self, filters: Sequence[int], options: AscentOptions = AscentOptions(),
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        objective: Objective | None = None,
    ) -> FilterPatterns:
        """Patterns for ``filters`` under ``objective`` (default: each channel's mean)."""
        objective = objective or make_objective("channel")
        plan = objective.plan(self._check(filters, objective))
        images = [f for f, _ in plan]
        size = self.side(options.size)
        if None in (self.height, self.width) and (reason := too_small(self.model, size, size)):
            raise InvalidInputError(f"size {size} is too small for the model: {reason}")
        program = self._program(len(plan), size, objective)
        index = tf.constant(images, tf.int32)
        seed = tf.constant(options.seed, tf.int32)
        with program.lock:
            program.reset(options, [key for _, key in plan])
            start = program.reached(index)[1].numpy().astype(np.float32)
            for done in range(1, options.steps + 1):
                program.step(index, seed, tf.constant(done, tf.int32))
                if done % options.check_every == 0 or done == options.steps:
                    if should_cancel is not None and should_cancel():
                        raise AscentCanceled(f"canceled after {done} of {options.steps} steps")
                    if progress is not None:
                        progress(done, options.steps)
            pixels, reached = program.reached(index)
        end = reached.numpy().astype(np.float32)
        dead = (np.abs(start) <= DEAD_EPSILON) & (np.abs(end) <= DEAD_EPSILON)
        return FilterPatterns(np.clip(np.round(pixels.numpy() * 255.0), 0, 255).astype(np.uint8),
                              end, images, options.steps, start, dead)
