"""conv_output_size / conv_params against the shapes and parameter counts Keras itself produces."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from models.conv_arithmetic import conv_output_size, conv_params

SIZES = (5, 6, 7, 8, 11, 16, 17, 32, 33)
KERNELS = (1, 2, 3, 5)
STRIDES = (1, 2, 3)


def _keras_height(layer: keras.Layer, n: int) -> int:
    """Run ``layer`` on a zero batch ``(1, n, 4, 1)`` and return the output height."""
    return int(layer(np.zeros((1, n, 4, 1), dtype="float32")).shape[1])


def _conv_cases() -> list[tuple[int, int, int, str, int]]:
    cases = []
    grid = itertools.product(SIZES, KERNELS, STRIDES, ("valid", "same"), (1, 2))
    for n, f, s, padding, d in grid:
        if s > 1 and d > 1:
            continue  # Keras refuses strides > 1 together with dilation > 1
        if padding == "valid" and d * (f - 1) + 1 > n:
            continue  # empty output: Keras errors, conv_output_size raises (tested below)
        cases.append((n, f, s, padding, d))
    return cases


def test_conv_output_size_matches_keras_over_grid() -> None:
    for n, f, s, padding, d in _conv_cases():
        conv = keras.layers.Conv2D(1, (f, 1), strides=(s, 1), padding=padding, dilation_rate=(d, 1))
        got = conv_output_size(n, f, s, padding, d)
        assert got.size == _keras_height(conv, n), (n, f, s, padding, d)
        assert got.effective_kernel == d * (f - 1) + 1
        assert got.is_integer == float(got.exact).is_integer()


def test_pooling_output_size_matches_keras_over_grid() -> None:
    """A pooling window is a kernel without weights (the layer table relies on this)."""
    for n, f, s, padding in itertools.product(SIZES, KERNELS, STRIDES, ("valid", "same")):
        if padding == "valid" and f > n:
            continue
        pool = keras.layers.MaxPooling2D((f, 1), strides=(s, 1), padding=padding)
        assert conv_output_size(n, f, s, padding).size == _keras_height(pool, n), (n, f, s)


def test_pool_stride_defaults_to_pool_size_like_keras() -> None:
    """The layer table reads a pooling layer's strides: Keras fills them with the window."""
    for n, f in itertools.product(SIZES, (2, 3)):
        pool = keras.layers.AveragePooling2D((f, 1))
        assert tuple(pool.strides) == (f, 1)
        assert conv_output_size(n, f, pool.strides[0]).size == _keras_height(pool, n)


@pytest.mark.parametrize("p", [0, 1, 2, 3])
def test_explicit_padding_matches_zero_padding_then_valid_conv(p: int) -> None:
    for n, f, s in itertools.product(SIZES, KERNELS, STRIDES):
        got = conv_output_size(n, f, s, p)
        model = keras.Sequential(
            [keras.layers.ZeroPadding2D((p, 0)), keras.layers.Conv2D(1, (f, 1), strides=(s, 1))]
        )
        assert got.size == _keras_height(model, n), (n, f, s, p)
        assert got.pad == p


@pytest.mark.parametrize(
    ("n", "f", "s", "d"),
    [(7, 3, 2, 1), (8, 2, 1, 1), (6, 4, 1, 1), (32, 3, 2, 1), (9, 5, 3, 1), (4, 5, 1, 2)],
)
def test_same_padding_places_zeros_where_keras_does(n: int, f: int, s: int, d: int) -> None:
    """A "same" conv equals ZeroPadding2D((before, after)) + the same conv with "valid"."""
    before, after = conv_output_size(n, f, s, "same", d).pad  # e.g. (0, 1) for n=8, f=2
    x = np.random.default_rng(0).normal(size=(1, n, n, 2)).astype("float32")
    same = keras.layers.Conv2D(3, f, strides=s, padding="same", dilation_rate=d)
    valid = keras.layers.Conv2D(3, f, strides=s, padding="valid", dilation_rate=d)
    expected = same(x)
    padded = keras.layers.ZeroPadding2D(((before, after), (before, after)))(x)
    valid.build(padded.shape)
    valid.set_weights(same.get_weights())
    np.testing.assert_allclose(valid(padded), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("f", "c_in", "filters", "use_bias"),
    [
        (3, 3, 64, True),
        (3, 32, 64, True),
        (5, 1, 6, True),
        ((1, 7), 16, 8, False),
        (1, 64, 128, True),
    ],
)
def test_conv_params_matches_keras(
    f: int | tuple[int, int], c_in: int, filters: int, use_bias: bool
) -> None:
    conv = keras.layers.Conv2D(filters, f, use_bias=use_bias)
    conv.build((None, 9, 9, c_in))
    got = conv_params(f, c_in, filters, use_bias)
    assert got.total == conv.count_params()
    assert got.weights + got.biases == got.total
    assert got.biases == (filters if use_bias else 0)


def test_conv_params_course_examples() -> None:
    first = conv_params(3, 3, 64)
    assert (first.total, first.formula) == (1792, "(3·3·3 + 1)·64 = 1792")
    second = conv_params(3, 32, 64)
    assert (second.total, second.formula) == (18496, "(3·3·32 + 1)·64 = 18496")
    assert conv_params((1, 7), 16, 8, use_bias=False).formula == "1·7·16·8 = 896"


def test_non_integer_case_explains_the_floor() -> None:
    got = conv_output_size(32, 3, 2, padding=1)
    assert (got.size, got.exact, got.pad, got.is_integer) == (16, 16.5, 1, False)
    assert got.explanation.startswith("(32 + 2·1 − 3)/2 + 1 = 16.5 → floor → 16")
    assert "not covered" in got.explanation


def test_integer_case_has_no_floor() -> None:
    got = conv_output_size(32, 3, 1, padding=1)
    assert (got.size, got.exact, got.is_integer) == (32, 32.0, True)
    assert "floor" not in got.explanation
    assert got.explanation.startswith("(32 + 2·1 − 3)/1 + 1 = 32")


def test_same_and_dilation_explanations_show_their_numbers() -> None:
    same = conv_output_size(32, 3, 2, "same")
    assert same.pad == (0, 1)
    assert "ceil(32/2) = 16" in same.explanation
    dilated = conv_output_size(10, 3, 1, "valid", dilation=2)
    assert dilated.effective_kernel == 5
    assert "f_eff = 2·(3 − 1) + 1 = 5" in dilated.explanation


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n": 0, "f": 3}, "0"),
        ({"n": 8, "f": 0}, "0"),
        ({"n": 8, "f": 3, "s": 0}, "0"),
        ({"n": 8, "f": 3, "dilation": -1}, "-1"),
        ({"n": 8, "f": 3, "padding": "full"}, "full"),
        ({"n": 8, "f": 3, "padding": -2}, "-2"),
        ({"n": 3, "f": 5}, "5"),
        ({"n": 4, "f": 3, "dilation": 2}, "dilation=2"),
    ],
)
def test_bad_values_raise_value_error_naming_them(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        conv_output_size(**kwargs)


def test_bad_param_values_raise() -> None:
    with pytest.raises(ValueError, match="c_in"):
        conv_params(3, 0, 8)
    with pytest.raises(ValueError, match="filters"):
        conv_params(3, 3, -1)
