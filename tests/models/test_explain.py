"""explain_unit against the course's worked example and hand-written loops over padded arrays."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from models.errors import InvalidInputError
from models.explain import LayerNotConvError, explain_unit
from tests.models import tiny_models as tm

L = keras.layers

# The worked example: a 5×5×3 input (channels listed one after another), two 3×3×3 kernels.
X_CHANNELS = np.array([
    [[0, 1, 2, 0, 1],
     [2, 2, 0, 0, 1],
     [1, 0, 0, 2, 2],
     [0, 1, 2, 1, 0],
     [2, 2, 1, 0, 1]],
    [[1, 0, 2, 2, 0],
     [0, 1, 1, 0, 2],
     [2, 1, 0, 1, 1],
     [0, 2, 2, 1, 0],
     [1, 0, 0, 1, 2]],
    [[2, 1, 0, 1, 2],
     [1, 1, 2, 0, 0],
     [0, 2, 1, 1, 0],
     [2, 0, 1, 0, 1],
     [1, 2, 0, 2, 1]],
])  # fmt: skip
W0 = np.array([  # filter 0, one 3×3 slice per input channel
    [[1, 0, -1], [0, 1, 1], [-1, 0, 1]],
    [[0, -1, 1], [1, 0, 0], [1, 1, -1]],
    [[-1, 1, 0], [0, 0, -1], [1, -1, 1]],
])  # fmt: skip
W1 = np.array([  # filter 1
    [[0, 1, 1], [-1, -1, 0], [1, 0, -1]],
    [[1, 1, 0], [0, -1, 1], [-1, 0, 0]],
    [[0, 0, 1], [1, -1, -1], [0, 1, 0]],
])  # fmt: skip
BIAS = [1.0, 0.0]
IMAGE = X_CHANNELS.transpose(1, 2, 0).astype(np.float32)  # (5, 5, 3)


def course_model(activation: str | None = None) -> keras.Model:
    """Conv2D(2, 3, strides 2, "same") on 5×5×3: TF pads 1 on every side, output 3×3×2."""
    inputs = keras.Input((5, 5, 3))
    conv = L.Conv2D(2, 3, strides=2, padding="same", activation=activation, name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.stack([W0, W1], axis=-1).transpose(1, 2, 0, 3)  # Keras layout (kh, kw, in, out)
    conv.set_weights([kernel.astype(np.float32), np.array(BIAS, np.float32)])
    return model


def conv_by_hand(x, kernels, bias, stride: int, dilation: int, pads: tuple[int, int, int, int]):
    """Plain loops: zero-pad ``x`` (H, W, C) by (top, bottom, left, right), then correlate.

    ``kernels`` is ``(kh, kw, C, F)``. Returns ``(pre, per_channel_sums)`` as nested lists of
    floats, ``pre[y][x][f]`` and ``sums[y][x][f][c]``.
    """
    top, bottom, left, right = pads
    h, w, c_in = x.shape
    kh, kw, _, filters = kernels.shape
    padded = np.zeros((h + top + bottom, w + left + right, c_in))
    padded[top:top + h, left:left + w] = x
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    out_h = (padded.shape[0] - span_h) // stride + 1
    out_w = (padded.shape[1] - span_w) // stride + 1
    pre = [[[0.0] * filters for _ in range(out_w)] for _ in range(out_h)]
    sums = [[[[0.0] * c_in for _ in range(filters)] for _ in range(out_w)] for _ in range(out_h)]
    for y, xx, f, c in itertools.product(range(out_h), range(out_w), range(filters), range(c_in)):
        total = 0.0
        for i in range(kh):
            for j in range(kw):
                total += padded[y * stride + i * dilation, xx * stride + j * dilation, c] * float(
                    kernels[i, j, c, f])
        sums[y][xx][f][c] = total
    for y, xx, f in itertools.product(range(out_h), range(out_w), range(filters)):
        pre[y][xx][f] = sum(sums[y][xx][f]) + float(bias[f])
    return pre, sums


def test_worked_example_unit_0_0_by_hand() -> None:
    got = explain_unit(course_model(), "conv", IMAGE, 0, 0, 0, preprocess="raw")
    # Unit (0, 0) sees input rows -1..1 and columns -1..1: row -1 and column -1 are padding.
    assert got["rows"] == [-1, 0, 1] and got["cols"] == [-1, 0, 1]
    assert got["padding"] == "same" and got["strides"] == [2, 2]
    patches = [[[0, 0, 0], [0, 0, 1], [0, 2, 2]],  # channel 0: top-left 2×2 of x is [[0,1],[2,2]]
               [[0, 0, 0], [0, 1, 0], [0, 0, 1]],
               [[0, 0, 0], [0, 2, 1], [0, 1, 1]]]
    assert [ch["patch"] for ch in got["channels"]] == patches
    assert [ch["kernel"] for ch in got["channels"]] == W0.tolist()
    # channel 0: 0·1 + 1·1 (row 1)  +  2·0 + 2·1 (row 2)                  =  3
    # channel 1: 1·0 (row 1)  +  0·1 + 1·(−1) (row 2)                      = −1
    # channel 2: 2·0 + 1·(−1) (row 1)  +  1·(−1) + 1·1 (row 2)             = −1
    assert [ch["sum"] for ch in got["channels"]] == [3.0, -1.0, -1.0]
    assert [ch["index"] for ch in got["channels"]] == [0, 1, 2]
    assert got["bias"] == 1.0
    assert got["pre_activation"] == 2.0  # 3 − 1 − 1 + 1
    assert got["activation"] == 2.0  # linear layer
    assert got["model_activation"] == 2.0

    got = explain_unit(course_model(), "conv", IMAGE, 1, 0, 0, preprocess="raw")
    # channel 0: 1·0 (row 1) + 2·0 + 2·(−1) (row 2) = −2; channel 1: 1·(−1) = −1;
    # channel 2: 2·(−1) + 1·(−1) (row 1) + 1·1 + 1·0 (row 2) = −2; bias 0.
    assert [ch["sum"] for ch in got["channels"]] == [-2.0, -1.0, -2.0]
    assert got["bias"] == 0.0
    assert got["pre_activation"] == got["activation"] == got["model_activation"] == -5.0


def test_worked_example_every_unit_by_loops() -> None:
    model = course_model()
    kernels = np.stack([W0, W1], axis=-1).transpose(1, 2, 0, 3)
    pre, sums = conv_by_hand(IMAGE, kernels, BIAS, stride=2, dilation=1, pads=(1, 1, 1, 1))
    assert len(pre) == 3 and len(pre[0]) == 3
    padded = np.pad(IMAGE, ((1, 1), (1, 1), (0, 0)))
    for y, x, f in itertools.product(range(3), range(3), range(2)):
        got = explain_unit(model, "conv", IMAGE, f, y, x)
        assert [ch["sum"] for ch in got["channels"]] == sums[y][x][f]
        assert got["pre_activation"] == pre[y][x][f] == got["activation"]
        assert got["model_activation"] == pre[y][x][f]
        window = padded[2 * y:2 * y + 3, 2 * x:2 * x + 3]
        assert [ch["patch"] for ch in got["channels"]] == window.transpose(2, 0, 1).tolist()


def test_relu_activation_of_the_worked_example() -> None:
    model = course_model("relu")
    got = explain_unit(model, "conv", IMAGE, 0, 1, 0)  # pre-activation −3 (see the loops)
    assert got["pre_activation"] == -3.0
    assert got["activation"] == 0.0 == got["model_activation"]
    assert got["model_pre_activation"] == -3.0
    got = explain_unit(model, "conv", IMAGE, 0, 1, 1)
    assert got["pre_activation"] == got["activation"] == got["model_activation"] == 7.0


# (input H×W×C, Conv2D kwargs, stride, dilation, padding worked out by hand: top, bottom, l, r)
GEOMETRIES = {
    "valid_stride1": ((6, 6, 2), dict(filters=3, kernel_size=3), 1, 1, (0, 0, 0, 0)),
    "valid_stride2": ((7, 7, 2), dict(filters=2, kernel_size=3, strides=2), 2, 1, (0, 0, 0, 0)),
    "valid_dilation2": ((7, 7, 2), dict(filters=2, kernel_size=3, dilation_rate=2), 1, 2,
                        (0, 0, 0, 0)),
    # span 5 on 6 pixels, stride 1: 4 pixels of padding, 2 on each side
    "same_dilation2": ((6, 6, 2), dict(filters=2, kernel_size=3, dilation_rate=2,
                                       padding="same"), 1, 2, (2, 2, 2, 2)),
    # 6 pixels, stride 2 → 3 outputs needing 2·2 + 3 = 7 pixels: 1 of padding, TF puts it at the end
    "same_stride2_uneven": ((6, 6, 1), dict(filters=2, kernel_size=3, strides=2,
                                            padding="same"), 2, 1, (0, 1, 0, 1)),
}


@pytest.mark.parametrize("case", sorted(GEOMETRIES))
def test_geometries_against_loops(case: str) -> None:
    shape, kwargs, stride, dilation, pads = GEOMETRIES[case]
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape)
    conv = L.Conv2D(name="conv", use_bias=True, **kwargs)
    model = keras.Model(inputs, conv(inputs))
    rng = np.random.default_rng(2)
    kernels = rng.integers(-2, 3, conv.kernel.shape).astype(np.float32)
    bias = rng.integers(-3, 4, conv.bias.shape).astype(np.float32)
    conv.set_weights([kernels, bias])
    image = rng.integers(0, 10, shape).astype(np.float32)
    pre, sums = conv_by_hand(image, kernels, bias, stride, dilation, pads)
    out_h, out_w, filters = len(pre), len(pre[0]), kernels.shape[-1]
    assert model.output.shape[1:] == (out_h, out_w, filters)
    for y, x, f in itertools.product(range(out_h), range(out_w), range(filters)):
        got = explain_unit(model, "conv", image, f, y, x)
        assert [ch["sum"] for ch in got["channels"]] == sums[y][x][f]
        assert got["pre_activation"] == pre[y][x][f]
        assert got["model_activation"] == pre[y][x][f]
        assert got["rows"] == [y * stride - pads[0] + i * dilation for i in range(3)]
        assert got["cols"] == [x * stride - pads[2] + j * dilation for j in range(3)]


def test_relu_layer_inside_a_bigger_model() -> None:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = L.Conv2D(3, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Conv2D(2, 3, strides=2, activation="relu", name="c2")(x)  # 3×3×2
    outputs = L.Dense(2, activation="softmax", name="head")(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    c2 = model.get_layer("c2")
    c2.bias.assign([0.05, -0.05])
    image = tm.images(1, seed=4, size=8)[0]
    layer_input = np.asarray(keras.Model(model.input, model.get_layer("c1").output)(image[None]))[0]
    pre, _ = conv_by_hand(layer_input.astype(np.float64), c2.kernel.numpy(), c2.bias.numpy(), 2, 1,
                          (0, 0, 0, 0))
    seen_negative = False
    for y, x, f in itertools.product(range(3), range(3), range(2)):
        got = explain_unit(model, "c2", image, f, y, x)
        assert got["pre_activation"] == pytest.approx(pre[y][x][f], abs=1e-5)
        assert got["activation"] == pytest.approx(max(pre[y][x][f], 0.0), abs=1e-5)
        assert got["model_activation"] == pytest.approx(got["activation"], abs=1e-5)
        seen_negative |= pre[y][x][f] < 0
    assert seen_negative  # the ReLU was exercised


@pytest.mark.parametrize("form", ["sequential", "nested"])
def test_sequential_and_nested_forms(form: str) -> None:
    model = tm.build(form)
    image = tm.images(1, seed=5)[0]
    layer_input = tm.features_by_hand(model, form, "conv1", image[None])[0]
    conv2 = tm.functional().get_layer("conv2")  # same weights in every form
    pre, _ = conv_by_hand(layer_input.astype(np.float64), conv2.kernel.numpy(),
                          conv2.bias.numpy(), 1, 1, (0, 0, 0, 0))
    for y, x in [(0, 0), (13, 13), (5, 9)]:
        for f in range(6):
            got = explain_unit(model, tm.PATHS[form]["conv2"], image, f, y, x)
            assert got["pre_activation"] == pytest.approx(pre[y][x][f], abs=1e-5)
            assert got["model_activation"] == pytest.approx(max(pre[y][x][f], 0.0), abs=1e-5)
    # conv1 pads with zeros ("same"): its corner unit sees the padding.
    got = explain_unit(model, tm.PATHS[form]["conv1"], image, 0, 0, 0)
    assert got["rows"] == [-1, 0, 1] and got["cols"] == [-1, 0, 1]
    assert got["channels"][0]["patch"][0] == [0.0, 0.0, 0.0]
    assert got["model_activation"] == pytest.approx(got["activation"], abs=1e-5)


@pytest.mark.parametrize("layer", ["pool", "flatten", "predictions", "rescale"])
def test_non_conv_layer_raises(layer: str) -> None:
    with pytest.raises(LayerNotConvError, match=layer):
        explain_unit(tm.functional(), layer, tm.images(1)[0], 0, 0, 0)


def test_depthwise_conv_is_not_explained() -> None:
    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, L.DepthwiseConv2D(3, name="dw")(inputs))
    with pytest.raises(LayerNotConvError, match="DepthwiseConv2D"):
        explain_unit(model, "dw", IMAGE, 0, 0, 0)


@pytest.mark.parametrize("unit", [(2, 0, 0), (0, 3, 0), (0, 0, 3), (-1, 0, 0), (0, -1, 0)])
def test_out_of_range_unit_raises(unit: tuple[int, int, int]) -> None:
    f, y, x = unit
    with pytest.raises(InvalidInputError, match="3×3×2"):
        explain_unit(course_model(), "conv", IMAGE, f, y, x)
