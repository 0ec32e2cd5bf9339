"""receptive_grid against hand-worked boxes and against the input gradient of each unit."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.graph import LayerNotFoundError, Probe
from models.layer_table import receptive_fields
from models.receptive_field import NoReceptiveFieldError, receptive_grid
from tests.models import tiny_models as tm

L = keras.layers


def _seq(size: int, *layers: keras.Layer) -> keras.Sequential:
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((size, size, 1)), *layers])


def test_two_valid_3x3_convs_see_5x5_and_a_pool_doubles_the_jump() -> None:
    model = _seq(12, L.Conv2D(1, 3, name="c1"), L.Conv2D(1, 3, name="c2"),
                 L.MaxPooling2D(2, name="pool"))
    c2, pool = receptive_grid(model, "c2"), receptive_grid(model, "pool")
    assert (c2.shape, pool.shape) == ((8, 8), (4, 4))
    assert c2.box(0, 0) == [0, 0, 5, 5]
    assert c2.box(2, 7) == [7, 2, 12, 7]  # [x0, y0, x1, y1], half-open
    assert pool.box(0, 0) == [0, 0, 6, 6]  # 5 + (2 − 1)·1
    assert pool.box(3, 1) == [2, 6, 8, 12]  # jump 2: starts at 2·x, 2·y
    assert receptive_fields(model)["pool"] == [6, 6]  # the layer table's theoretical size


def test_same_padding_is_clipped_at_the_border() -> None:
    model = _seq(16, L.Conv2D(1, 3, padding="same", name="c1"),
                 L.Conv2D(1, 3, padding="same", name="c2"))
    grid = receptive_grid(model, "c2")
    assert grid.box(0, 0) == [0, 0, 3, 3]  # theoretical [-2, -2, 3, 3]
    assert grid.box(15, 15) == [13, 13, 16, 16]
    assert grid.box(5, 7) == [5, 3, 10, 8]  # interior: the full 5×5
    assert grid.box(0, 15) == [13, 0, 16, 3]


def test_strided_same_pads_after_and_padding_only_units_are_empty() -> None:
    model = _seq(8, L.Conv2D(1, 3, strides=2, padding="same", name="s2"))
    grid = receptive_grid(model, "s2")  # Keras pads 0 before, 1 after
    assert grid.box(0, 0) == [0, 0, 3, 3]
    assert grid.box(3, 3) == [6, 6, 8, 8]
    padded = _seq(6, L.ZeroPadding2D(3, name="pad"), L.Conv2D(1, 3, name="c"))
    grid = receptive_grid(padded, "c")
    assert grid.box(0, 0) == [0, 0, 0, 0]  # sees only the padding's zeros
    assert grid.box(1, 1) == [0, 0, 1, 1]
    assert grid.box(3, 4) == [1, 0, 4, 3]


def test_unknown_units_layers_and_flat_layers_raise() -> None:
    model = tm.functional()
    grid = receptive_grid(model, "conv2")
    with pytest.raises(IndexError, match="14"):
        grid.box(14, 0)
    with pytest.raises(NoReceptiveFieldError, match="predictions"):
        receptive_grid(model, "predictions")
    with pytest.raises(LayerNotFoundError):
        receptive_grid(model, "conv9")


def _gradient_boxes(model: keras.Model, layer: str, size: tuple[int, int], channels: int):
    """Per unit of ``layer``, the bounding box ``[x0, y0, x1, y1]`` of the input pixels whose
    gradient of the unit's channel sum is non-zero, and the mask itself. One gradient: batch
    item ``b`` is unit ``b``'s own copy of one random image."""
    probe = Probe(model, layer, fold_batchnorm=False)
    rng = np.random.default_rng(0)
    image = rng.uniform(1.0, 255.0, (1, *size, channels)).astype(np.float32)
    h, w = probe(tf.constant(image)).activation.shape[1:3]
    x = tf.constant(np.repeat(image, h * w, axis=0))
    own_unit = tf.constant(np.eye(h * w, dtype=np.float32).reshape(h * w, h, w, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(probe(x).activation * own_unit)
    mask = np.abs(tape.gradient(total, x).numpy()).sum(axis=-1) > 0  # (h·w, H, W)
    boxes = {}
    for b in range(h * w):
        ys, xs = np.nonzero(mask[b])
        boxes[divmod(b, w)] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if ys.size else None
    return boxes, mask


def _linear_chain() -> keras.Model:
    """No ReLU, no max pooling: every pixel in a unit's box reaches it."""
    return _seq(16, L.Conv2D(2, 3, name="c1"), L.Conv2D(2, 3, strides=2, padding="same",
                                                        name="s2"),
                L.AveragePooling2D(2, padding="same", name="avg"),
                L.Conv2D(2, 3, dilation_rate=2, padding="same", name="dil"))


def _branches() -> keras.Model:
    """Padding, cropping, and an Add of a 5×5 branch and a 1×1 branch, in a nested model."""
    keras.utils.set_random_seed(4)
    inner_in = keras.Input((13, 15, 4))
    a = L.Conv2D(2, 5, padding="same", name="wide")(inner_in)
    b = L.Conv2D(2, 1, name="narrow")(inner_in)
    added = L.Add(name="add")([b, a])  # the narrow field first: a merge takes the union
    inner = keras.Model(inner_in, L.Conv2D(2, 3, strides=2, name="down")(added), name="inner")
    inputs = keras.Input((14, 13, 1))
    x = L.ZeroPadding2D(((1, 0), (0, 3)), name="pad")(inputs)
    x = L.Cropping2D(((1, 1), (0, 1)), name="crop")(L.Conv2D(2, 3, padding="same")(x))
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(L.Concatenate()([x, x]))
    return keras.Model(inputs, inner(x))


TIGHT = [(_linear_chain, ["c1", "s2", "avg", "dil"], (16, 16)),
         (_branches, ["pad", "crop", "dw", "inner/add", "inner/down"], (14, 13))]


@pytest.mark.parametrize(("build", "layers", "size"), TIGHT, ids=["chain", "branches"])
def test_box_is_the_bounding_box_of_non_zero_gradients(build, layers, size) -> None:
    model = build()
    for layer in layers:
        grid = receptive_grid(model, layer)
        boxes, _ = _gradient_boxes(model, layer, size, 1)
        assert set(boxes) == {(y, x) for y in range(grid.shape[0]) for x in range(grid.shape[1])}
        for (y, x), expected in boxes.items():
            assert grid.box(y, x) == (expected or [0, 0, 0, 0]), (layer, y, x)


@pytest.mark.parametrize("form", ["sequential", "nested"])
def test_relu_and_max_pooling_gradients_stay_inside_the_box(form: str) -> None:
    model = tm.build(form)
    for name in ("conv1", "conv2", "pool"):
        layer = tm.PATHS[form][name]
        grid = receptive_grid(model, layer)
        _, mask = _gradient_boxes(model, layer, (tm.SIZE, tm.SIZE), 3)
        w = grid.shape[1]
        for b, seen in enumerate(mask):
            x0, y0, x1, y1 = grid.box(*divmod(b, w))
            inside = np.zeros_like(seen)
            inside[y0:y1, x0:x1] = True
            assert not (seen & ~inside).any(), (layer, divmod(b, w))
        assert mask.any()


def test_free_size_model_takes_the_image_size() -> None:
    keras.utils.set_random_seed(5)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Conv2D(2, 3, strides=2, padding="same", name="c")(inputs))
    with pytest.raises(ValueError, match="image_size"):
        receptive_grid(model, "c")
    grid = receptive_grid(model, "c", (9, 6))
    assert grid.shape == (5, 3)
    boxes, _ = _gradient_boxes(model, "c", (9, 6), 3)
    assert all(grid.box(y, x) == box for (y, x), box in boxes.items())
