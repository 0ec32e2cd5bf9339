"""Where a model's class scores come from (models.heads, models.graph.image_scores): the
output layer's path, the default spatial layer before the head, dense-prediction outputs
scored by their mean over positions, and images too small for a free-size model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.errors import InvalidInputError
from models.graph import Probe
from models.heads import last_spatial_layer, output_layer, too_small
from tests.models import tiny_models as tm

L = keras.layers


def _fcn(tail: str, nested: bool = False) -> keras.Model:
    """conv (features) → seg (1×1 conv, 3 classes) → the tail; ``nested``: all of it inside
    an inner model. Tails: ``softmax`` on seg itself, ``layer`` a separate Softmax layer,
    ``upsample`` a 2× upsampling (after a pooling) then a Softmax layer."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    if tail == "upsample":
        x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(3, 1, activation="softmax" if tail == "softmax" else None, name="seg")(x)
    if tail == "upsample":
        x = L.UpSampling2D(2, name="up")(x)
    if tail != "softmax":
        x = L.Softmax(name="probs")(x)
    inner = keras.Model(inputs, x, name="segmenter")
    if not nested:
        return inner
    outer_in = keras.Input((8, 8, 3))
    return keras.Model(outer_in, inner(outer_in), name="outer")


@pytest.mark.parametrize(("tail", "nested", "default"), [
    ("softmax", False, "conv"), ("layer", False, "conv"), ("upsample", False, "pool"),
    ("softmax", True, "segmenter/conv"), ("layer", True, "segmenter/conv")])
def test_the_default_layer_of_a_dense_prediction_is_before_its_head(
        tail: str, nested: bool, default: str) -> None:
    assert last_spatial_layer(_fcn(tail, nested)) == default


def test_the_output_layer_is_named_by_its_path() -> None:
    assert output_layer(_fcn("layer", nested=True)) == "segmenter/probs"
    assert output_layer(tm.nested()) == "predictions"
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(2, 3, name="c"),
                              L.GlobalAveragePooling2D(name="g"), L.Dense(3, name="dense")],
                             name="classifier")
    outer_in = keras.Input((8, 8, 3))
    outer = keras.Model(outer_in, inner(outer_in))
    assert output_layer(outer) == "classifier/dense"  # was the nested model itself
    assert last_spatial_layer(outer) == "classifier/c"
    assert last_spatial_layer(tm.functional()) == "pool"  # classifiers as before


def test_a_dense_prediction_scores_a_class_by_its_mean_over_positions() -> None:
    model = _fcn("layer")
    x = tm.images(2, seed=4, size=8)
    out = Probe(model, "seg")(x)
    logits = out.pre_activation.numpy()  # (2, 8, 8, 3), seg has no activation of its own
    probs = np.asarray(model(x))
    np.testing.assert_allclose(out.logits.numpy(), logits.mean(axis=(1, 2)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(out.probs.numpy(), probs.mean(axis=(1, 2)), rtol=1e-5,
                               atol=1e-6)


def test_a_binary_sigmoid_segmentation_has_two_classes() -> None:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, L.Conv2D(1, 1, activation="sigmoid", name="mask")(x))
    x = tm.images(2, seed=5, size=8)
    out = Probe(model, "conv")(x)
    p = np.asarray(model(x)).mean(axis=(1, 2, 3))
    assert out.probs.shape == (2, 2) and out.logits.shape == (2, 2)
    np.testing.assert_allclose(out.probs.numpy(), np.stack([1 - p, p], 1), rtol=1e-5)
    z = out.logits.numpy()
    np.testing.assert_allclose(z[:, 0], -z[:, 1])


@pytest.mark.parametrize("sequential", [False, True])
def test_too_small_follows_the_size_arithmetic(sequential: bool) -> None:
    model = tm.free_size(sequential)
    for side in range(1, 13):
        fits = side >= 3 and (side - 2) // 2 - 2 >= 1
        reason = too_small(model, side, side)
        assert (reason is None) == fits, (side, reason)
    assert too_small(model, 3, 3).startswith("layer 'pool'")
    assert too_small(model, 7, 7).startswith("layer 'conv2'")
    assert too_small(model, 8, 40) is None and too_small(model, 40, 7) is not None


@pytest.mark.parametrize("merge", [L.Concatenate, L.Add])
def test_a_u_net_refuses_a_size_its_skip_cannot_join(merge: type) -> None:
    inputs = keras.Input((None, None, 3))
    up = L.UpSampling2D(2, name="up")(L.MaxPooling2D(2, name="down")(inputs))
    model = keras.Model(inputs, merge(name="join")([inputs, up]))
    assert too_small(model, 8, 8) is None and too_small(model, 8, 20) is None
    assert too_small(model, 9, 8).startswith("layer 'join'")  # 9 → 4 → 8 rows against 9
    assert too_small(model, 8, 9).startswith("layer 'join'")


def test_a_filter_pattern_too_small_for_the_model_is_refused() -> None:
    from models.filters.ascent import AscentOptions, FilterVisualizer

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((None, None, 3)), L.Conv2D(2, 10, name="wide"),
                              L.GlobalAveragePooling2D(), L.Dense(2)])
    viz = FilterVisualizer(model, "wide")
    with pytest.raises(InvalidInputError, match="size 9 is too small for the model"):
        viz.run([0], AscentOptions(steps=1, size=9))  # was TensorFlow's error mid-trace
    assert len(viz.run([0], AscentOptions(steps=1, size=10)).images) == 1
