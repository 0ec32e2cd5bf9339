"""HiResCAM, XGrad-CAM, Eigen-CAM, Ablation-CAM and Faster Score-CAM against references written
here, or against a property the method must have.

The references use the pipeline of ``test_cam.py``: activations ``A`` from a sub-model
(:func:`tiny_models.features_by_hand`), the head written out by hand, and a plain GradientTape
for ``dy/dA``; the papers' formulas are then applied in NumPy.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.cam import METHODS, make_cam
from models.cam.base import CamInputs
from models.shapes_data import generate_shapes
from tests.models import tiny_models as tm
from tests.models.test_cam import (
    ATOL,
    reference_tape,
    scorecam_reference,
    upsample_and_scale,
)

NEW_METHODS = ("hirescam", "xgradcam", "eigencam", "ablationcam", "faster_scorecam")


@pytest.fixture(scope="module")
def cnns() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


def hirescam_formula(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Draelos & Carin 2020: M = relu(sum_k g^k_ij A^k_ij), no averaging of g."""
    return np.maximum((grads * acts).sum(axis=-1), 0.0)


def xgradcam_formula(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Fu et al. 2020: alpha_k = sum_ij A^k_ij / (sum_ab A^k_ab) g^k_ij (0 for a blank map)."""
    acts, grads = acts.astype(np.float64), grads.astype(np.float64)
    total = acts.sum(axis=(1, 2), keepdims=True)
    share = np.divide(acts, total, out=np.zeros_like(acts), where=total != 0)
    alpha = (share * grads).sum(axis=(1, 2), keepdims=True)
    return np.maximum((alpha * acts).sum(axis=-1), 0.0)


def eigencam_formula(acts: np.ndarray) -> np.ndarray:
    """Muhammad & Yeasin 2020: O (h*w, C) = U S V^T, L = O V_1, signed to agree with the mean
    activation."""
    out = []
    for a in acts.astype(np.float64):
        flat = a.reshape(-1, a.shape[-1])
        v1 = np.linalg.svd(flat, full_matrices=False)[2][0]
        projection = flat @ v1
        if np.corrcoef(projection, flat.mean(axis=1))[0, 1] < 0:
            projection = -projection
        out.append(np.maximum(projection, 0.0).reshape(a.shape[:2]))
    return np.stack(out)


def head_logits(model: keras.Model, layer: str, acts: np.ndarray) -> np.ndarray:
    """The tiny CNN's logits from layer "conv2" or "pool": max-pool, flatten, Dense kernel."""
    pooled = acts if layer == "pool" else tf.nn.max_pool2d(acts, 2, 2, "VALID").numpy()
    dense = model.get_layer("predictions")
    return pooled.reshape(len(acts), -1) @ np.asarray(dense.kernel) + np.asarray(dense.bias)


def ablation_weights(model: keras.Model, layer: str, acts: np.ndarray, targets) -> np.ndarray:
    """Desai & Ramaswamy 2020: w_k = (y_c - y_c^k) / |y_c| (the paper's y_c > 0; its size for
    a negative score), one ablated forward pass per channel."""
    rows = np.arange(len(acts))
    score = head_logits(model, layer, acts)[rows, targets]
    weights = np.zeros((len(acts), acts.shape[-1]))
    for k in range(acts.shape[-1]):
        ablated = acts.copy()
        ablated[..., k] = 0.0
        weights[:, k] = (score - head_logits(model, layer, ablated)[rows, targets]) / np.abs(score)
    return weights


@pytest.mark.parametrize("form", tm.FORMS)
@pytest.mark.parametrize("layer", ["conv2", "pool"])
@pytest.mark.parametrize("method", ["hirescam", "xgradcam"])
def test_gradient_methods_equal_the_reference(cnns, form: str, layer: str, method: str) -> None:
    formula = {"hirescam": hirescam_formula, "xgradcam": xgradcam_formula}[method]
    model, x, targets = cnns[form], tm.images(3, seed=5), [0, 2, 1]
    acts, grads, _ = reference_tape(model, form, layer, x, targets)
    assert np.abs(grads).sum() > 0
    result = make_cam(method, model, tm.PATHS[form][layer])(x, class_index=targets)
    assert result.class_index.tolist() == targets
    np.testing.assert_allclose(result.heatmaps, upsample_and_scale(formula(acts, grads)),
                               atol=ATOL)


@pytest.mark.parametrize("model, layer", [(tm.residual, "relu"),
                                          (lambda: tm.batchnorm("functional"), "b2_relu")])
def test_hirescam_is_gradcam_on_a_global_average_pooling_head(model, layer: str) -> None:
    """With GAP + Dense after the layer, dy/dA^k_ij = w_k / (h w) at every position."""
    cnn, x, targets = model(), tm.images(3, seed=11), [2, 0, 1]
    hires = make_cam("hirescam", cnn, layer)(x, class_index=targets).heatmaps
    grad = make_cam("gradcam", cnn, layer)(x, class_index=targets).heatmaps
    assert hires.max() == pytest.approx(1.0)
    np.testing.assert_allclose(hires, grad, atol=1e-5)


def test_hirescam_is_not_gradcam_after_a_max_pool(cnns) -> None:
    """The property above is not vacuous: with max-pool + flatten + Dense they differ."""
    x, targets = tm.images(3, seed=11), [2, 0, 1]
    hires = make_cam("hirescam", cnns["functional"], "conv2")(x, class_index=targets)
    grad = make_cam("gradcam", cnns["functional"], "conv2")(x, class_index=targets)
    assert np.abs(hires.heatmaps - grad.heatmaps).max() > 0.1


@pytest.mark.parametrize("form", tm.FORMS)
@pytest.mark.parametrize("layer", ["conv2", "pool"])
def test_eigencam_equals_the_reference(cnns, form: str, layer: str) -> None:
    model, x = cnns[form], tm.images(3, seed=12)
    acts = tm.features_by_hand(model, form, layer, x)
    expected = upsample_and_scale(eigencam_formula(acts))
    cam = make_cam("eigencam", model, tm.PATHS[form][layer])
    for targets in ([0, 1, 2], [2, 2, 0]):  # no class in it
        np.testing.assert_allclose(cam(x, class_index=targets).heatmaps, expected, atol=ATOL)


class Decision(keras.layers.Layer):
    """One-hot of the arg-max: an output with no gradient."""

    def call(self, x):
        return keras.ops.one_hot(keras.ops.argmax(x, axis=-1), x.shape[-1])


def test_eigencam_needs_no_gradient(cnns) -> None:
    base = cnns["functional"]
    decided = keras.Model(base.input, Decision(name="decision")(base.output))
    x = tm.images(3, seed=13)
    acts = tf.constant(tm.features_by_hand(base, "functional", "pool", x))
    pool_to_output = keras.Model(base.get_layer("flatten").input, decided.output)
    with tf.GradientTape() as tape:
        tape.watch(acts)
        out = pool_to_output(acts)
    assert tape.gradient(out, acts) is None  # Grad-CAM has nothing to work with
    result = make_cam("eigencam", decided, "pool")(x)
    expected = upsample_and_scale(eigencam_formula(acts.numpy()))
    np.testing.assert_allclose(result.heatmaps, expected, atol=ATOL)
    np.testing.assert_array_equal(result.class_index, np.argmax(np.asarray(base(x)), axis=-1))


@pytest.mark.parametrize("form", tm.FORMS)
@pytest.mark.parametrize("layer", ["conv2", "pool"])
def test_ablation_weights_are_the_score_drops(cnns, form: str, layer: str) -> None:
    model, x, targets = cnns[form], tm.images(2, seed=14), [2, 0]
    acts = tm.features_by_hand(model, form, layer, x)
    expected = ablation_weights(model, layer, acts, targets)
    logits = head_logits(model, layer, acts)
    cam = make_cam("ablationcam", model, tm.PATHS[form][layer])
    cam.ablated_batch = 8  # 4 channels a pass: 6 channels in two, the second filled up
    ctx = CamInputs(tf.constant(acts), tf.zeros_like(acts), tf.constant(logits, tf.float32),
                    tf.constant(x), tf.constant(targets, tf.int32))
    weights = cam.weights(ctx).numpy()
    assert weights.shape == (2, 1, 1, 6)
    np.testing.assert_allclose(weights[:, 0, 0], expected, rtol=1e-4, atol=1e-5)

    maps = upsample_and_scale(np.maximum((expected[:, None, None] * acts).sum(axis=-1), 0.0))
    for batch in (64, 8):
        cam = make_cam("ablationcam", model, tm.PATHS[form][layer])
        cam.ablated_batch = batch
        np.testing.assert_allclose(cam(x, class_index=targets).heatmaps, maps, atol=ATOL)


@pytest.mark.parametrize("form", ["functional", "nested"])
def test_faster_scorecam_with_every_channel_is_scorecam(cnns, form: str) -> None:
    model, x, targets = cnns[form], tm.images(2, seed=15), [1, 2]
    layer = tm.PATHS[form]["pool"]
    faster = make_cam("faster_scorecam", model, layer)
    faster.max_channels = 6
    full = make_cam("scorecam", model, layer)
    np.testing.assert_allclose(faster(x, class_index=targets).heatmaps,
                               full(x, class_index=targets).heatmaps, atol=1e-5)


def test_faster_scorecam_keeps_the_channels_that_vary_most(cnns) -> None:
    model, x, targets = cnns["functional"], tm.images(2, seed=16), [0, 2]
    acts = tm.features_by_hand(model, "functional", "pool", x)
    variance = acts.var(axis=(1, 2))  # (B, C)
    kept = np.zeros_like(acts)
    for b, top in enumerate(np.argsort(-variance, axis=1)[:, :3]):
        kept[b, ..., top] = acts[b, ..., top]
    # A zeroed channel contributes weight * 0: the reference over `kept` sums the top 3 only.
    expected = scorecam_reference(model, kept, x, targets)
    faster = make_cam("faster_scorecam", model, "pool")
    faster.max_channels = 3
    faster.masked_batch = 4  # two channels a pass: the three kept in two passes
    np.testing.assert_allclose(faster(x, class_index=targets).heatmaps, expected, atol=ATOL)
    assert np.abs(expected - scorecam_reference(model, acts, x, targets)).max() > 0.05


def test_the_new_methods_are_registered() -> None:
    assert set(NEW_METHODS) <= set(METHODS)
    assert make_cam("faster_scorecam", tm.functional(), "pool").max_channels == 10


@pytest.mark.parametrize("method", NEW_METHODS)
def test_the_new_methods_on_the_trained_shapes_model(shapes_model, method: str) -> None:
    height, width = shapes_model.input_shape[1:3]
    images = generate_shapes(4, seed=3, size=height).images.astype(np.float32)
    result = make_cam(method, shapes_model, "conv4")(images)
    assert result.heatmaps.shape == (4, height, width)
    assert np.isfinite(result.heatmaps).all()
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0
    np.testing.assert_allclose(result.heatmaps.max(axis=(1, 2)), 1.0, atol=1e-6)  # not blank
