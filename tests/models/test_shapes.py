"""The ``shapes`` demo data and model: determinism, box ground truth, accuracy, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.shapes_data import CLASSES, generate_pairs, generate_shapes

# Noise is uniform with std <= 12, i.e. within +-12*sqrt(3) ~ 20.8 grey levels, plus rounding.
COLOR_TOLERANCE = 22


def shape_colored(images: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Pixels within noise of the shape colour: bool ``(n, H, W)`` from ``(n, H, W, 3)``."""
    diff = np.abs(images.astype(np.int16) - colors[:, None, None, :].astype(np.int16))
    return diff.max(axis=-1) <= COLOR_TOLERANCE


def assert_tight_boxes(images: np.ndarray, boxes: np.ndarray, colors: np.ndarray) -> None:
    """Every edge row/column of each box holds shape-coloured pixels, and the box is mostly
    shape-coloured while the background outside it is not."""
    colored = shape_colored(images, colors)
    size = images.shape[1]
    outside_fractions = []
    for mask, (y0, x0, y1, x1) in zip(colored, boxes, strict=True):
        assert 0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size
        inside = mask[y0:y1, x0:x1]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert inside.mean() > 0.25
        outside = mask.copy()
        outside[y0:y1, x0:x1] = False
        outside_fractions.append(outside.sum() / (size * size - inside.size))
    assert np.mean(outside_fractions) < 0.02


def test_shapes_layout_and_balance() -> None:
    batch = generate_shapes(120, seed=1)
    assert batch.images.shape == (120, 64, 64, 3) and batch.images.dtype == np.uint8
    assert batch.labels.shape == (120,) and batch.labels.dtype == np.int64
    assert batch.boxes.shape == (120, 4) and batch.boxes.dtype == np.int64
    assert len(CLASSES) >= 6 and len(set(CLASSES)) == len(CLASSES)
    np.testing.assert_array_equal(np.bincount(batch.labels), [120 // len(CLASSES)] * len(CLASSES))
    assert generate_shapes(3, seed=1, size=40).images.shape == (3, 40, 40, 3)


def test_generation_is_deterministic_per_seed() -> None:
    first, again, other = (generate_shapes(40, seed=s) for s in (3, 3, 4))
    for name in ("images", "labels", "boxes", "colors"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.images, other.images)
    pairs, pairs_again = generate_pairs(20, seed=3), generate_pairs(20, seed=3)
    np.testing.assert_array_equal(pairs.images, pairs_again.images)
    np.testing.assert_array_equal(pairs.boxes, pairs_again.boxes)
    assert not np.array_equal(pairs.images, generate_pairs(20, seed=4).images)


def test_colors_do_not_give_the_class_away() -> None:
    batch = generate_shapes(1200, seed=5)
    means = np.stack([batch.colors[batch.labels == k].mean(axis=0) for k in range(len(CLASSES))])
    assert np.ptp(means, axis=0).max() < 30  # every class spans the whole colour cube


def test_shape_boxes_are_tight() -> None:
    batch = generate_shapes(200, seed=6)
    assert_tight_boxes(batch.images, batch.boxes, batch.colors)


def test_pairs_differ_in_class_and_never_overlap() -> None:
    pairs = generate_pairs(200, seed=8)
    assert pairs.images.shape == (200, 64, 64, 3)
    assert pairs.labels.shape == (200, 2) and pairs.boxes.shape == (200, 2, 4)
    assert np.all(pairs.labels[:, 0] != pairs.labels[:, 1])
    first, second = pairs.boxes[:, 0], pairs.boxes[:, 1]
    apart_y = (first[:, 2] < second[:, 0]) | (second[:, 2] < first[:, 0])
    apart_x = (first[:, 3] < second[:, 1]) | (second[:, 3] < first[:, 1])
    assert np.all(apart_y | apart_x)
    for j in range(2):
        assert_tight_boxes(pairs.images, pairs.boxes[:, j], pairs.colors[:, j])


def test_model_layout() -> None:
    from models.shapes_model import build_shapes_model

    model = build_shapes_model()
    assert tuple(model.input_shape) == (None, 64, 64, 3)
    assert tuple(model.output_shape) == (None, len(CLASSES))
    assert model.layers[1].__class__.__name__ == "Rescaling"
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert [layer.name for layer in convs] == ["conv1", "conv2", "conv3", "conv4"]
    assert all(layer.get_config()["activation"] == "relu" for layer in convs)
    assert tuple(model.get_layer("conv4").output.shape) == (None, 8, 8, 64)
    assert model.layers[-2].name == "gap"  # conv4 -> global average pooling -> predictions
    assert model.get_layer("predictions").get_config()["activation"] == "softmax"
    assert model.count_params() < 100_000


def test_folding_batch_norm_keeps_the_outputs() -> None:
    import keras

    from models.shapes_model import build_training_model, fold_batch_norm

    keras.utils.set_random_seed(0)
    trainer = build_training_model()
    rng = np.random.default_rng(0)
    for layer in trainer.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 0.5, channels),
                               rng.normal(0, 0.5, channels), rng.uniform(0.1, 3, channels)])
    folded = fold_batch_norm(trainer)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    images = generate_shapes(16, seed=2).images.astype(np.float32)
    np.testing.assert_allclose(folded.predict(images, verbose=0),
                               trainer.predict(images, verbose=0), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_trained_model_is_accurate_on_fresh_images(shapes_model) -> None:
    test = generate_shapes(600, seed=7)
    probs = np.asarray(shapes_model.predict(test.images.astype(np.float32), verbose=0))
    accuracy = float(np.mean(probs.argmax(axis=1) == test.labels))
    assert accuracy >= 0.95, accuracy


def gradcam_peaks(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Plain Grad-CAM on conv4 for one class per image -> peak ``(n, 2)`` (y, x) at 64x64."""
    import keras
    import tensorflow as tf

    features = keras.Model(model.input, model.get_layer("conv4").output)
    dense = model.get_layer("predictions")
    with tf.GradientTape() as tape:
        maps = features(images.astype(np.float32))
        logits = tf.reduce_mean(maps, axis=(1, 2)) @ dense.kernel + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
    flat = cam.reshape(len(cam), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, images.shape[1:3]), axis=1)


@pytest.mark.slow
def test_gradcam_points_at_the_object_of_each_class(shapes_model) -> None:
    pairs = generate_pairs(100, seed=9)
    hits = []
    for j in range(2):
        (py, px), box = gradcam_peaks(shapes_model, pairs.images, pairs.labels[:, j]).T, \
            pairs.boxes[:, j]
        hits.append((box[:, 0] <= py) & (py < box[:, 2]) & (box[:, 1] <= px) & (px < box[:, 3]))
    assert np.mean(hits) >= 0.9, np.mean(hits)


@pytest.mark.slow
def test_cached_model_predicts_like_the_trained_one(shapes_model, tmp_path: Path) -> None:
    from models.shapes_model import load_or_train_shapes, save_shapes_model

    images = generate_shapes(64, seed=10).images.astype(np.float32)
    expected = np.asarray(shapes_model.predict(images, verbose=0))
    save_shapes_model(shapes_model, {"test_accuracy": 1.0}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes-v1.json", "shapes-v1.keras"]
    assert json.loads((tmp_path / "shapes-v1.json").read_text())["classes"] == list(CLASSES)

    def no_training(done: int, total: int) -> None:
        raise AssertionError("a cached model must be loaded, not retrained")

    loaded = load_or_train_shapes(tmp_path, progress=no_training)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=0, atol=1e-6)
