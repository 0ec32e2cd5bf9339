"""The Grad-CAM family against references written here: a plain GradientTape on logits computed
by hand for the gradients, and the papers' formulas in NumPy for the weights.

Reference pipeline (independent of ``models.cam`` and ``models.graph``): the target layer's
activations ``A`` come from a sub-model (:func:`tiny_models.features_by_hand`); the rest of the
network is written out by hand — max-pool, flatten, ``logits = features @ kernel + bias`` of the
Dense layer, without its softmax — and a GradientTape gives ``dy^c/dA``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.cam import METHODS, make_cam
from models.errors import InvalidInputError
from models.heads import last_spatial_layer
from tests.models import tiny_models as tm

H = W = tm.SIZE
ATOL = 2e-4  # compiled engine vs eager reference, after min-max scaling


def graph_cam(method: str, model, layer: str):
    """The CAM class of ``method``, built directly; :func:`make_cam` (the production path) is
    checked against the same references in :func:`test_make_cam_equals_the_reference`."""
    return METHODS[method](model, layer)


@pytest.fixture(scope="module")
def cnns() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


def reference_tape(model, form: str, layer: str, x: np.ndarray, targets):
    """``(A, dy/dA, logits)`` for CNN layer "conv2" or "pool", by hand."""
    acts = tf.constant(tm.features_by_hand(model, form, layer, x))
    dense = model.get_layer("predictions")
    with tf.GradientTape() as tape:
        tape.watch(acts)
        pooled = acts if layer == "pool" else tf.nn.max_pool2d(acts, 2, 2, "VALID")
        features = tf.reshape(pooled, (len(x), -1))
        logits = tf.matmul(features, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1, batch_dims=1))
    return acts.numpy(), tape.gradient(score, acts).numpy(), logits.numpy()


def upsample_and_scale(cam: np.ndarray) -> np.ndarray:
    """relu'd ``(B, h, w)`` map -> bilinear ``(B, H, W)`` -> each map min-max scaled to [0, 1]."""
    up = tf.image.resize(cam[..., None], (H, W), method="bilinear").numpy()[..., 0]
    low = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (up - low) / np.where(span > 0, span, 1.0), 0.0)


def gradcam_formula(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Selvaraju et al. 2017, Eq. 1-2: alpha_k = mean_ij g; L = relu(sum_k alpha_k A^k)."""
    alpha = grads.mean(axis=(1, 2), keepdims=True)
    return np.maximum((alpha * acts).sum(axis=-1), 0.0)


def gradcam_pp_formula(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Chattopadhay et al. 2018, Eq. 19 (exponential score): a_ij = g^2 / (2 g^2 + sum A g^3)."""
    out = np.zeros(acts.shape[:3])
    for b in range(acts.shape[0]):
        for k in range(acts.shape[-1]):
            g, a = grads[b, ..., k].astype(np.float64), acts[b, ..., k].astype(np.float64)
            denom = 2.0 * g**2 + a.sum() * g**3
            alpha = np.zeros_like(g)
            nonzero = denom != 0
            alpha[nonzero] = g[nonzero] ** 2 / denom[nonzero]
            weight = np.sum(alpha * np.maximum(g, 0.0))
            out[b] += weight * a
    return np.maximum(out, 0.0)


def layercam_formula(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Jiang et al. 2021, Eq. 5-6: M = relu(sum_k relu(g^k_ij) A^k_ij)."""
    return np.maximum((np.maximum(grads, 0.0) * acts).sum(axis=-1), 0.0)


FORMULAS = {"gradcam": gradcam_formula, "gradcam++": gradcam_pp_formula,
            "layercam": layercam_formula}


@pytest.mark.parametrize("form", tm.FORMS)
@pytest.mark.parametrize("layer", ["conv2", "pool"])
@pytest.mark.parametrize("method", sorted(FORMULAS))
def test_gradient_methods_equal_the_reference(cnns, form: str, layer: str, method: str) -> None:
    check_against_reference(graph_cam(method, cnns[form], tm.PATHS[form][layer]), form, layer,
                            method)


@pytest.mark.parametrize("method", sorted(FORMULAS))
def test_make_cam_equals_the_reference(cnns, method: str) -> None:
    check_against_reference(make_cam(method, cnns["nested"], "base/conv2"), "nested", "conv2",
                            method)


def check_against_reference(cam, form: str, layer: str, method: str) -> None:
    model, x, targets = cam.probe.model, tm.images(3, seed=5), [0, 2, 1]
    acts, grads, logits = reference_tape(model, form, layer, x, targets)
    # The hand-written head is the model's own head: softmax(logits) is what the model outputs.
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model(x), rtol=1e-5, atol=1e-6)
    assert np.abs(grads).sum() > 0
    expected = upsample_and_scale(FORMULAS[method](acts, grads))

    result = cam(x, class_index=targets)
    assert result.heatmaps.shape == (3, H, W) and result.heatmaps.dtype == np.float32
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0
    assert result.layer == tm.PATHS[form][layer]
    np.testing.assert_allclose(result.heatmaps, expected, atol=ATOL)
    assert result.class_index.tolist() == targets
    probs = np.asarray(model(x))
    np.testing.assert_allclose(result.probs, probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.score, probs[np.arange(3), targets], rtol=1e-5, atol=1e-6)


def test_gradcam_on_a_residual_add() -> None:
    model, x, targets = tm.residual(), tm.images(2, seed=6), [1, 2]
    acts = tf.constant(keras.Model(model.input, model.get_layer("add").output)(x))
    dense = model.get_layer("predictions")
    with tf.GradientTape() as tape:
        tape.watch(acts)
        features = tf.reduce_mean(tf.nn.relu(acts), axis=(1, 2))  # ReLU, then GAP
        logits = tf.matmul(features, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1, batch_dims=1))
    grads = tape.gradient(score, acts).numpy()
    expected = upsample_and_scale(gradcam_formula(acts.numpy(), grads))
    result = graph_cam("gradcam", model, "add")(x, class_index=targets)
    np.testing.assert_allclose(result.heatmaps, expected, atol=ATOL)


@pytest.mark.parametrize("method", sorted(FORMULAS))
def test_frozen_nested_base_equals_the_reference(method: str) -> None:
    """Transfer learning freezes the base (``trainable = False``); its layers still explain."""
    model = tm.nested()
    model.get_layer("base").trainable = False
    check_against_reference(graph_cam(method, model, "base/conv2"), "nested", "conv2", method)


@pytest.mark.parametrize("method", sorted(FORMULAS))
def test_batchnorm_model_equals_the_reference(method: str) -> None:
    """Folded conv + batch-norm pairs upstream of the layer give the same maps."""
    model, x, targets = tm.batchnorm("functional"), tm.images(3, seed=8), [2, 0, 1]
    acts = tf.constant(keras.Model(model.input, model.get_layer("b2_relu").output)(x))
    dense = model.get_layer("predictions")
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logits = tf.matmul(tf.reduce_mean(acts, axis=(1, 2)), dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1, batch_dims=1))
    grads = tape.gradient(score, acts).numpy()
    assert np.abs(grads).sum() > 0
    expected = upsample_and_scale(FORMULAS[method](acts.numpy(), grads))
    cam = graph_cam(method, model, "b2_relu")
    assert len(cam.probe._folds) == 4  # both pairs folded
    np.testing.assert_allclose(cam(x, class_index=targets).heatmaps, expected, atol=ATOL)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_micro_batches_give_the_same_maps(cnns, method: str) -> None:
    x, targets = tm.images(5, seed=9), [0, 1, 2, 1, 0]
    whole = graph_cam(method, cnns["functional"], "conv2")
    apart = graph_cam(method, cnns["functional"], "conv2")
    apart.chunk_pixels = 2 * H * W  # micro-batches of 2, 2 and 1 images
    one, two = whole(x, class_index=targets), apart(x, class_index=targets)
    np.testing.assert_allclose(two.heatmaps, one.heatmaps, atol=1e-5)
    np.testing.assert_array_equal(two.class_index, one.class_index)
    np.testing.assert_allclose(two.probs, one.probs, rtol=1e-6)


def scorecam_reference(model, acts: np.ndarray, x: np.ndarray, targets: list[int]) -> np.ndarray:
    """Wang et al. 2020, Eq. 6-8, one masked forward pass per image and channel."""
    out = np.zeros(acts.shape[:3])
    for b in range(len(x)):
        for k in range(acts.shape[-1]):
            up = tf.image.resize(acts[b, ..., k, None], (H, W), method="bilinear").numpy()[..., 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
            masked = x[b] * mask[..., None]
            weight = float(np.asarray(model(masked[None]))[0, targets[b]])  # softmax score
            out[b] += weight * acts[b, ..., k]
    return upsample_and_scale(np.maximum(out, 0.0))


@pytest.mark.parametrize("form", tm.FORMS)
def test_scorecam_equals_a_loop_reference(cnns, form: str) -> None:
    model, x, targets = cnns[form], tm.images(2, seed=7), [2, 0]
    acts = tm.features_by_hand(model, form, "pool", x)  # 6 channels
    expected = scorecam_reference(model, acts, x, targets)
    result = make_cam("scorecam", model, tm.PATHS[form]["pool"])(x, class_index=targets)
    assert result.class_index.tolist() == targets
    np.testing.assert_allclose(result.heatmaps, expected, atol=ATOL)
    # 4 channels per forward pass (8 masked images / 2): 6 channels take 2 passes, the last
    # one padded with 2 empty channels.
    chunked = make_cam("scorecam", model, tm.PATHS[form]["pool"])
    chunked.masked_batch = 8
    result = chunked(x, class_index=targets)
    np.testing.assert_allclose(result.heatmaps, expected, atol=ATOL)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_image_gets_its_own_target(cnns, method: str) -> None:
    model, x = cnns["functional"], tm.images(3, seed=8)
    cam = graph_cam(method, model, "conv2")
    batch = cam(x, class_index=[0, 2, 1])
    alone = cam(x[2:3], class_index=1)
    np.testing.assert_allclose(batch.heatmaps[2], alone.heatmaps[0], atol=ATOL)
    wrong = cam(x[2:3], class_index=0)  # image 0's target
    if method == "eigencam":  # the activations' first principal component: no class in it
        np.testing.assert_allclose(wrong.heatmaps[0], alone.heatmaps[0], atol=1e-6)
    else:
        assert np.abs(batch.heatmaps[2] - wrong.heatmaps[0]).max() > 0.05


@pytest.mark.parametrize("form", tm.FORMS)
def test_default_target_is_the_top_prediction_per_image(cnns, form: str) -> None:
    model, x = cnns[form], tm.images(4)
    top = np.argmax(np.asarray(model(x)), axis=-1)
    assert len(set(top.tolist())) > 1  # the images disagree, so one target for all would fail
    cam = make_cam("gradcam", model, last_spatial_layer(model))
    result = cam(x)
    assert result.class_index.tolist() == top.tolist()
    np.testing.assert_allclose(result.heatmaps, cam(x, class_index=top).heatmaps, atol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_heatmaps_are_in_unit_range_at_input_size(cnns, method: str) -> None:
    model = cnns["sequential"]
    result = graph_cam(method, model, last_spatial_layer(model))(tm.images(2, seed=9))
    assert result.heatmaps.shape == (2, H, W)
    assert result.heatmaps.min() >= 0.0 and result.heatmaps.max() <= 1.0
    for heat in result.heatmaps:
        assert heat.min() == pytest.approx(0.0) and heat.max() == pytest.approx(1.0)


def test_the_usual_default_layer_is_the_last_4d_layer(cnns) -> None:
    assert last_spatial_layer(cnns["sequential"]) == "pool"
    assert last_spatial_layer(cnns["functional"]) == "pool"
    assert last_spatial_layer(cnns["nested"]) == "base/pool"
    assert last_spatial_layer(tm.residual()) == "relu"


@pytest.mark.parametrize("layer", [None, ""])
def test_the_layer_is_required(cnns, layer) -> None:
    with pytest.raises(TypeError, match="last_spatial_layer"):
        make_cam("gradcam", cnns["functional"], layer)
    with pytest.raises(TypeError):
        make_cam("gradcam", cnns["functional"])  # type: ignore[call-arg]


@pytest.mark.parametrize("layer", ["flatten", "predictions"])
def test_non_spatial_layer_raises(cnns, layer: str) -> None:
    with pytest.raises(ValueError, match=layer):
        make_cam("gradcam", cnns["nested"], layer)


def test_unknown_method_and_bad_class_index_raise(cnns) -> None:
    assert set(METHODS) == {"gradcam", "gradcam++", "layercam", "scorecam", "hirescam",
                            "xgradcam", "eigencam", "ablationcam", "faster_scorecam"}
    with pytest.raises(InvalidInputError, match="gradcam\\+\\+\\+"):
        make_cam("gradcam+++", cnns["functional"], "pool")
    cam = make_cam("gradcam", cnns["functional"], "pool")
    with pytest.raises(InvalidInputError, match="3 entries"):
        cam(tm.images(2), class_index=[0, 1, 2])
    # The model has 3 classes. Under XLA a gather clamps a bad index instead of failing, so
    # without a check class 7 came back as "class 7" with class 2's score.
    with pytest.raises(InvalidInputError, match=r"\[7\] out of range"):
        cam(tm.images(2), class_index=[7, 1])
    with pytest.raises(ValueError, match=r"\[-2, -2\] out of range"):
        cam(tm.images(2), class_index=-2)


def test_none_in_a_class_list_means_that_images_top_class(cnns) -> None:
    """A batch gathered from several jobs mixes "top class" and given classes per image."""
    cam = make_cam("gradcam", cnns["functional"], "pool")
    x = tm.images(3)
    mixed = cam(x, class_index=[None, 2, None])
    top = cam(x)
    given = cam(x, class_index=2)
    assert mixed.class_index.tolist() == [top.class_index[0], 2, top.class_index[2]]
    for i, ref in ((0, top), (1, given), (2, top)):
        np.testing.assert_allclose(mixed.heatmaps[i], ref.heatmaps[i], atol=1e-6)
    with pytest.raises(InvalidInputError, match=r"\[5\] out of range"):
        cam(x, class_index=[None, 5, None])


def test_micro_batches_are_capped(cnns) -> None:
    """However small ``chunk_pixels``, a batch is traced as at most 4 copies of the model."""
    from models.cam.base import MAX_MICRO_BATCHES

    cam = graph_cam("gradcam", cnns["functional"], "conv2")
    cam.chunk_pixels = H * W  # would be one image per micro-batch
    sizes: list[int] = []
    probe = cam.probe

    class Counting:
        def __getattr__(self, name: str):
            return getattr(probe, name)

        def __call__(self, images, tape=None):
            sizes.append(int(images.shape[0]))
            return probe(images, tape=tape)

    cam.probe = Counting()  # type: ignore[assignment]
    x = tm.images(10, seed=10)
    result = cam(x, class_index=[1] * 10)
    assert sizes == [3, 3, 3, 1] and len(sizes) <= MAX_MICRO_BATCHES
    reference = graph_cam("gradcam", cnns["functional"], "conv2")(x, class_index=[1] * 10)
    np.testing.assert_allclose(result.heatmaps, reference.heatmaps, atol=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_pass_batches_share_a_trace_and_match_each_image_alone(cnns, method: str) -> None:
    """Batches of any size that run as one pass share one trace (its batch dimension open)
    for the methods whose weights do not depend on the batch size; Score-CAM (and its faster
    variant) and Ablation-CAM trace each size. Either way each image's map is the one it gets
    alone."""
    cam = graph_cam(method, cnns["functional"], "conv2")
    x, targets = tm.images(6, seed=12), [0, 1, 2, 1, 0, 2]
    alone = [cam(x[i:i + 1], class_index=[t]) for i, t in enumerate(targets)]
    for n in (2, 3, 5, 6):
        batch = cam(x[:n], class_index=targets[:n])
        for i in range(n):
            np.testing.assert_allclose(batch.heatmaps[i], alone[i].heatmaps[0], atol=1e-5)
            np.testing.assert_allclose(batch.probs[i], alone[i].probs[0], rtol=1e-5, atol=1e-6)
    assert cam.traces == (5 if method in ("scorecam", "faster_scorecam", "ablationcam") else 1)


def test_batches_past_one_pass_keep_a_trace_per_size(cnns) -> None:
    """Micro-batched sizes (past ``one_pass``) are traced each on its own, with the batch
    known; the sizes up to it share the open trace."""
    cam = graph_cam("gradcam", cnns["functional"], "conv2")
    cam.chunk_pixels = 2 * H * W
    x = tm.images(5, seed=13)
    for n in (1, 2, 1, 5, 4, 5):
        cam(x[:n], class_index=[1] * n)
    assert cam.traces == 3  # the open one (1 and 2), 5, 4
