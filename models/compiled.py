"""A compiled step (``tf.function``, no XLA) called through the concrete function traced for
each input signature.

``tf.function.__call__`` binds and canonicalises its arguments and looks its trace up on every
call. Measured on 2 cores, ``shapes`` Grad-CAM of one image: 3.1-3.6 ms through the
``tf.function``, 2.6-2.7 ms through its concrete function (an A/B in one process,
three rounds of 100 calls). A one-image job pays that on every call; a batch of 32 hardly
notices. Tensors only: a concrete function takes no Python arguments.

No XLA: on CPU the plain graph (oneDNN kernels) runs as fast for ResNet50 and ~1.5x faster for
the CIFAR CNN, and traces several times quicker (``benchmarks/engine.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


class Compiled:
    """``fn`` compiled; ``compiled(*tensors)`` runs the trace for the tensors' shapes and
    dtypes (traced on first use)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.function = tf.function(fn, jit_compile=False)
        self._concrete: dict[tuple, Any] = {}

    @property
    def traces(self) -> int:
        """How many times ``fn`` was traced (once per new input signature)."""
        return int(self.function.experimental_get_tracing_count())

    def __call__(self, *tensors: tf.Tensor) -> Any:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self.function.get_concrete_function(
                *[tf.TensorSpec(t.shape, t.dtype) for t in tensors])
            self._concrete[key] = concrete
        return concrete(*tensors)
