"""Targets beyond "the class": Grad-CAM's counterfactual (``target="negative"``, Selvaraju et
al. 2017 Sec. 5.3) against a tape on a hand-written head and the GAP closed form, and binary
sigmoid outputs explained in both directions (class 1 = logit ``z``, class 0 = ``-z``)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.activations import ActivationExtractor
from models.cam import make_cam
from models.errors import InvalidInputError
from models.graph import Probe, class_count, is_binary_sigmoid
from models.saliency import make_saliency
from tests.models import tiny_models as tm

ATOL = 1e-5


def upsample_and_scale(cams: np.ndarray, size: int = tm.SIZE) -> np.ndarray:
    """``(B, h, w)`` maps bilinearly to ``size`` and each scaled to [0, 1] (0 if constant)."""
    up = tf.image.resize(cams[..., None].astype(np.float32), (size, size), "bilinear").numpy()
    up = up[..., 0]
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    span = high - low
    return np.where(span > 0, (up - low) / np.where(span > 0, span, 1.0), 0.0)


def hand_gradcam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Eq. 1-2: relu(sum_k mean_ij(g_k) A_k), upsampled and scaled."""
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return upsample_and_scale(np.maximum((weights * acts).sum(axis=-1), 0.0))


def negated_gradients(model: keras.Model, acts: np.ndarray, targets: list[int]) -> np.ndarray:
    """d(-y_c)/dA for the tiny CNN's head written by hand from "conv2": max-pool, flatten,
    the Dense kernel (a tape on these ops only, not the engine's probe)."""
    dense = model.get_layer("predictions")
    kernel, bias = np.asarray(dense.kernel), np.asarray(dense.bias)
    a = tf.constant(acts)
    with tf.GradientTape() as tape:
        tape.watch(a)
        flat = tf.reshape(tf.nn.max_pool2d(a, 2, 2, "VALID"), (len(acts), -1))
        logits = flat @ kernel + bias
        score = -tf.gather(logits, targets, axis=1, batch_dims=1)
    return tape.gradient(score, a).numpy()


def test_negative_gradcam_uses_the_negated_gradients() -> None:
    model, x, targets = tm.functional(), tm.images(3, seed=21), [0, 2, 1]
    acts = tm.features_by_hand(model, "functional", "conv2", x)
    grads = negated_gradients(model, acts, targets)
    expected = hand_gradcam(acts, grads)
    got = make_cam("gradcam", model, "conv2", target="negative")(x, class_index=targets)
    assert got.class_index.tolist() == targets
    np.testing.assert_allclose(got.heatmaps, expected, atol=ATOL)
    positive = make_cam("gradcam", model, "conv2")(x, class_index=targets).heatmaps
    assert not np.allclose(positive, got.heatmaps, atol=1e-2)  # the target changed the map
    np.testing.assert_allclose(got.score, np.asarray(model(x))[[0, 1, 2], targets], rtol=1e-5)


def test_negative_gradcam_on_a_gap_head_is_relu_of_the_negated_class_weights() -> None:
    """GAP + Dense: d y_c / dA_ijk = w_kc / (h w), so the map is relu(-sum_k w_kc A_k)."""
    model, x, targets = tm.residual(), tm.images(3, seed=22), [1, 0, 2]
    acts = np.asarray(keras.Model(model.input, model.get_layer("relu").output)(x))
    kernel = np.asarray(model.get_layer("predictions").kernel)  # (C, K)
    raw = np.einsum("bhwc,cb->bhw", acts, -kernel[:, targets])
    expected = upsample_and_scale(np.maximum(raw, 0.0))
    got = make_cam("gradcam", model, "relu", target="negative")(x, class_index=targets)
    np.testing.assert_allclose(got.heatmaps, expected, atol=ATOL)


@pytest.mark.parametrize("method", ["gradcam++", "layercam", "hirescam", "xgradcam"])
def test_every_gradient_method_sees_the_negated_gradient(method: str) -> None:
    """Each gradient method's weights of the negative target equal its weighting rule applied
    to the negated gradients (the engine's CamInputs with -grads)."""
    from models.cam.base import CamInputs

    model, x, targets = tm.functional(), tm.images(2, seed=23), [2, 1]
    acts = tm.features_by_hand(model, "functional", "conv2", x)
    grads = negated_gradients(model, acts, targets)
    cam = make_cam(method, model, "conv2")
    ctx = CamInputs(tf.constant(acts), tf.constant(grads), tf.zeros((2, 3)), tf.constant(x),
                    tf.constant(targets, tf.int32))
    rule = np.maximum((cam.weights(ctx).numpy() * acts).sum(axis=-1), 0.0)
    got = make_cam(method, model, "conv2", target="negative")(x, class_index=targets)
    np.testing.assert_allclose(got.heatmaps, upsample_and_scale(rule), atol=ATOL)


def test_negative_ablation_and_scorecam() -> None:
    """Ablation-CAM's negative weights are the class's negated; Score-CAM weighs by 1 - p."""
    model, x, targets = tm.functional(), tm.images(2, seed=24), [0, 1]
    for method in ("ablationcam", "scorecam"):
        plain = make_cam(method, model, "pool")
        negative = make_cam(method, model, "pool", target="negative")
        assert negative(x, class_index=targets).heatmaps.shape == (2, tm.SIZE, tm.SIZE)
        assert not np.allclose(plain(x, class_index=targets).heatmaps,
                               negative(x, class_index=targets).heatmaps, atol=1e-2)
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    cam = make_cam("scorecam", model, "pool", target="negative")
    np.testing.assert_allclose(cam.probability(tf.constant(probs), tf.constant([1, 0])).numpy(),
                               [0.2, 0.4], rtol=1e-6)


def test_eigencam_has_no_negative_target() -> None:
    with pytest.raises(InvalidInputError, match="does not depend on the class"):
        make_cam("eigencam", tm.functional(), "conv2", target="negative")
    with pytest.raises(InvalidInputError, match="unknown target"):
        make_cam("gradcam", tm.functional(), "conv2", target="other")


# -- binary sigmoid outputs -------------------------------------------------------------------


def sigmoid_model(seed: int = 3) -> keras.Model:
    """conv (4) -> relu -> GAP -> Dense(1, sigmoid): one unit, ``p = sigmoid(z)``, with a
    bias that puts some of :func:`tm.images` on either side of 0.5."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((tm.SIZE, tm.SIZE, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="binary")
    dense = model.get_layer("predictions")
    kernel = np.asarray(dense.kernel) * 8.0
    feats = np.asarray(keras.Model(inputs, model.get_layer("gap").output)(tm.images(16, seed=7)))
    dense.set_weights([kernel, -np.median(feats @ kernel, axis=0)])
    return model


@pytest.fixture(scope="module")
def binary() -> keras.Model:
    return sigmoid_model()


@pytest.fixture(scope="module")
def binary_images(binary) -> np.ndarray:
    x = tm.images(16, seed=7)
    p = np.asarray(binary(x))[:, 0]
    assert (p > 0.5).any() and (p < 0.5).any()
    return x[:4]


def logit_z(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """z by hand: the GAP features times the Dense kernel plus bias, (n,)."""
    feats = np.asarray(keras.Model(model.input, model.get_layer("gap").output)(x))
    dense = model.get_layer("predictions")
    return (feats @ np.asarray(dense.kernel) + np.asarray(dense.bias))[:, 0]


def test_a_sigmoid_unit_is_two_classes(binary, binary_images) -> None:
    assert is_binary_sigmoid(binary) and class_count(binary) == 2
    assert not is_binary_sigmoid(tm.functional()) and class_count(tm.functional()) == 3
    p = np.asarray(binary(binary_images))[:, 0]
    out = Probe(binary, None)(tf.constant(binary_images))
    np.testing.assert_allclose(out.probs.numpy(), np.stack([1 - p, p], axis=1), rtol=1e-5,
                               atol=1e-6)
    z = logit_z(binary, binary_images)
    np.testing.assert_allclose(out.logits.numpy(), np.stack([-z, z], axis=1), rtol=1e-4,
                               atol=1e-5)
    preds = ActivationExtractor(binary, "conv")(binary_images, None, k=5).predictions
    for row, prob in zip(preds, p, strict=True):
        assert len(row) == 2 and row[0].index == int(prob > 0.5)
        assert {q.index: q.score for q in row} == pytest.approx({0: 1 - prob, 1: prob},
                                                               abs=1e-6)


def test_binary_saliency_gradients_in_both_directions(binary, binary_images) -> None:
    positive = make_saliency("gradients", binary)(binary_images, class_index=1)
    negative = make_saliency("gradients", binary)(binary_images, class_index=0)
    np.testing.assert_allclose(negative.maps, -positive.maps, atol=1e-6)
    x = tf.constant(binary_images)  # d z / d x by a tape on the hand-written head
    conv = binary.get_layer("conv")
    dense = binary.get_layer("predictions")
    with tf.GradientTape() as tape:
        tape.watch(x)
        feats = tf.reduce_mean(conv(x / 255.0), axis=(1, 2))
        z = tf.reduce_sum(feats @ dense.kernel + dense.bias)
    np.testing.assert_allclose(positive.maps, tape.gradient(z, x).numpy(), rtol=1e-4,
                               atol=1e-6 * float(np.abs(positive.maps).max()))
    p = np.asarray(binary(binary_images))[:, 0]
    top = make_saliency("gradients", binary)(binary_images)
    assert top.class_index.tolist() == (p > 0.5).astype(int).tolist()
    np.testing.assert_allclose(negative.score, 1 - p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "hirescam", "xgradcam",
                                    "scorecam", "ablationcam"])
def test_binary_gradcam_class_0_is_class_1_negative(binary, binary_images, method: str) -> None:
    zero = make_cam(method, binary, "conv")(binary_images, class_index=0)
    counter = make_cam(method, binary, "conv", target="negative")(binary_images, class_index=1)
    np.testing.assert_allclose(zero.heatmaps, counter.heatmaps, atol=ATOL)
    assert zero.class_index.tolist() == [0, 0, 0, 0]


def test_binary_gradcam_on_its_gap_head(binary, binary_images) -> None:
    """Class 1: relu(sum_k w_k A_k); class 0: relu(-sum_k w_k A_k)."""
    acts = np.asarray(keras.Model(binary.input, binary.get_layer("conv").output)(binary_images))
    w = np.asarray(binary.get_layer("predictions").kernel)[:, 0]
    raw = np.einsum("bhwc,c->bhw", acts, w)
    cam = make_cam("gradcam", binary, "conv")
    for cls, sign in ((1, 1.0), (0, -1.0)):
        got = cam(binary_images, class_index=cls)
        np.testing.assert_allclose(got.heatmaps, upsample_and_scale(np.maximum(sign * raw, 0)),
                                   atol=ATOL)
    with pytest.raises(InvalidInputError, match="out of range"):
        cam(binary_images, class_index=2)
