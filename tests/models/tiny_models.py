"""Tiny CNNs for engine tests: one architecture in three forms, plus a residual model.

The CNN, input ``(16, 16, 3)`` raw pixels 0..255::

    rescale (1/255) -> conv1 Conv2D(4, 3, same, relu) -> conv2 Conv2D(6, 3, valid, relu)
    -> pool MaxPooling2D(2) -> flatten -> predictions Dense(3, softmax)

Shapes: conv1 (16, 16, 4), conv2 (14, 14, 6), pool (7, 7, 6), flatten (294,), predictions (3,).

- :func:`sequential` — a ``keras.Sequential``; layers named as above.
- :func:`functional` — a functional model; layers named as above.
- :func:`nested` — a functional ``base`` model (rescale .. pool) used as one layer of an outer
  functional model (flatten, predictions): the transfer-learning case, paths ``base/conv2``.

All three are built from the same seed and then carry *the same weights*, so they compute the
same function. :func:`residual` is a functional model with a skip connection::

    rescale -> conv_a Conv2D(4, 3, same, relu) -> conv_b Conv2D(4, 3, same)
    add = conv_a + conv_b -> relu ReLU -> gap GlobalAveragePooling2D
    -> predictions Dense(3, softmax)
"""

from __future__ import annotations

import keras
import numpy as np

L = keras.layers
SIZE = 16
CLASSES = 3
FORMS = ("sequential", "functional", "nested")
# Layer paths of the CNN in each form.
PATHS = {
    "sequential": {"conv1": "conv1", "conv2": "conv2", "pool": "pool"},
    "functional": {"conv1": "conv1", "conv2": "conv2", "pool": "pool"},
    "nested": {"conv1": "base/conv1", "conv2": "base/conv2", "pool": "base/pool"},
}


def _feature_layers() -> list[keras.Layer]:
    return [
        L.Rescaling(1.0 / 255.0, name="rescale"),
        L.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(6, 3, padding="valid", activation="relu", name="conv2"),
        L.MaxPooling2D(2, name="pool"),
    ]


def _head_layers() -> list[keras.Layer]:
    return [L.Flatten(name="flatten"), L.Dense(CLASSES, activation="softmax", name="predictions")]


def _chain(x, layers: list[keras.Layer]):
    for layer in layers:
        x = layer(x)
    return x


def _reference_weights(seed: int) -> dict[str, list[np.ndarray]]:
    """Weights of the functional form built with ``seed``, by layer name."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    model = keras.Model(inputs, _chain(inputs, _feature_layers() + _head_layers()))
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    # Centre the logits over sample images so that different images win different classes.
    kernel, bias = weights["predictions"]
    kernel = kernel * 4.0
    flat = np.asarray(keras.Model(inputs, model.get_layer("flatten").output)(images(32, seed=99)))
    weights["predictions"] = [kernel, (bias - (flat @ kernel).mean(axis=0)).astype(np.float32)]
    return weights


def _load(layers: list[keras.Layer], weights: dict[str, list[np.ndarray]]) -> None:
    for layer in layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])


def sequential(seed: int = 0) -> keras.Sequential:
    weights = _reference_weights(seed)
    model = keras.Sequential(
        [keras.Input((SIZE, SIZE, 3)), *_feature_layers(), *_head_layers()], name="seq"
    )
    _load(model.layers, weights)
    return model


def functional(seed: int = 0) -> keras.Model:
    weights = _reference_weights(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    model = keras.Model(inputs, _chain(inputs, _feature_layers() + _head_layers()), name="func")
    _load(model.layers, weights)
    return model


def nested(seed: int = 0) -> keras.Model:
    weights = _reference_weights(seed)
    base_in = keras.Input((SIZE, SIZE, 3), name="base_image")
    base = keras.Model(base_in, _chain(base_in, _feature_layers()), name="base")
    _load(base.layers, weights)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    head = _head_layers()
    model = keras.Model(inputs, _chain(base(inputs), head), name="outer")
    _load(head, weights)
    return model


BUILDERS = {"sequential": sequential, "functional": functional, "nested": nested}


def build(form: str, seed: int = 0) -> keras.Model:
    return BUILDERS[form](seed)


def residual(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(x)
    b = L.Conv2D(4, 3, padding="same", name="conv_b")(a)
    s = L.Add(name="add")([a, b])
    r = L.ReLU(name="relu")(s)
    g = L.GlobalAveragePooling2D(name="gap")(r)
    outputs = L.Dense(CLASSES, activation="softmax", name="predictions")(g)
    return keras.Model(inputs, outputs, name="residual")


def images(n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """``n`` random raw-pixel images, float32 ``(n, size, size, 3)`` in 0..255."""
    rng = np.random.default_rng(seed)
    tint = rng.uniform(0.1, 1.0, (n, 1, 1, 3))  # each image its own colour cast
    return (rng.uniform(0.0, 255.0, (n, size, size, 3)) * tint).astype(np.float32)


def features_by_hand(model: keras.Model, form: str, layer: str, x: np.ndarray) -> np.ndarray:
    """The output of CNN layer ``layer`` ("conv1", "conv2" or "pool"), not using the engine.

    Sequential: the layers applied one by one; functional: a sub-model to the layer's output;
    nested: a sub-model of the ``base`` model.
    """
    if form == "sequential":
        out = x
        for lay in model.layers:
            out = lay(out)
            if lay.name == layer:
                return np.asarray(out)
        raise KeyError(layer)
    owner = model if form == "functional" else model.get_layer("base")
    sub = keras.Model(owner.input, owner.get_layer(layer).output)
    return np.asarray(sub(x))


def _set_batchnorm_statistics(model: keras.Model, seed: int) -> None:
    """Moving statistics, affine weights and conv biases far from their defaults."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _set_batchnorm_statistics(layer, seed + 1)
        elif isinstance(layer, L.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0.0, 0.2, layer.bias.shape[0]))
        elif isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, n), rng.normal(0.0, 0.5, n),
                               rng.normal(0.0, 0.3, n), rng.uniform(0.2, 3.0, n)])


def _bn_block(x, name: str, filters: int, bias: bool):
    x = L.Conv2D(filters, 3, padding="same", use_bias=bias, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def batchnorm(form: str, seed: int = 0) -> keras.Model:
    """conv+BN+ReLU twice (``b1`` without a conv bias, ``b2`` with), then a head.

    ``form`` is "sequential", "functional" or "nested" (the blocks inside a ``base`` model);
    the "residual" form feeds ``b2_conv``'s output to ``b2_bn`` and also to an Add, so
    ``b2_conv`` has two consumers and must not be folded, while ``b1`` and ``b3`` can be.
    """
    keras.utils.set_random_seed(seed)
    head = [L.GlobalAveragePooling2D(name="gap"), L.Dense(CLASSES, activation="softmax",
                                                          name="predictions")]
    if form == "sequential":
        model = keras.Sequential([
            keras.Input((SIZE, SIZE, 3)), L.Rescaling(1.0 / 255.0, name="rescale"),
            L.Conv2D(4, 3, padding="same", use_bias=False, name="b1_conv"),
            L.BatchNormalization(name="b1_bn"), L.ReLU(name="b1_relu"),
            L.Conv2D(6, 3, padding="same", name="b2_conv"),
            L.BatchNormalization(name="b2_bn"), L.ReLU(name="b2_relu"), *head], name="bn_seq")
    else:
        inputs = keras.Input((SIZE, SIZE, 3), name="image")
        x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
        if form == "nested":
            base_in = keras.Input((SIZE, SIZE, 3), name="base_image")
            y = _bn_block(_bn_block(base_in, "b1", 4, False), "b2", 6, True)
            x = keras.Model(base_in, y, name="base")(x)
        elif form == "residual":
            x = _bn_block(x, "b1", 4, False)
            b2 = L.Conv2D(4, 3, padding="same", name="b2_conv")(x)
            n2 = L.BatchNormalization(name="b2_bn")(b2)
            b3 = L.BatchNormalization(name="b3_bn")(L.Conv2D(4, 1, name="b3_conv")(n2))
            x = L.ReLU(name="out")(L.Add(name="add")([b2, b3]))
        else:
            x = _bn_block(_bn_block(x, "b1", 4, False), "b2", 6, True)
        model = keras.Model(inputs, _chain(x, head), name=f"bn_{form}")
    _set_batchnorm_statistics(model, seed)
    return model


def free_size(sequential: bool):
    """Any input size: conv (3×3 valid) → pool (2) → conv2 (3×3 valid) → gap → Dense(3).
    Its smallest input: ``(n - 2) // 2 - 2 >= 1``, so ``n >= 8``."""
    keras.utils.set_random_seed(5)
    layers = [keras.layers.Rescaling(1 / 255, name="scale"),
              keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
              keras.layers.MaxPooling2D(2, name="pool"),
              keras.layers.Conv2D(4, 3, activation="relu", name="conv2"),
              keras.layers.GlobalAveragePooling2D(name="gap"),
              keras.layers.Dense(3, activation="softmax", name="pred")]
    if sequential:
        return keras.Sequential([keras.Input((None, None, 3)), *layers], name="free_seq")
    x = inputs = keras.Input((None, None, 3))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="free")
