"""The course's CIFAR-10 CNN: Conv 32-32 3×3, max-pool, Conv 64-64 3×3, max-pool,
Dense 512, Dense 10 — input ``(32, 32, 3)`` raw pixels 0..255 (a Rescaling layer inside)."""

from __future__ import annotations

import os
from collections.abc import Callable

import keras

from models.keras_internals import seeded_weights
from models.saving import save_model_atomically

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class DatasetUnavailableError(RuntimeError):
    """The dataset could not be obtained (no network and no local copy)."""


def build_cifar_cnn(seed: int = 0) -> keras.Model:
    """The course architecture as a functional model named ``cifar10``; its initial weights
    depend on ``seed`` only (global random state is left as it was)."""
    with seeded_weights(seed):
        return _build_cifar_cnn()


def _build_cifar_cnn() -> keras.Model:
    layers = keras.layers
    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv4")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="cifar10")


def train_cifar_cnn(cache_dir: str | os.PathLike, epochs: int = 10,
                    progress: Callable[[int, int], None] | None = None) -> keras.Model:
    """Train on ``keras.datasets.cifar10`` and save ``cache_dir/cifar10.keras``.

    Raises DatasetUnavailableError, saying so plainly, when the dataset cannot be downloaded.
    """
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # urllib / OS errors alike mean "not available"
        raise DatasetUnavailableError(
            f"CIFAR-10 could not be downloaded ({type(exc).__name__}: {exc}); the network is "
            "probably closed. Put cifar-10-python.tar.gz in ~/.keras/datasets/ and retry."
        ) from exc
    keras.utils.set_random_seed(0)  # seeded shuffling too, so a retrain gives the same model
    model = build_cifar_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = []
    if progress is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress(epoch + 1, epochs)))
    model.fit(x_train.astype("float32"), y_train, epochs=epochs, batch_size=64,
              validation_data=(x_test.astype("float32"), y_test), callbacks=callbacks, verbose=0)
    save_model_atomically(model, os.path.join(cache_dir, "cifar10.keras"))
    return model
