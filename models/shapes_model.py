"""The built-in ``shapes`` demo model: a small CNN trained on :mod:`models.shapes_data`.

The model takes float32 RGB images ``(batch, 64, 64, 3)`` in the raw 0-255 range (it
carries its own ``Rescaling``) and returns softmax probabilities ``(batch, len(CLASSES))``.
Its last conv layer (conv4, 8x8) feeds global average pooling directly, so Grad-CAM on it
localises each shape. It is trained with batch norm (folded into the convs afterwards) on
one- and two-shape images, from scratch in about 85 s on two CPU cores, deterministically
from a seed, and cached as a ``.keras`` archive.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.folding import folded_conv_weights
from models.saving import atomic_write, save_model_atomically
from models.shapes_data import CLASSES, generate_pairs, generate_shapes

log = logging.getLogger(__name__)

INPUT_SIZE = 64
MODEL_FILE = "shapes-v1.keras"
META_FILE = "shapes-v1.json"

# Training mixes one-shape images (one-hot targets) with two-shape images whose target puts
# half the probability on each class: that makes the evidence for a class come from its own
# object, which is what lets Grad-CAM point at the right shape in a two-shape image.
_TRAIN_SINGLES = 9_000
_TRAIN_PAIRS = 6_000
_TEST_IMAGES = 1_200
_EPOCHS = 4
_BATCH = 64
_LEARNING_RATE = 4e-3
_FILTERS = (16, 32, 64, 64)  # conv1..conv4
_POOLED = (1, 2, 3)  # a 2x2 max pooling follows these convs
# L1 penalty on the last feature map while training (per image): activations that do not
# help tell the classes apart (e.g. at the zero-padded image border) are driven to zero, so
# Grad-CAM has nothing to pick up outside the shapes.
_SPARSITY = 1e-4
# Data seeds are offset from the training seed so that small seeds used elsewhere (tests,
# demos) never reproduce the training or held-out images.
_TRAIN_SEED_OFFSET = 1_000_003
_TEST_SEED_OFFSET = 2_000_003

Progress = Callable[[int, int], None]


def _build(num_classes: int, batch_norm: bool) -> keras.Model:
    """The shapes CNN; with ``batch_norm`` each conv is followed by BatchNorm and a ReLU layer."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    for index, filters in enumerate(_FILTERS, start=1):
        activation = None if batch_norm else "relu"
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation=activation, name=f"conv{index}"
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
            sparse = index == len(_FILTERS) and _SPARSITY > 0
            regularizer = keras.regularizers.L1(_SPARSITY) if sparse else None
            x = keras.layers.ReLU(name=f"relu{index}", activity_regularizer=regularizer)(x)
        if index in _POOLED:
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes")


def build_shapes_model(num_classes: int = len(CLASSES)) -> keras.Model:
    """Build the (untrained) shapes CNN.

    Layout, for raw RGB input ``(batch, 64, 64, 3)``: rescaling -> conv1 (64x64x16) -> pool1
    -> conv2 (32x32x32) -> pool2 -> conv3 (16x16x64) -> pool3 -> conv4 (8x8x64) -> global
    average pooling -> ``predictions`` (softmax over ``num_classes``). Every conv is 3x3,
    ``same``, with bias and ReLU; conv4 feeds the pooling directly, so a class score is
    linear in its map and Grad-CAM on it is exact CAM.
    """
    return _build(num_classes, batch_norm=False)


def build_training_model(num_classes: int = len(CLASSES)) -> keras.Model:
    """The shapes CNN as trained: each ``conv{i}`` (no activation) -> ``bn{i}`` -> ``relu{i}``.

    Batch norm makes training several times faster; :func:`fold_batch_norm` then turns the
    trained model into the plain layout of :func:`build_shapes_model`, with equal outputs.
    """
    return _build(num_classes, batch_norm=True)


def fold_batch_norm(trained: keras.Model) -> keras.Model:
    """Fold each ``conv{i} -> bn{i} -> relu{i}`` of a trained batch-norm model into one conv.

    In inference mode batch norm is a per-channel affine map, so scaling the conv's kernel
    and bias (:func:`models.folding.folded_conv_weights`) gives the same outputs with a plain
    conv + ReLU, as built by :func:`build_shapes_model`.
    """
    model = build_shapes_model(trained.output_shape[-1])
    for index in range(1, len(_FILTERS) + 1):
        kernel, bias = folded_conv_weights(trained.get_layer(f"conv{index}"),
                                           trained.get_layer(f"bn{index}"))
        model.get_layer(f"conv{index}").set_weights([np.asarray(kernel), np.asarray(bias)])
    model.get_layer("predictions").set_weights(trained.get_layer("predictions").get_weights())
    return model


def _dataset(images: np.ndarray, targets: np.ndarray, seed: int | None) -> tf.data.Dataset:
    """Batches of ``(float32 (b, 64, 64, 3), targets[b])``; shuffled when ``seed`` is set."""
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if seed is not None:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(_BATCH).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(2)


class _ProgressCallback(keras.callbacks.Callback):
    """Reports ``progress(epochs_done, epochs_total)`` at the end of every epoch."""

    def __init__(self, progress: Progress, total: int) -> None:
        super().__init__()
        self._progress = progress
        self._total = total

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._progress(epoch + 1, self._total)


def evaluate_accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images (n, 64, 64, 3)`` and ``labels (n,)``."""
    probs = model.predict(_dataset(images, labels, seed=None), verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def training_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One- and two-shape training images with their target distributions.

    Returns:
        uint8 images ``(n, 64, 64, 3)`` and float32 targets ``(n, len(CLASSES))``: one-hot
        for a one-shape image, 0.5 on each class for a two-shape image.
    """
    singles = generate_shapes(_TRAIN_SINGLES, seed=seed, size=INPUT_SIZE)
    pairs = generate_pairs(_TRAIN_PAIRS, seed=seed + 1, size=INPUT_SIZE)
    eye = np.eye(len(CLASSES), dtype=np.float32)
    pair_targets = 0.5 * (eye[pairs.labels[:, 0]] + eye[pairs.labels[:, 1]])
    images = np.concatenate([singles.images, pairs.images])
    return images, np.concatenate([eye[singles.labels], pair_targets])


def train_shapes_model(
    seed: int = 0, progress: Progress | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the shapes CNN from scratch on freshly generated images.

    Deterministic from ``seed`` (Keras, NumPy and TensorFlow seeds, deterministic ops).
    ``progress(done, total)`` is called after each epoch.

    Returns:
        The trained model and metrics: ``test_accuracy`` (on held-out images of another
        seed), ``seconds`` (wall clock, including data generation), ``epochs``,
        ``train_images``, ``test_images``, ``seed``.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    images, targets = training_set(_TRAIN_SEED_OFFSET + seed)
    trainer = build_training_model(len(CLASSES))
    steps = _EPOCHS * -(-len(images) // _BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(_LEARNING_RATE, decay_steps=steps)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy")
    callbacks = [_ProgressCallback(progress, _EPOCHS)] if progress else []
    trainer.fit(
        _dataset(images, targets, seed=seed),
        epochs=_EPOCHS,
        shuffle=False,  # the dataset shuffles itself, reproducibly
        callbacks=callbacks,
        verbose=0,
    )
    model = fold_batch_norm(trainer)
    test = generate_shapes(_TEST_IMAGES, seed=_TEST_SEED_OFFSET + seed, size=INPUT_SIZE)
    metrics = {
        "test_accuracy": evaluate_accuracy(model, test.images, test.labels),
        "seconds": round(time.perf_counter() - start, 2),
        "epochs": _EPOCHS,
        "train_images": len(images),
        "test_images": _TEST_IMAGES,
        "seed": seed,
    }
    log.info("trained shapes model: %s", metrics)
    return model, metrics


def save_shapes_model(
    model: keras.Model, metrics: dict[str, Any], cache_dir: str | os.PathLike[str]
) -> Path:
    """Atomically write ``shapes-v1.json`` (classes, metrics) and ``shapes-v1.keras``.

    Returns:
        The path of the ``.keras`` archive.
    """
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"classes": list(CLASSES), "input_shape": [INPUT_SIZE, INPUT_SIZE, 3], **metrics}

    def write_meta(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    atomic_write(directory / META_FILE, write_meta)
    return save_model_atomically(model, directory / MODEL_FILE)


def load_or_train_shapes(
    cache_dir: str | os.PathLike[str], progress: Progress | None = None
) -> keras.Model:
    """Load ``cache_dir/shapes-v1.keras`` if present, else train (seed 0) and cache it.

    The archive is loaded with ``safe_mode=True`` and without its training config.
    ``progress(done, total)`` is only called when training.
    """
    path = Path(cache_dir) / MODEL_FILE
    if path.is_file():
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    model, metrics = train_shapes_model(seed=0, progress=progress)
    save_shapes_model(model, metrics, cache_dir)
    return model
