"""ActivationExtractor against the layers' own outputs, computed without the engine."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.activations import ActivationExtractor, LayerActivations, top_k
from models.graph import LayerNotFoundError
from tests.models import tiny_models as tm

LABELS = ["cat", "dog", "fish"]


@pytest.fixture(scope="module")
def cnns() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


@pytest.mark.parametrize("form", tm.FORMS)
@pytest.mark.parametrize("layer", ["conv1", "conv2", "pool"])
def test_activations_equal_the_layer_output(cnns, form: str, layer: str) -> None:
    model, x = cnns[form], tm.images(3)
    expected = tm.features_by_hand(model, form, layer, x)
    got = ActivationExtractor(model, tm.PATHS[form][layer])(x)
    assert got.activations.dtype == np.float32
    assert got.activations.shape == expected.shape
    np.testing.assert_allclose(got.activations, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", tm.FORMS)
def test_probs_equal_model_predict(cnns, form: str) -> None:
    model, x = cnns[form], tm.images(4, seed=1)
    got = ActivationExtractor(model, tm.PATHS[form]["conv2"])(x)
    np.testing.assert_allclose(got.probs, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_flat_layer_and_residual_add() -> None:
    model, x = tm.functional(), tm.images(2)
    flat = ActivationExtractor(model, "flatten")(x).activations
    expected = keras.Model(model.input, model.get_layer("flatten").output)(x)
    assert flat.shape == (2, 7 * 7 * 6)
    np.testing.assert_allclose(flat, np.asarray(expected), rtol=1e-5, atol=1e-6)

    res = tm.residual()
    got = ActivationExtractor(res, "add")(x).activations
    a = keras.Model(res.input, res.get_layer("conv_a").output)(x)
    b = keras.Model(res.input, res.get_layer("conv_b").output)(x)
    np.testing.assert_allclose(got, np.asarray(a) + np.asarray(b), rtol=1e-5, atol=1e-6)
    assert (got < 0).any()  # the Add is taken before the ReLU that follows it


def test_unknown_layer_raises() -> None:
    with pytest.raises(LayerNotFoundError, match="conv9"):
        ActivationExtractor(tm.nested(), "base/conv9")
    with pytest.raises(LayerNotFoundError):
        ActivationExtractor(tm.nested(), "conv2")  # inside the base: needs its path


@pytest.mark.parametrize("form", tm.FORMS)
def test_predictions_are_top_k_with_labels(cnns, form: str) -> None:
    model, x = cnns[form], tm.images(4, seed=2)
    got = ActivationExtractor(model, tm.PATHS[form]["conv1"])(x, classes=LABELS, k=2)
    probs = np.asarray(model(x))
    for row, preds in zip(probs, got.predictions, strict=True):
        order = np.argsort(-row)[:2]
        assert [p.index for p in preds] == order.tolist()
        assert [p.label for p in preds] == [LABELS[j] for j in order]
        assert [p.score for p in preds] == pytest.approx(row[order].tolist(), rel=1e-5)
        assert preds[0].score >= preds[1].score


def test_top_k_by_hand() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], np.float32)
    best = top_k(probs, 3, LABELS)
    assert [[p.index for p in row] for row in best] == [[1, 2, 0], [0, 2, 1]]
    assert [p.label for p in best[0]] == ["dog", "fish", "cat"]
    assert [p.score for p in best[1]] == pytest.approx([0.5, 0.4, 0.1])
    assert [len(row) for row in top_k(probs, 10)] == [3, 3]  # k is capped at K
    assert [len(row) for row in top_k(probs, 0)] == [1, 1]  # and at least 1
    assert top_k(probs, 1)[0][0].label is None  # no class names, no labels
    tie = top_k(np.array([[0.4, 0.2, 0.4]]), 3)[0]
    assert [p.index for p in tie] == [0, 2, 1]  # ties keep the class order


def test_channel_stats_equal_numpy_mean_and_max() -> None:
    rng = np.random.default_rng(3)
    acts = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    layer = LayerActivations(acts, np.zeros((2, 3), np.float32), [[], []])
    stats = layer.channel_stats(1)
    assert [s["index"] for s in stats] == [0, 1, 2]
    for s in stats:
        c = s["index"]
        assert s["mean"] == pytest.approx(float(np.mean(acts[1, :, :, c])), rel=1e-6)
        assert s["max"] == pytest.approx(float(np.max(acts[1, :, :, c])))
    picked = layer.channel_stats(0, channels=[2])
    assert picked == [{"index": 2, "mean": pytest.approx(float(acts[0, ..., 2].mean()), rel=1e-6),
                       "max": pytest.approx(float(acts[0, ..., 2].max()))}]


def test_channel_stats_of_a_real_layer(cnns) -> None:
    model, x = cnns["nested"], tm.images(2, seed=4)
    got = ActivationExtractor(model, "base/conv2")(x)
    expected = tm.features_by_hand(model, "nested", "conv2", x)[1]
    stats = got.channel_stats(1)
    np.testing.assert_allclose([s["mean"] for s in stats], expected.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose([s["max"] for s in stats], expected.max(axis=(0, 1)), rtol=1e-5)
