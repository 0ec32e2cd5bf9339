"""A compiled step (``tf.function``, no XLA) called through the concrete function traced for
each input signature.

``tf.function.__call__`` binds and canonicalises its arguments and looks its trace up on every
call. Measured on 2 cores, ``shapes`` Grad-CAM of one image: 3.1-3.6 ms through the
``tf.function``, 2.6-2.7 ms through its concrete function (an A/B in one process,
three rounds of 100 calls). A one-image job pays that on every call; a batch of 32 hardly
notices. Tensors only: a concrete function takes no Python arguments.

No XLA: on CPU the plain graph (oneDNN kernels) runs as fast for ResNet50 and ~1.5x faster for
the CIFAR CNN, and traces several times quicker (``benchmarks/engine.py``).

A step that computes any batch the same way up to some size (one pass, no micro-batches) can
say so (``open_batch``): batches up to that size then share one trace with the batch dimension
left open. Measured on 2 cores, ``shapes`` Grad-CAM: each batch size traced on its own cost
4-9 MB of resident memory more (one process computing batches of the 10 sizes 1-32 grew by
75 MB, with the batch open by 50 MB, 23 MB of either for the first trace), and the open trace ran as
fast (interleaved A/B in one process, medians of 8 rounds of 30 calls: 1.89 against 1.85 ms at
batch 1, 9.60 against 9.64 ms at 32) with the same maps, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


class Compiled:
    """``fn`` compiled; ``compiled(*tensors)`` runs the trace for the tensors' shapes and
    dtypes (traced on first use).

    ``open_batch(shape)``: whether ``fn`` computes a batch whose first tensor has ``shape``
    the same way whatever its size; such batches share a trace whose batch dimension (the
    first of every tensor) is open. None: each batch size has its own trace.
    """

    def __init__(self, fn: Callable[..., Any],
                 open_batch: Callable[[tf.TensorShape], bool] | None = None) -> None:
        self.function = tf.function(fn, jit_compile=False)
        # A function of its own: tf.function would serve a later fixed batch size from the
        # open trace (its signature is more general), whatever ``open_batch`` says of that size.
        self._open = tf.function(fn, jit_compile=False)
        self.open_batch = open_batch
        self._concrete: dict[tuple, Any] = {}

    @property
    def traces(self) -> int:
        """How many times ``fn`` was traced (once per new input signature)."""
        return sum(int(f.experimental_get_tracing_count()) for f in (self.function, self._open))

    def __call__(self, *tensors: tf.Tensor) -> Any:
        opened = self.open_batch is not None and self.open_batch(tensors[0].shape)
        shapes = [(None, *t.shape[1:]) if opened else tuple(t.shape) for t in tensors]
        key = tuple(zip(shapes, (t.dtype for t in tensors), strict=True))
        concrete = self._concrete.get(key)
        if concrete is None:
            function = self._open if opened else self.function
            concrete = function.get_concrete_function(
                *[tf.TensorSpec(shape, dtype) for shape, dtype in key])
            self._concrete[key] = concrete
        return concrete(*tensors)
