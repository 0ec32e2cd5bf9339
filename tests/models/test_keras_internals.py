"""The Keras internals convscope relies on, checked on the installed Keras in one place.

Each private name listed in :mod:`models.keras_internals` is looked up here by name on tiny
Sequential, functional and nested models and checked for the kind of object it should be;
then each wrapper is checked for the behaviour the engine needs. A Keras upgrade that moves
one of them fails here, naming it.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from models import keras_internals as ki
from tests.models import tiny_models as tm

L = keras.layers


@pytest.fixture(scope="module")
def forms() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


def _functional_models(forms: dict[str, keras.Model]) -> list[keras.Model]:
    """Every functional graph among the tiny models: functional, nested outer and inner."""
    return [forms["functional"], forms["nested"], forms["nested"].get_layer("base")]


def _layers(forms: dict[str, keras.Model]) -> list[keras.Layer]:
    return [layer for model in (*forms.values(), forms["nested"].get_layer("base"))
            for layer in model.layers]


def _check_nodes_by_depth(forms: dict[str, keras.Model]) -> None:
    for model in _functional_models(forms):
        by_depth = model._nodes_by_depth
        assert isinstance(by_depth, dict) and by_depth
        for depth, nodes in by_depth.items():
            assert isinstance(depth, int) and isinstance(nodes, list)
            for node in nodes:
                assert isinstance(node.is_input, bool)
                assert isinstance(node.input_tensors, list) and isinstance(node.outputs, list)
                assert node.is_input or isinstance(node.operation, keras.Operation)
    assert not hasattr(forms["sequential"], "_nodes_by_depth")


def _check_keras_history(forms: dict[str, keras.Model]) -> None:
    for model in _functional_models(forms):
        history = model.outputs[0]._keras_history
        assert history.operation is model.layers[-1]
        assert isinstance(history.node_index, int) and isinstance(history.tensor_index, int)


def _check_inbound_nodes(forms: dict[str, keras.Model]) -> None:
    for layer in _layers(forms):
        nodes = layer._inbound_nodes
        assert isinstance(nodes, list) and len(nodes) == 1, layer.name


def _check_run_through_graph(forms: dict[str, keras.Model]) -> None:
    for model in _functional_models(forms):
        method = model._run_through_graph
        params = inspect.signature(method).parameters
        assert list(params)[:2] == ["inputs", "operation_fn"]


def _check_standardize_inputs(forms: dict[str, keras.Model]) -> None:
    x = tm.images(2)
    for model in _functional_models(forms):
        method = model._standardize_inputs
        assert list(inspect.signature(method).parameters) == ["inputs"]
        standardized = method(x)
        assert isinstance(standardized, list) and len(standardized) == 1
        np.testing.assert_array_equal(np.asarray(standardized[0]), x)


def _check_call_context_args(forms: dict[str, keras.Model]) -> None:
    for layer in _layers(forms):
        assert "training" in layer._call_context_args, layer.name
    bare = _graph_with_a_bare_op()
    op = bare.outputs[0]._keras_history.operation
    assert not isinstance(op, keras.Layer) and not hasattr(op, "_call_context_args")


PRIVATE_NAMES: dict[str, Callable[[dict[str, keras.Model]], None]] = {
    "Functional._nodes_by_depth": _check_nodes_by_depth,
    "KerasTensor._keras_history": _check_keras_history,
    "Layer._inbound_nodes": _check_inbound_nodes,
    "Functional._run_through_graph": _check_run_through_graph,
    "Functional._standardize_inputs": _check_standardize_inputs,
    "Layer._call_context_args": _check_call_context_args,
}


@pytest.mark.parametrize("name", sorted(PRIVATE_NAMES))
def test_private_name_exists_with_the_expected_kind(forms, name: str) -> None:
    PRIVATE_NAMES[name](forms)


@pytest.mark.parametrize("name", sorted(PRIVATE_NAMES))
def test_private_name_is_listed_in_the_module_docstring(name: str) -> None:
    assert f"``{name}" in (ki.__doc__ or "")


def test_no_other_module_touches_a_private_keras_name() -> None:
    """Only models/keras_internals.py names them."""
    root = Path(ki.__file__).parent
    names = [name.split(".")[1] for name in PRIVATE_NAMES]
    offenders = [f"{path.relative_to(root)}: {name}" for path in root.rglob("*.py")
                 if path.name != "keras_internals.py" for name in names
                 if name in path.read_text()]
    assert not offenders


def _graph_with_a_bare_op() -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.ops.add(inputs, inputs))


def _shared_conv_model() -> tuple[keras.Model, keras.Layer]:
    inputs = keras.Input((tm.SIZE, tm.SIZE, 3))
    conv = L.Conv2D(3, 1, name="shared")
    return keras.Model(inputs, L.Add()([conv(inputs), conv(conv(inputs))])), conv


# The wrappers, behaviour ------------------------------------------------------------------


def test_is_functional() -> None:
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert ki.is_functional(tm.functional()) and ki.is_functional(tm.nested())
    assert not ki.is_functional(tm.sequential())
    assert not ki.is_functional(Subclassed())


def test_graph_nodes_run_in_order(forms) -> None:
    model = tm.residual()
    nodes = ki.graph_nodes(model)
    names = [node.operation.name for node in nodes]
    assert names == ["rescale", "conv_a", "conv_b", "add", "relu", "gap", "predictions"]
    add = nodes[names.index("add")]
    assert [ki.producer(t).name for t in add.inputs] == ["conv_a", "conv_b"]
    assert add.outputs == [model.get_layer("add").output]
    outer = [node.operation.name for node in ki.graph_nodes(forms["nested"])]
    assert outer == ["base", "flatten", "predictions"]  # the nested model is one node


def test_producer(forms) -> None:
    for model in _functional_models(forms):
        assert ki.producer(model.outputs[0]) is model.layers[-1]
    model = tm.residual()
    assert ki.producer(model.get_layer("relu").input) is model.get_layer("add")


def test_call_count() -> None:
    model, shared = _shared_conv_model()
    assert ki.call_count(shared) == 3
    assert ki.call_count(model.get_layer(index=-1)) == 1
    assert ki.call_count(L.Conv2D(2, 3)) == 0  # never called
    assert ki.call_count(object()) == 0


def test_run_graph_routes_every_call_and_equals_the_model(forms) -> None:
    x = tm.images(3, seed=2)
    for model in _functional_models(forms):
        seen: list[str] = []

        def route(op: Any, seen: list[str] = seen) -> Callable[..., Any]:
            seen.append(op.name)
            return op

        out = ki.run_graph(model, x, route)
        np.testing.assert_allclose(np.asarray(out), np.asarray(model(x)), rtol=1e-6)
        assert seen == [node.operation.name for node in ki.graph_nodes(model)]


def test_accepts_training() -> None:
    assert ki.accepts_training(L.BatchNormalization()) and ki.accepts_training(L.Conv2D(2, 3))
    bare = _graph_with_a_bare_op()
    assert not ki.accepts_training(ki.producer(bare.outputs[0]))


def test_seeded_weights_fix_initial_weights_and_leave_random_alone() -> None:
    def build() -> list[np.ndarray]:
        layer = L.Dense(3)
        layer.build((None, 4))
        return layer.get_weights()

    state = random.getstate()
    with ki.seeded_weights(7):
        first = build()
    assert random.getstate() == state
    random.seed(123)  # another global state: must not matter inside
    with ki.seeded_weights(7):
        second = build()
    with ki.seeded_weights(8):
        other = build()
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])


def test_convolution_op_runs_a_conv_with_another_kernel() -> None:
    conv = L.Conv2D(2, 3, padding="same")
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 3)).astype(np.float32)
    conv(x)
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[1, 1, 0, 0] = 2.0  # centre tap: twice channel 0 into filter 0
    out = np.asarray(conv.convolution_op(x, kernel))
    np.testing.assert_allclose(out[..., 0], 2.0 * x[0, ..., 0][None], rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], 0.0)
