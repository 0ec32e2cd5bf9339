"""Gradient attributions against references written here: closed forms on linear models, a
plain GradientTape on logits computed by hand (not through ``models.graph.Probe``), NumPy
backward passes and loops, and the papers' properties (completeness, products).

Reference logits of the tiny CNN (:mod:`tests.models.tiny_models`): the features up to the
pooling come from the model's own layers or a sub-model; flatten and the Dense layer are
written out by hand, without the softmax.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.cam import make_cam
from models.errors import InvalidInputError
from models.heads import last_spatial_layer
from models.saliency import METHODS, make_saliency, reduce_channels
from models.saliency.baselines import gaussian_blur, make_baseline
from models.saliency.occlusion import window_starts
from tests.models import tiny_models as tm

L = keras.layers
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module")
def cnns() -> dict[str, keras.Model]:
    return {form: tm.build(form) for form in tm.FORMS}


def linear_model(seed: int = 0, shape: tuple[int, int, int] = (4, 5, 3)) -> keras.Model:
    """flatten -> Dense(3, softmax): logit c is ``x . W[:, c] + b_c``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape, name="image")
    outputs = L.Dense(3, activation="softmax", name="predictions")(L.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel * 0.05, bias])
    return model


def linear_weights(model: keras.Model, targets: list[int]) -> np.ndarray:
    """``W[:, c]`` of each image's target, reshaped to the input ``(B, H, W, C)``."""
    kernel = model.get_layer("predictions").get_weights()[0]
    return np.stack([kernel[:, c].reshape(model.input_shape[1:]) for c in targets])


def cnn_logits(model: keras.Model, form: str, x: tf.Tensor) -> tf.Tensor:
    """Logits of the tiny CNN: its feature layers, then flatten @ kernel + bias by hand."""
    if form == "sequential":
        for layer in model.layers[:4]:  # rescale, conv1, conv2, pool
            x = layer(x)
    elif form == "functional":
        x = keras.Model(model.input, model.get_layer("pool").output)(x)
    else:
        x = model.get_layer("base")(x)
    dense = model.get_layer("predictions")
    return tf.matmul(tf.reshape(x, (x.shape[0], -1)), dense.kernel) + dense.bias


def tape_gradients(model, form: str, x: np.ndarray, targets: list[int]) -> np.ndarray:
    """d logit[target] / d x by a plain GradientTape on :func:`cnn_logits`."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = cnn_logits(model, form, xt)
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1, batch_dims=1))
    return tape.gradient(score, xt).numpy()


def target_logit(model, form: str, x: np.ndarray, targets: list[int]) -> np.ndarray:
    logits = cnn_logits(model, form, tf.constant(x, tf.float32)).numpy()
    return logits[np.arange(len(x)), targets]


# -- vanilla gradients ---------------------------------------------------------------------


@pytest.mark.parametrize(("preprocess", "scale"), [("raw", 1.0), ("unit", 1 / 255)])
def test_gradients_of_a_linear_model_are_its_weight_rows(preprocess: str, scale: float) -> None:
    model, targets = linear_model(), [2, 0, 1]
    x = np.ascontiguousarray(tm.images(3, seed=1, size=5)[:, :4])  # (3, 4, 5, 3)
    result = make_saliency("gradients", model, preprocess)(x, class_index=targets)
    assert result.maps.shape == x.shape and result.maps.dtype == np.float32
    # preprocess "unit" feeds x / 255 to the model: the chain rule scales the weights.
    np.testing.assert_allclose(result.maps, linear_weights(model, targets) * scale, rtol=1e-5)
    assert result.class_index.tolist() == targets
    probs = np.asarray(model(x / (255.0 if preprocess == "unit" else 1.0)))
    np.testing.assert_allclose(result.probs, probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.score, probs[np.arange(3), targets], rtol=1e-5)


@pytest.mark.parametrize("form", tm.FORMS)
def test_gradients_equal_a_tape_on_hand_written_logits(cnns, form: str) -> None:
    model, x, targets = cnns[form], tm.images(3, seed=2), [1, 2, 0]
    expected = tape_gradients(model, form, x, targets)
    assert np.abs(expected).sum() > 0
    result = make_saliency("gradients", model)(x, class_index=targets)
    np.testing.assert_allclose(result.maps, expected, rtol=RTOL, atol=ATOL)


def test_default_target_is_the_top_prediction_per_image(cnns) -> None:
    model, x = cnns["functional"], tm.images(4)
    top = np.argmax(np.asarray(model(x)), axis=-1)
    assert len(set(top.tolist())) > 1
    method = make_saliency("gradients", model)
    result = method(x)
    assert result.class_index.tolist() == top.tolist()
    np.testing.assert_allclose(result.maps, tape_gradients(model, "functional", x, top.tolist()),
                               rtol=RTOL, atol=ATOL)
    mixed = method(x, class_index=[None, 0, None, 2])
    assert mixed.class_index.tolist() == [top[0], 0, top[2], 2]
    with pytest.raises(InvalidInputError, match=r"\[5\] out of range"):
        method(x, class_index=[None, 5, None, 0])


# -- SmoothGrad ----------------------------------------------------------------------------


def test_smoothgrad_without_noise_is_the_gradient(cnns) -> None:
    model, x, targets = cnns["functional"], tm.images(2, seed=3), [0, 2]
    result = make_saliency("smoothgrad", model, samples=5, noise=0.0)(x, class_index=targets)
    plain = make_saliency("gradients", model)(x, class_index=targets)
    np.testing.assert_allclose(result.maps, plain.maps, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pass_pixels", [None, 2 * tm.SIZE * tm.SIZE * 2])
def test_smoothgrad_is_the_mean_over_the_same_noise(cnns, pass_pixels) -> None:
    """Smilkov et al. 2017, Eq. 3, as a loop over the seeded copies; the same map when the
    copies are split into passes of 2 (7 copies: 4 passes, the last one padded)."""
    model, x, targets, n, level = cnns["nested"], tm.images(2, seed=4), [2, 1], 7, 0.2
    method = make_saliency("smoothgrad", model, samples=n, noise=level, seed=11)
    if pass_pixels is not None:
        method.pass_pixels = pass_pixels
        assert method.copies_per_pass(tf.constant(x)) == 2
    sigma = level * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    expected = np.zeros_like(x)
    for i in range(n):
        noisy = x + sigma * method.noise(i, x.shape).numpy()
        expected += tape_gradients(model, "nested", noisy, targets) / n
    result = method(x, class_index=targets)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(result.maps, tape_gradients(model, "nested", x, targets), atol=1e-4)
    other_seed = make_saliency("smoothgrad", model, samples=n, noise=level, seed=12)
    assert not np.allclose(other_seed(x, class_index=targets).maps, result.maps, atol=1e-6)


# -- integrated gradients ------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", "blur", "uniform"])
@pytest.mark.parametrize("rule", ["trapezoid", "riemann"])
def test_integrated_gradients_are_exact_on_a_linear_model(baseline: str, rule: str) -> None:
    """A linear score has a constant gradient ``w``: ``IG = (x - x') * w`` for any steps."""
    model, targets = linear_model(1), [1, 2]
    x = np.ascontiguousarray(tm.images(2, seed=5, size=5)[:, :4])
    method = make_saliency("integrated_gradients", model, steps=3, baseline=baseline,
                           rule=rule, seed=4)
    result = method(x, class_index=targets)
    reference = make_baseline(baseline, tf.constant(x), seed=4).numpy()
    w = linear_weights(model, targets)
    np.testing.assert_allclose(result.maps, (x - reference) * w, rtol=1e-4, atol=1e-5)
    gain = ((x - reference) * w).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(result.extras["score_gain"], gain, rtol=1e-4, atol=1e-4)
    assert result.extras["completeness_gap"].max() < 1e-4


def shapes_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The shapes model's logits: its own layers up to ``gap``, the Dense layer by hand."""
    pooled = np.asarray(keras.Model(model.input, model.get_layer("gap").output)(x))
    kernel, bias = model.get_layer("predictions").get_weights()
    return pooled @ kernel + bias


@pytest.mark.parametrize(("baseline", "steps"), [("black", 128), ("blur", 128), ("uniform", 256)])
def test_integrated_gradients_are_complete_on_the_shapes_model(shapes_model, baseline: str,
                                                               steps: int) -> None:
    """Sundararajan et al. 2017, Prop. 1: the attributions sum to F(x) - F(x') within 1 % on
    the trained ReLU network. Measured worst gap over 12 images, trapezoid rule: black and blur
    0.4 % / 0.3 % at 128 steps (1 % at 64); uniform noise crosses more ReLU kinks along the
    path, 2.2 % at 128 steps, 0.5 % at 256."""
    from models.shapes_data import generate_shapes

    x = generate_shapes(3, seed=21).images.astype(np.float32)
    result = make_saliency("integrated_gradients", shapes_model, steps=steps,
                           baseline=baseline, seed=3)(x)
    reference = make_baseline(baseline, tf.constant(x), seed=3).numpy()
    chosen = np.arange(3), result.class_index
    gain = shapes_logits(shapes_model, x)[chosen] - shapes_logits(shapes_model, reference)[chosen]
    np.testing.assert_allclose(result.extras["score_gain"], gain, rtol=1e-4, atol=1e-4)
    total = result.maps.astype(np.float64).sum(axis=(1, 2, 3))
    gap = np.abs(total - gain) / np.abs(gain)
    assert gap.max() < 0.01, gap
    np.testing.assert_allclose(result.extras["completeness_gap"], gap, atol=1e-4)


def test_integrated_gradients_refine_only_the_images_over_the_tolerance(shapes_model) -> None:
    """With ``tolerance`` the images whose gap is over it get doubled steps until within it
    (or ``max_steps``); each refined image equals integrated gradients at its final steps on it
    alone, the others keep their first result, and the gaps are checked against the logits by
    hand (f(x) - f(black) from the shapes model's own layers)."""
    from models.shapes_data import generate_shapes

    x = generate_shapes(8, seed=4).images.astype(np.float32)
    coarse = make_saliency("integrated_gradients", shapes_model, steps=4)(x)
    assert (coarse.extras["completeness_gap"] > 0.01).sum() >= 2  # some need refining
    assert (coarse.extras["steps"] == 4).all()
    fine = make_saliency("integrated_gradients", shapes_model, steps=4, tolerance=0.01,
                         max_steps=512)
    result = fine(x)
    steps = result.extras["steps"]
    chosen = np.arange(len(x)), result.class_index
    gain = shapes_logits(shapes_model, x)[chosen] - shapes_logits(shapes_model, 0 * x)[chosen]
    gap = np.abs(result.maps.astype(np.float64).sum(axis=(1, 2, 3)) - gain) / np.abs(gain)
    assert ((gap < 0.0101) | (steps == 512)).all(), (gap, steps)
    assert set(np.unique(steps)) <= {4, 8, 16, 32, 64, 128, 256, 512} and steps.max() > 4
    kept = steps == 4
    np.testing.assert_array_equal(result.maps[kept], coarse.maps[kept])
    for i in np.flatnonzero(~kept)[:2]:
        alone = make_saliency("integrated_gradients", shapes_model, steps=int(steps[i]))(
            x[i:i + 1], class_index=[int(result.class_index[i])])
        np.testing.assert_allclose(result.maps[i], alone.maps[0], rtol=1e-4, atol=1e-4)
    assert fine.traces >= 2  # the first step and at least one finer one


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 8, "max_steps": 4}, "max_steps must be in steps"),
    ({"steps": 8, "max_steps": 8192}, "max_steps must be in steps"),
    ({"tolerance": -0.1}, "tolerance must be >= 0"),
])
def test_integrated_gradients_refuse_bad_refinement(shapes_model, options: dict,
                                                    message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make_saliency("integrated_gradients", shapes_model, **options)


def test_integrated_gradients_equal_a_tape_quadrature(cnns) -> None:
    """Eq. 3 by hand: trapezoid over ``steps`` intervals of the tape gradients on the path."""
    model, x, targets, steps = cnns["sequential"], tm.images(2, seed=6), [0, 1], 4
    method = make_saliency("integrated_gradients", model, steps=steps)
    method.pass_pixels = 3 * 2 * tm.SIZE * tm.SIZE  # 5 points in passes of 3
    total = np.zeros_like(x)
    for k in range(steps + 1):
        weight = (0.5 if k in (0, steps) else 1.0) / steps
        total += weight * tape_gradients(model, "sequential", x * k / steps, targets)
    result = method(x, class_index=targets)
    np.testing.assert_allclose(result.maps, x * total, rtol=1e-4, atol=1e-5)


def test_blur_baseline_is_a_mirrored_gaussian_blur() -> None:
    x = tm.images(2, seed=7)
    sigma, radius = 1.6, 5  # ceil(3 * 1.6)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(x.astype(np.float64), [(0, 0), (radius, radius), (radius, radius), (0, 0)],
                    mode="symmetric")
    rows = sum(t * padded[:, i:i + tm.SIZE] for i, t in enumerate(taps))
    expected = sum(t * rows[:, :, i:i + tm.SIZE] for i, t in enumerate(taps))
    np.testing.assert_allclose(gaussian_blur(tf.constant(x), sigma).numpy(), expected,
                               rtol=1e-4, atol=1e-3)
    flat = np.full((1, 8, 8, 3), 40.0, np.float32)
    np.testing.assert_allclose(make_baseline("blur", tf.constant(flat)).numpy(), flat, rtol=1e-5)


# -- guided backprop and guided Grad-CAM ---------------------------------------------------


def relu_mlp(nested: bool, seed: int = 0) -> keras.Model:
    """flatten -> Dense(6, relu) -> Dense(5) + ReLU layer -> Dense(4) + Activation("relu")
    -> Dense(3, softmax); with ``nested`` the hidden layers form a model of their own."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3, 3, 2), name="image")
    hidden = [L.Dense(6, activation="relu", name="d1"), L.Dense(5, name="d2"),
              L.ReLU(name="r2"), L.Dense(4, name="d3"), L.Activation("relu", name="r3")]
    x = L.Flatten(name="flatten")(inputs)
    if nested:
        inner_in = keras.Input((18,), name="inner_in")
        y = inner_in
        for layer in hidden:
            y = layer(y)
        x = keras.Model(inner_in, y, name="inner")(x)
    else:
        for layer in hidden:
            x = layer(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="out")(x))


def guided_backward(model: keras.Model, x: np.ndarray, targets: list[int],
                    sign: float = 1.0) -> np.ndarray:
    """Springenberg et al. 2015, Fig. 1 by hand: ``R^l = (f^l > 0)(R^{l+1} > 0) R^{l+1}``,
    from ``R = sign * d logit / d h3``."""
    owner = model.get_layer("inner") if any(lay.name == "inner" for lay in model.layers) \
        else model
    weights = [owner.get_layer(name).get_weights() for name in ("d1", "d2", "d3")]
    w_out = model.get_layer("out").get_weights()[0]
    h = x.reshape(len(x), -1).astype(np.float64)
    pre = []
    for kernel, bias in weights:
        z = h @ kernel + bias
        pre.append(z)
        h = np.maximum(z, 0.0)
    signal = sign * w_out[:, targets].T.astype(np.float64)  # d logit / d h3, (B, 4)
    for (kernel, _), z in zip(reversed(weights), reversed(pre), strict=True):
        signal = signal * (z > 0) * (signal > 0)
        signal = signal @ kernel.T
    return signal.reshape(x.shape)


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize(("target", "sign"), [("class", 1.0), ("negative", -1.0)])
def test_guided_backprop_equals_a_hand_backward_pass(nested: bool, target: str,
                                                     sign: float) -> None:
    model, targets = relu_mlp(nested), [0, 2, 1, 0]
    x = np.random.default_rng(8).uniform(0, 255, (4, 3, 3, 2)).astype(np.float32) / 50.0
    expected = guided_backward(model, x, targets, sign)
    result = make_saliency("guided_backprop", model, target=target)(x, class_index=targets)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.probs, np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    plain = make_saliency("gradients", model, target=target)(x, class_index=targets).maps
    assert np.abs(expected).sum() > 0 and not np.allclose(plain, expected, atol=1e-3)
    # The guided signal is not linear in the score: "negative" is no mere sign flip.
    assert not np.allclose(expected, -guided_backward(model, x, targets, -sign), atol=1e-3)


def test_guided_backprop_through_folded_batchnorm_and_relu_layers() -> None:
    """A conv net whose ReLUs are separate layers after conv + batch-norm pairs (folded by the
    probe): the guided map equals a tape over the layers called one by one, each ReLU layer
    replaced by a ReLU with the guided gradient."""

    @tf.custom_gradient
    def reference_relu(h):
        def grad(dy):
            return dy * tf.cast(h > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)
        return tf.maximum(h, 0.0), grad

    model, x, targets = tm.batchnorm("sequential"), tm.images(2, seed=13), [1, 2]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        h = xt
        for layer in model.layers[:-1]:  # up to gap; the Dense head by hand
            h = reference_relu(h) if isinstance(layer, L.ReLU) else layer(h, training=False)
        dense = model.get_layer("predictions")
        logits = tf.matmul(h, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1, batch_dims=1))
    expected = tape.gradient(score, xt).numpy()
    method = make_saliency("guided_backprop", model)
    assert len(method.guided._folds) == 4  # both conv + batch-norm pairs run folded
    result = method(x, class_index=targets)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-3, atol=1e-6)
    assert np.abs(expected).sum() > 0


@pytest.mark.parametrize("form", ["functional", "nested"])
def test_guided_gradcam_is_guided_backprop_times_gradcam(cnns, form: str) -> None:
    """Selvaraju et al. 2017, Sec. 3: the point-wise product, the CAM shared by channels."""
    model, x, targets = cnns[form], tm.images(3, seed=9), [2, 0, 1]
    layer = last_spatial_layer(model)
    result = make_saliency("guided_gradcam", model)(x, class_index=targets)
    guided = make_saliency("guided_backprop", model)(x, class_index=targets).maps
    heat = make_cam("gradcam", model, layer)(x, class_index=targets).heatmaps
    np.testing.assert_allclose(result.maps, guided * heat[..., None], rtol=1e-5, atol=1e-8)
    assert result.class_index.tolist() == targets
    assert np.abs(result.maps).sum() > 0
    conv2 = make_saliency("guided_gradcam", model, layer=tm.PATHS[form]["conv2"])(x, targets)
    assert not np.allclose(conv2.maps, result.maps)


def cam_by_hand(model, x: np.ndarray, targets: list[int], sign: float) -> np.ndarray:
    """Grad-CAM of ``sign * logit`` on the tiny CNN's pool layer (Selvaraju et al. 2017,
    Eq. 1-2; Sec. 5.3 for sign -1), upsampled bilinearly and min-max scaled, by hand."""
    acts = tf.constant(tm.features_by_hand(model, "functional", "pool", x))
    dense = model.get_layer("predictions")
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logits = tf.matmul(tf.reshape(acts, (len(x), -1)), dense.kernel) + dense.bias
        score = sign * tf.reduce_sum(tf.gather(logits, tf.constant(targets), axis=1,
                                               batch_dims=1))
    alpha = tape.gradient(score, acts).numpy().mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((alpha * acts.numpy()).sum(axis=-1), 0.0)
    up = tf.image.resize(cam[..., None], (tm.SIZE, tm.SIZE), method="bilinear").numpy()[..., 0]
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    return (up - low) / np.where(high > low, high - low, 1.0)


@pytest.mark.parametrize(("target", "sign"), [("class", 1.0), ("negative", -1.0)])
def test_guided_gradcam_cam_factor_equals_a_hand_gradcam(cnns, target: str, sign: float) -> None:
    model, x, targets = cnns["functional"], tm.images(3, seed=14), [0, 1, 2]
    result = make_saliency("guided_gradcam", model, target=target)(x, class_index=targets)
    heat = cam_by_hand(model, x, targets, sign)
    np.testing.assert_allclose(result.extras["gradcam"], heat, atol=2e-4)
    guided = make_saliency("guided_backprop", model, target=target)(x, class_index=targets)
    np.testing.assert_allclose(result.maps, guided.maps * result.extras["gradcam"][..., None],
                               rtol=1e-5, atol=1e-8)


# -- occlusion -----------------------------------------------------------------------------


def test_window_starts_cover_the_border() -> None:
    assert window_starts(16, 4, 4) == [0, 4, 8, 12]
    assert window_starts(16, 5, 4) == [0, 4, 8, 11]  # one more window, flush with the border
    assert window_starts(16, 7, 5) == [0, 5, 9]
    assert window_starts(16, 20, 3) == [0]  # clipped to the image


def occlusion_loop(model, x: np.ndarray, targets: list[int], window: int, stride: int,
                   fill: float) -> np.ndarray:
    """Zeiler & Fergus 2014, one occluded image per forward pass; mean drop per pixel."""
    base = target_logit(model, "functional", x, targets)
    drops, counts = np.zeros(x.shape[:3]), np.zeros(x.shape[1:3])
    for y0 in window_starts(tm.SIZE, window, stride):
        for x0 in window_starts(tm.SIZE, window, stride):
            occluded = x.copy()
            occluded[:, y0:y0 + window, x0:x0 + window] = fill
            drop = base - target_logit(model, "functional", occluded, targets)
            drops[:, y0:y0 + window, x0:x0 + window] += drop[:, None, None]
            counts[y0:y0 + window, x0:x0 + window] += 1
    assert counts.min() >= 1
    return np.repeat((drops / counts)[..., None] / 3, 3, axis=-1)


@pytest.mark.parametrize(("window", "stride", "baseline", "fill"),
                         [(5, 4, "grey", 127.5), (4, 4, "black", 0.0), (7, 5, "black", 0.0),
                          (20, 3, "grey", 127.5)])
def test_occlusion_equals_a_loop_over_windows(cnns, window, stride, baseline, fill) -> None:
    model, x, targets = cnns["functional"], tm.images(2, seed=10), [1, 0]
    expected = occlusion_loop(model, x, targets, window, stride, fill)
    method = make_saliency("occlusion", model, window=window, stride=stride, baseline=baseline)
    method.pass_pixels = 3 * 2 * tm.SIZE * tm.SIZE  # 3 occluded copies per pass, last padded
    result = method(x, class_index=targets)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reduce_channels(result.maps), expected.sum(axis=-1), atol=1e-5)


# -- target "negative" --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "options"), [
    ("gradients", {}), ("smoothgrad", {"samples": 3, "noise": 0.1}),
    ("integrated_gradients", {"steps": 6}), ("occlusion", {"window": 6, "stride": 5}),
])
def test_negative_target_negates_methods_linear_in_the_score(cnns, method: str,
                                                             options: dict) -> None:
    """Gradients, their averages and score differences are linear in the explained score, so
    explaining ``-logit`` negates the map (guided backprop is not: tested above)."""
    model, x, targets = cnns["functional"], tm.images(2, seed=15), [2, 1]
    positive = make_saliency(method, model, **options)(x, class_index=targets)
    negative = make_saliency(method, model, target="negative", **options)(x, targets)
    np.testing.assert_allclose(negative.maps, -positive.maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(negative.score, positive.score)  # still the class probability
    for key, value in positive.extras.items():
        expected = value if key in ("completeness_gap", "steps") else -value
        np.testing.assert_allclose(negative.extras[key], expected, rtol=1e-4, atol=1e-6)


# -- shared helpers and options ------------------------------------------------------------


def test_reduce_channels() -> None:
    maps = np.array([[[[1.0, -3.0, 0.5]], [[-0.5, 0.25, 0.0]]]], np.float32)  # (1, 2, 1, 3)
    np.testing.assert_allclose(reduce_channels(maps), [[[-1.5], [-0.25]]])
    np.testing.assert_allclose(reduce_channels(maps, "max_abs"), [[[3.0], [0.5]]])
    with pytest.raises(InvalidInputError, match="'mean'"):
        reduce_channels(maps, "mean")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_signed_maps_at_input_size(cnns, method: str) -> None:
    options = {"smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 4},
               "occlusion": {"window": 6, "stride": 6}}.get(method, {})
    result = make_saliency(method, cnns["sequential"], **options)(tm.images(2, seed=12))
    assert result.maps.shape == (2, tm.SIZE, tm.SIZE, 3) and result.maps.dtype == np.float32
    assert np.isfinite(result.maps).all() and np.abs(result.maps).sum() > 0
    assert result.class_index.shape == (2,) and result.probs.shape == (2, tm.CLASSES)


@pytest.mark.parametrize(("method", "options", "match"), [
    ("gradients++", {}, "gradients\\+\\+"),
    ("smoothgrad", {"samples": 0}, "samples must be .* got 0"),
    ("smoothgrad", {"noise": 1.5}, "got 1.5"),
    ("integrated_gradients", {"steps": 2.5}, "steps must be .* got 2.5"),
    ("integrated_gradients", {"baseline": "white"}, "'white'"),
    ("integrated_gradients", {"rule": "simpson"}, "'simpson'"),
    ("occlusion", {"window": 0}, "window must be .* got 0"),
    ("occlusion", {"window": 3, "stride": 5}, "stride 5 .* window 3"),
    ("occlusion", {"steps": 3}, "no option.*steps"),
    ("gradients", {"samples": 3}, "no option.*samples"),
    ("gradients", {"target": "positive"}, "'positive'"),
])
def test_bad_methods_and_options_raise(cnns, method: str, options: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        make_saliency(method, cnns["functional"], **options)


def test_occlusion_refuses_more_window_positions_than_the_cap() -> None:
    from models.saliency.occlusion import MAX_WINDOWS, Occlusion

    occ = Occlusion.__new__(Occlusion)  # the corner arithmetic needs no model
    occ.window, occ.stride = 8, 1
    side = 8 + int(MAX_WINDOWS ** 0.5)  # (side - 7)^2 positions: just past the cap
    with pytest.raises(InvalidInputError, match=f"at most {MAX_WINDOWS}"):
        occ.corners(side, side)
    assert len(occ.corners(side - 1, side - 1)) <= MAX_WINDOWS


def test_the_contract_caps_max_steps_where_the_engine_does() -> None:
    from models.saliency.integrated_gradients import MAX_STEPS
    from worker.contract import MAX_REFINED_STEPS, OPTION_DEFAULTS

    assert MAX_REFINED_STEPS == MAX_STEPS
    defaults = OPTION_DEFAULTS["saliency"]
    assert defaults["steps"] <= defaults["max_steps"] <= MAX_STEPS
