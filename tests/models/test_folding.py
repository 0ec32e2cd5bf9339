"""Batch-norm folding in the probe: same outputs and gradients as Keras, pairs chosen right."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.folding import Fold, find_folds, folded_weights
from models.graph import Probe
from tests.models import tiny_models as tm

BN_FORMS = ("sequential", "functional", "nested", "residual")


@pytest.fixture(scope="module")
def bn_models() -> dict[str, keras.Model]:
    return {form: tm.batchnorm(form) for form in BN_FORMS}


def _pairs(probe: Probe) -> set[tuple[str, str]]:
    return {(f.conv.name, f.norm.name) for f in probe._folds.values()}


@pytest.mark.parametrize("form", BN_FORMS)
def test_folded_probe_equals_the_model_output(bn_models, form: str) -> None:
    model = bn_models[form]
    x = tm.images(6, seed=3)
    probe = Probe(model, None)
    expected = {("b1_conv", "b1_bn"), ("b2_conv", "b2_bn")}
    if form == "residual":  # b2_conv also feeds the Add: only b1 and b3 fold
        expected = {("b1_conv", "b1_bn"), ("b3_conv", "b3_bn")}
    assert _pairs(probe) == expected
    reference = np.asarray(model(x, training=False))
    out = probe(tf.constant(x))
    np.testing.assert_allclose(np.asarray(out.probs), reference, rtol=1e-5, atol=1e-6)
    unfolded = Probe(model, None, fold_batchnorm=False)
    assert _pairs(unfolded) == set()
    # logits too: a saturated softmax could hide an error in them
    np.testing.assert_allclose(np.asarray(out.logits),
                               np.asarray(unfolded(tf.constant(x)).logits), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tf.nn.softmax(unfolded(tf.constant(x)).logits).numpy(),
                               reference, rtol=1e-5, atol=1e-6)


def test_folded_weights_match_the_formula(bn_models) -> None:
    model = bn_models["functional"]
    conv, norm = model.get_layer("b2_conv"), model.get_layer("b2_bn")
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in norm.get_weights())
    scale = gamma / np.sqrt(var + norm.epsilon)
    kernel, bias = folded_weights(Fold(conv, norm))
    np.testing.assert_allclose(kernel.numpy(), np.asarray(conv.kernel) * scale, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), (np.asarray(conv.bias) - mean) * scale + beta,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["b2_conv", "b2_bn"])
def test_a_probed_layer_keeps_its_own_pair(bn_models, layer: str) -> None:
    model = bn_models["functional"]
    x = tm.images(4, seed=5)
    probe = Probe(model, layer)
    assert _pairs(probe) == {("b1_conv", "b1_bn")}
    sub = keras.Model(model.input, [model.get_layer(layer).input, model.get_layer(layer).output])
    layer_in, layer_out = (np.asarray(t) for t in sub(x, training=False))
    out = probe(tf.constant(x))
    np.testing.assert_allclose(np.asarray(out.activation), layer_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.layer_input), layer_in, rtol=1e-5, atol=1e-5)


def test_nested_layer_is_reached_with_the_other_pair_folded(bn_models) -> None:
    model = bn_models["nested"]
    x = tm.images(4, seed=6)
    probe = Probe(model, "base/b2_relu")
    assert _pairs(probe) == {("b1_conv", "b1_bn"), ("b2_conv", "b2_bn")}
    base = model.get_layer("base")
    reference = keras.Model(base.input, base.get_layer("b2_relu").output)(x / 255.0)
    np.testing.assert_allclose(np.asarray(probe(tf.constant(x)).activation),
                               np.asarray(reference), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["sequential", "residual"])
def test_input_gradients_are_unchanged(bn_models, form: str) -> None:
    model = bn_models[form]
    x = tf.constant(tm.images(3, seed=7))
    probe = Probe(model, None)

    def grad(fn) -> np.ndarray:
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(fn(x)[:, 1])
        return tape.gradient(score, x).numpy()

    reference = grad(lambda t: model(t, training=False))
    assert np.abs(reference).max() > 0
    np.testing.assert_allclose(grad(lambda t: probe(t).probs), reference,
                               rtol=1e-4, atol=1e-9)


def test_nothing_to_fold_without_batchnorm() -> None:
    assert find_folds(tm.functional()) == []
    assert find_folds(tm.sequential()) == []


def test_conv_with_an_activation_is_not_folded() -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="c")(inputs)
    x = keras.layers.BatchNormalization(name="n")(x)
    assert find_folds(keras.Model(inputs, x)) == []


def _conv_bn_base(name: str = "base") -> keras.Model:
    inputs = keras.Input((tm.SIZE, tm.SIZE, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="shared_conv")
    x = keras.layers.BatchNormalization(name="shared_bn")(conv(inputs))
    base = keras.Model(inputs, x, name=name)
    base.conv = conv  # type: ignore[attr-defined]
    return base


def _logits_agree(model: keras.Model, x: np.ndarray, atol: float = 1e-5) -> Probe:
    probe = Probe(model, None)
    reference = Probe(model, None, fold_batchnorm=False)(tf.constant(x)).logits
    np.testing.assert_allclose(np.asarray(probe(tf.constant(x)).logits), np.asarray(reference),
                               rtol=1e-4, atol=atol)
    np.testing.assert_allclose(np.asarray(probe(tf.constant(x)).probs),
                               np.asarray(model(x, training=False)), rtol=1e-3, atol=1e-5)
    return probe


def test_a_conv_used_in_two_graphs_is_not_folded() -> None:
    """The conv runs before a batch norm inside ``base`` and, unnormalised, in the outer graph."""
    base = _conv_bn_base()
    tm._set_batchnorm_statistics(base, 2)
    inputs = keras.Input((tm.SIZE, tm.SIZE, 3))
    both = keras.layers.Concatenate()([base(inputs), base.conv(inputs)])
    head = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(both))
    probe = _logits_agree(keras.Model(inputs, head), tm.images(4, seed=11))
    assert _pairs(probe) == set()


def test_mixed_precision_is_not_folded() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tm.batchnorm("functional")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probe = _logits_agree(model, tm.images(4, seed=12), atol=0.05)
    assert _pairs(probe) == set()


def test_a_subclassed_nested_model_runs_whole() -> None:
    class Doubler(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="doubler")
            self.conv = keras.layers.Conv2D(4, 3, padding="same")
            self.norm = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return self.norm(self.conv(x), training=training) * 2.0

    inputs = keras.Input((tm.SIZE, tm.SIZE, 3))
    x = _conv_bn_base("folded")(inputs)
    x = Doubler()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    tm._set_batchnorm_statistics(model, 3)
    probe = _logits_agree(model, tm.images(3, seed=13))
    assert _pairs(probe) == {("shared_conv", "shared_bn")}

