"""Filter-pattern objectives (models/filters/objectives) against independent properties and
NumPy: a neuron's gradient stays in its receptive field, a class logit equals the Dense
layer's own arithmetic, negative lowers the channel, diversity lowers the Gram similarity, and a
channel that never fires is reported dead."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.errors import InvalidInputError
from models.filters import AscentOptions, FilterVisualizer
from models.filters.objectives import OBJECTIVES, gram_similarity, make_objective
from models.filters.redirected_relu import redirected_relu
from models.graph import Probe
from tests.models import tiny_models as tm

FAST = AscentOptions(steps=10, seed=0, learning_rate=0.1)


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return tm.build("functional")


def _layer_output(model: keras.Model, layer: str, images: np.ndarray) -> np.ndarray:
    """The layer's output for uint8 ``images``, by Keras's own sub-model (not the Probe)."""
    return np.asarray(keras.Model(model.input, model.get_layer(layer).output)(
        images.astype(np.float32)))


def _linear_conv_model(bias: float | None = None) -> keras.Model:
    """16×16 RGB → conv (4 filters 3×3, same; when ``bias`` is given: relu, positive weights
    and biases +0.1 except channel 2's, ``bias``) → GAP → Dense(3, softmax)."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv",
                               activation=None if bias is None else "relu")
    x = conv(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x)))
    if bias is not None:  # positive weights: the others fire on any image
        conv.kernel.assign(np.abs(conv.kernel.numpy()))
        conv.bias.assign(np.array([0.1, 0.1, bias, 0.1], np.float32))
    return model


# Neuron ------------------------------------------------------------------------------------

def test_a_neurons_score_has_gradient_only_in_its_receptive_field(cnn) -> None:
    """conv1 (3×3, same) then conv2 (3×3, valid): unit (y, x) of conv2 sees input rows
    y−1..y+3 and columns x−1..x+3, a 5×5 window; no pixel outside it moves its score."""
    y, x = 5, 7
    probe = Probe(cnn, "conv2")
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        score = tf.reduce_sum(make_objective("neuron", y=y, x=x).score(probe(pixels),
                                                                       tf.constant([0, 3])))
    grad = np.abs(tape.gradient(score, pixels).numpy()).sum(axis=(0, 3))
    inside = np.zeros((16, 16), bool)
    inside[y - 1:y + 4, x - 1:x + 4] = True
    assert grad[inside].sum() > 0
    np.testing.assert_array_equal(grad[~inside], 0.0)


def test_the_neuron_ascent_raises_that_unit(cnn) -> None:
    vis = FilterVisualizer(cnn, "conv2")
    got = vis.run([0, 3], FAST, objective=make_objective("neuron", y=5, x=7))
    assert (got.activation > got.start).all(), (got.start, got.activation)
    acts = _layer_output(cnn, "conv2", got.images)  # (2, 14, 14, 6)
    np.testing.assert_allclose(got.activation, acts[[0, 1], 5, 7, [0, 3]], atol=5e-3)


def test_the_neuron_defaults_to_the_centre(cnn) -> None:
    vis = FilterVisualizer(cnn, "conv2")
    centre = vis.run([1], FAST, objective=make_objective("neuron"))
    explicit = vis.run([1], FAST, objective=make_objective("neuron", y=7, x=7))  # 14×14 grid
    np.testing.assert_array_equal(centre.images, explicit.images)


def test_redirected_relu_matches_its_rule_in_numpy() -> None:
    """Image 0 has a unit on (its plain gradient flows: kept); image 1 is all off (its
    gradient passes, except where it would push an off unit further down: g > 0)."""
    x = np.array([[[1.0, -2.0], [-1.0, -3.0]], [[-1.0, -2.0], [-0.5, -4.0]]], np.float32)
    g = np.array([[[0.5, -1.0], [2.0, 1.0]], [[-1.0, 2.0], [-0.5, 0.25]]], np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = redirected_relu(xt)
        loss = tf.reduce_sum(y * g)
    np.testing.assert_array_equal(y.numpy(), np.maximum(x, 0))
    expected = np.stack([g[0] * (x[0] > 0), np.where((x[1] < 0) & (g[1] > 0), 0.0, g[1])])
    np.testing.assert_array_equal(tape.gradient(loss, xt).numpy(), expected)


def _dark_start_model() -> keras.Model:
    """conv1's ReLU is off everywhere on a flat grey image (positive weights, bias below
    what grey reaches) and on inside a textured one: a deep unit gets no plain gradient."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv2")(conv1(x))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    kernel = np.abs(conv1.kernel.numpy())
    conv1.kernel.assign(kernel)
    conv1.bias.assign(-0.5 * kernel.sum(axis=(0, 1, 2)) - 0.02)
    return model


def test_the_neuron_moves_where_a_flat_start_gives_no_plain_gradient() -> None:
    model = _dark_start_model()
    grey = tf.fill((1, 16, 16, 3), 127.5)
    with tf.GradientTape() as tape:
        tape.watch(grey)
        score = tf.reduce_sum(make_objective("neuron").score(Probe(model, "conv2")(grey),
                                                             tf.constant([0])))
    assert not np.any(tape.gradient(score, grey).numpy())  # the plain ReLUs block it
    got = FilterVisualizer(model, "conv2").run([0, 1, 2], FAST,
                                               objective=make_objective("neuron"))
    assert (got.activation > got.start).all(), (got.start, got.activation)
    assert not got.dead.any()


# Class (a logit or Dense unit) --------------------------------------------------------------

def test_the_class_objective_raises_the_logit_as_the_dense_layer_computes_it(cnn) -> None:
    """The model ends in Dense(3, softmax): the objective is the logit before the softmax,
    recomputed here as flatten(x) · W + b."""
    vis = FilterVisualizer(cnn, "predictions")
    got = vis.run([0, 1, 2], FAST, objective=make_objective("class"))
    assert (got.activation > got.start).all(), (got.start, got.activation)
    kernel, bias = (w.numpy() for w in cnn.get_layer("predictions").weights)
    logits = _layer_output(cnn, "flatten", got.images) @ kernel + bias
    np.testing.assert_allclose(got.activation, logits[[0, 1, 2], [0, 1, 2]], rtol=1e-3,
                               atol=5e-3)
    assert not got.dead.any()


def test_the_class_objective_takes_a_hidden_dense_unit() -> None:
    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid")(x))
    got = FilterVisualizer(model, "hidden").run([4, 1], FAST, objective=make_objective("class"))
    assert (got.activation > got.start).all()
    kernel, bias = (w.numpy() for w in model.get_layer("hidden").weights)
    flat = np.asarray(keras.Model(model.input, model.layers[-3].output)(
        got.images.astype(np.float32)))
    np.testing.assert_allclose(got.activation, (flat @ kernel + bias)[[0, 1], [4, 1]],
                               rtol=1e-3, atol=5e-3)  # before the ReLU


# Negative ----------------------------------------------------------------------------------

def test_negative_lowers_the_channel_below_its_start_and_the_channel_objectives() -> None:
    model = _linear_conv_model()  # no activation: the mean can fall below zero
    vis = FilterVisualizer(model, "conv")
    channels = [0, 1, 2, 3]
    low = vis.run(channels, FAST, objective=make_objective("negative"))
    high = vis.run(channels, FAST)
    assert (low.activation < low.start).all(), (low.start, low.activation)
    assert (low.activation < high.activation).all()
    np.testing.assert_array_equal(low.start, high.start)  # the same starts
    means = _layer_output(model, "conv", low.images).mean(axis=(1, 2))
    np.testing.assert_allclose(low.activation, means[range(4), channels], atol=5e-3)


# Diversity ---------------------------------------------------------------------------------

def _numpy_gram_similarity(acts: np.ndarray) -> float:
    """Mean over pairs i ≠ j of the cosine of the flattened Gram matrices Aᵢᵀ Aᵢ / HW."""
    n = len(acts)
    flat = acts.reshape(n, -1, acts.shape[-1]).astype(np.float64)
    grams = [(a.T @ a / a.shape[0]).ravel() for a in flat]
    cos = [grams[i] @ grams[j] / (np.linalg.norm(grams[i]) * np.linalg.norm(grams[j]))
           for i in range(n) for j in range(n) if i != j]
    return float(np.mean(cos))


def test_gram_similarity_matches_numpy() -> None:
    acts = np.random.default_rng(1).uniform(0, 1, (3, 4, 5, 6)).astype(np.float32)
    assert float(gram_similarity(tf.constant(acts))) == pytest.approx(
        _numpy_gram_similarity(acts), rel=1e-5)
    assert float(gram_similarity(tf.constant(acts[:1]))) == 0.0


def test_diversity_makes_n_images_of_one_channel_less_alike_than_without_it(cnn) -> None:
    vis = FilterVisualizer(cnn, "conv1")
    options = AscentOptions(steps=16, seed=3, learning_rate=0.1)
    plain = vis.run([2], options, objective=make_objective("diversity", n=3, weight=0.0))
    pushed = vis.run([2], options, objective=make_objective("diversity", n=3, weight=50.0))
    assert pushed.filters == plain.filters == [2, 2, 2]
    assert pushed.images.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(plain.start, pushed.start)  # the same starts
    assert len({im.tobytes() for im in plain.images}) == 3  # each image its own start
    similarity = [_numpy_gram_similarity(_layer_output(cnn, "conv1", run.images))
                  for run in (plain, pushed)]
    assert similarity[1] < similarity[0], similarity


def test_diversity_image_zero_starts_where_the_channel_objective_starts(cnn) -> None:
    vis = FilterVisualizer(cnn, "conv1")
    one_step = AscentOptions(steps=1, seed=3)
    diverse = vis.run([2], one_step, objective=make_objective("diversity", n=2, weight=0.0))
    alone = vis.run([2], one_step)
    np.testing.assert_array_equal(diverse.images[0], alone.images[0])


# Dead channels -----------------------------------------------------------------------------

def test_a_channel_that_never_fires_is_dead_and_the_live_ones_are_not() -> None:
    """Channel 2's bias is −100: no 0..1 input lifts a 3×3×3 conv that far, so after ReLU it
    is 0 everywhere, at the start and after the ascent."""
    vis = FilterVisualizer(_linear_conv_model(bias=-100.0), "conv")
    got = vis.run([0, 1, 2, 3], FAST)
    assert got.dead.tolist() == [False, False, True, False]
    assert got.activation[2] == 0.0 and (got.activation[[0, 1, 3]] > 0).all()
    assert got.images[2].std() > 0  # the pre-activation still moved the picture


# Checks ------------------------------------------------------------------------------------

def test_the_registry_names_each_objective_once() -> None:
    assert list(OBJECTIVES) == ["channel", "neuron", "class", "negative", "diversity"]
    assert {cls.name for cls in OBJECTIVES.values()} == set(OBJECTIVES)


@pytest.mark.parametrize("make, text", [
    (lambda: make_objective("blob"), "unknown objective 'blob'"),
    (lambda: make_objective("neuron", y=-1), "y must be >= 0, got -1"),
    (lambda: make_objective("diversity", n=1), "n must be in 2..16, got 1"),
    (lambda: make_objective("diversity", n=17), "got 17"),
    (lambda: make_objective("diversity", weight=-1.0), "got -1.0"),
])  # fmt: skip
def test_objective_arguments_are_checked(make, text: str) -> None:
    with pytest.raises(InvalidInputError, match=text):
        make()


@pytest.mark.parametrize("layer, filters, name, params, text", [
    ("conv2", [0], "class", {}, r"flat output.*\[14, 14, 6\]"),
    ("predictions", [0], "channel", {}, r"'channel' needs .*H×W×C.*\[3\]"),
    ("predictions", [0], "diversity", {}, "H×W×C"),
    ("conv2", [0], "neuron", {"y": 14}, r"y=14 is outside .* \(14 positions\)"),
    ("conv2", [0], "neuron", {"x": 20}, "x=20"),
    ("conv2", [0, 1], "diversity", {}, r"ONE channel, got filters \[0, 1\]"),
])  # fmt: skip
def test_a_layer_or_filters_an_objective_cannot_use_are_refused(cnn, layer: str, filters,
                                                                 name: str, params: dict,
                                                                 text: str) -> None:
    with pytest.raises(InvalidInputError, match=text):
        FilterVisualizer(cnn, layer).run(filters, FAST, objective=make_objective(name, **params))
