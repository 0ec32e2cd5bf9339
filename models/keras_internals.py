"""Every place convscope relies on Keras internals, behind small named functions.

The rest of ``models/`` calls these and never touches a private Keras name itself, so a Keras
upgrade that moves one of them breaks here, and ``tests/models/test_keras_internals.py``
(which checks each name below on the installed Keras) says which. The tested Keras range is
pinned in ``pyproject.toml``.

Private names, and why each is needed:

- ``Functional._nodes_by_depth`` (dict: depth -> list of ``keras.src.ops.node.Node``): the
  model's graph, to walk it in execution order (:func:`graph_nodes`) for receptive fields
  and batch-norm folding; its presence tells a functional model from a subclassed one
  (:func:`is_functional`). A ``Node``'s ``operation``, ``is_input``, ``input_tensors`` and
  ``outputs`` are public attribute names, but ``Node`` itself is not public API.
- ``KerasTensor._keras_history`` (``KerasHistory(operation, node_index, tensor_index)``): the
  layer that produced a symbolic tensor (:func:`producer`), e.g. a model's output layer.
- ``Layer._inbound_nodes`` (list of ``Node``): how many graphs a layer is called in
  (:func:`call_count`); a layer shared between graphs must not be folded.
- ``Functional._run_through_graph(inputs, operation_fn)`` and
  ``Functional._standardize_inputs(inputs)``: re-run a model's graph with each layer call
  routed through our function, as ``Functional.call`` does (:func:`run_graph`): the probe
  captures a layer's input and output, swaps folded convolutions in and splits off the
  final softmax in the same forward pass, at any nesting depth.
- ``Layer._call_context_args`` (set of names such as ``"training"``): whether an operation
  takes the ``training`` flag the probe forces to False (:func:`accepts_training`).

Implementation details relied on (not private names, but not promised either):

- Initializers and seed generators built without an explicit ``seed`` draw one from Python's
  global :mod:`random` (``keras.src.random.seed_generator.make_default_seed``), so seeding
  ``random`` around a model's construction fixes its initial weights (:func:`seeded_weights`).
- ``BaseConv.convolution_op(inputs, kernel)`` (public, overridden in the keras.io weight
  standardization example): a conv layer's own convolution with another kernel, used to run
  a folded conv (:mod:`models.folding`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras

_SEED_LOCK = threading.Lock()


@dataclass(frozen=True)
class GraphNode:
    """One call of an operation in a functional model's graph (symbolic tensors)."""

    operation: Any
    inputs: list[Any]
    outputs: list[Any]


def is_functional(model: Any) -> bool:
    """A functional model (it has a graph of nodes); False for Sequential and subclassed."""
    return hasattr(model, "_nodes_by_depth")


def graph_nodes(model: keras.Model) -> list[GraphNode]:
    """The layer calls of a functional ``model``, in an order that runs it (inputs first).

    Input nodes are left out; a node's inputs are produced by earlier nodes or are inputs of
    ``model``. Nested models appear as one node each (their own graph is not entered).
    """
    by_depth = model._nodes_by_depth
    return [GraphNode(node.operation, list(node.input_tensors), list(node.outputs))
            for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
            if not node.is_input and node.operation is not None]


def producer(tensor: Any) -> Any:
    """The operation (layer) whose call produced the symbolic ``tensor``."""
    return tensor._keras_history.operation


def call_count(layer: Any) -> int:
    """In how many graphs ``layer`` has been called (each call is one inbound node)."""
    return len(getattr(layer, "_inbound_nodes", ()))


def run_graph(model: keras.Model, inputs: Any,
              operation_fn: Callable[[Any], Callable[..., Any]]) -> Any:
    """Run functional ``model`` on ``inputs`` as ``model(inputs)`` does, but call each
    operation ``op`` as ``operation_fn(op)(*args, **kwargs)``.

    Inputs are matched to the model's, cast and reshaped as in ``Functional.call``.
    """
    return model._run_through_graph(model._standardize_inputs(inputs),
                                    operation_fn=operation_fn)


def accepts_training(op: Any) -> bool:
    """Whether ``op`` takes a ``training`` keyword when called (every Keras layer does; a bare
    ``keras.ops`` operation in a functional graph does not)."""
    return "training" in getattr(op, "_call_context_args", ())


@contextmanager
def seeded_weights(seed: int) -> Iterator[None]:
    """Models built inside get the same initial weights for the same ``seed``, in any process.

    Python's ``random`` state is set to ``seed`` for the duration and restored afterwards, so
    code outside sees no change; a lock keeps two such builds in threads from interleaving.
    NumPy, TensorFlow and Keras's global ``SeedGenerator`` are not touched (not needed).
    """
    with _SEED_LOCK:
        saved = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(saved)
