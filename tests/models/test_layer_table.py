"""layer_table rows against hand-computed shapes, parameters and receptive fields."""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest

from models.layer_table import layer_table

L = keras.layers
KEYS = {
    "name", "type", "output_shape", "params", "kernel_size", "strides", "padding",
    "dilation_rate", "filters", "activation", "receptive_field", "arithmetic",
}  # fmt: skip
FITS = "every kernel position fits exactly"


def _row(name: str, type_: str, shape: list, params: int, rf: list | None, **fields: Any) -> dict:
    """An expected row: everything not given is None."""
    row = dict.fromkeys(KEYS)
    row.update(name=name, type=type_, output_shape=shape, params=params, receptive_field=rf)
    row.update(fields)
    return row


def _conv(k: list, s: list, padding: str, filters: int, activation: str, d: list | None = None):
    return dict(
        kernel_size=k, strides=s, padding=padding, dilation_rate=d or [1, 1], filters=filters,
        activation=activation,
    )  # fmt: skip


def _pool(k: list, s: list, padding: str = "valid") -> dict:
    return dict(kernel_size=k, strides=s, padding=padding)


def _check(rows: list[dict], expected: list[dict], ignore: tuple[str, ...] = ()) -> None:
    assert json.loads(json.dumps(rows)) == rows  # plain lists, ints, strings and None only
    by_name = {row["name"]: row for row in rows}
    assert sorted(by_name) == sorted(e["name"] for e in expected)
    for exp in expected:
        got = {k: v for k, v in by_name[exp["name"]].items() if k not in ignore}
        assert set(by_name[exp["name"]]) == KEYS
        assert got == {k: v for k, v in exp.items() if k not in ignore}, exp["name"]


def test_sequential_chain() -> None:
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(8, 3, activation="relu", name="c1"),
            L.Conv2D(8, 3, padding="same", activation="relu", name="c2"),
            L.MaxPooling2D(2, name="p1"),
            L.Conv2D(16, 3, name="c3"),
            L.Flatten(name="flat"),
            L.Dense(10, activation="softmax", name="probs"),
        ]
    )
    same = "same padding: ceil(30/1) = 30 outputs, pad 1 before and 1 after; "
    expected = [
        _row("c1", "Conv2D", [30, 30, 8], 224, [3, 3], **_conv([3, 3], [1, 1], "valid", 8, "relu"),
             arithmetic={"output_size": f"(32 − 3)/1 + 1 = 30: {FITS}",
                         "params": "(3·3·3 + 1)·8 = 224"}),
        _row("c2", "Conv2D", [30, 30, 8], 584, [5, 5], **_conv([3, 3], [1, 1], "same", 8, "relu"),
             arithmetic={"output_size": same + f"(30 + 2·1 − 3)/1 + 1 = 30: {FITS}",
                         "params": "(3·3·8 + 1)·8 = 584"}),
        _row("p1", "MaxPooling2D", [15, 15, 8], 0, [6, 6], **_pool([2, 2], [2, 2]),
             arithmetic={"output_size": f"(30 − 2)/2 + 1 = 15: {FITS}", "params": None}),
        _row("c3", "Conv2D", [13, 13, 16], 1168, [10, 10],
             **_conv([3, 3], [1, 1], "valid", 16, "linear"),
             arithmetic={"output_size": f"(15 − 3)/1 + 1 = 13: {FITS}",
                         "params": "(3·3·8 + 1)·16 = 1168"}),
        _row("flat", "Flatten", [2704], 0, None),
        _row("probs", "Dense", [10], 27050, None, activation="softmax"),
    ]  # fmt: skip
    rows = layer_table(model)
    assert [r["name"] for r in rows] == ["c1", "c2", "p1", "c3", "flat", "probs"]
    _check(rows, expected)


def test_functional_residual_branch() -> None:
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", name="stem")(inp)
    a = L.Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu", name="a1")(x)
    b = L.Conv2D(4, 1, name="short")(x)
    x = L.Add(name="add")([a, b])
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.Conv2D(8, (3, 1), strides=(2, 1), name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, name="out")(x)
    model = keras.Model(inp, out)
    dw = dict(kernel_size=[3, 3], strides=[1, 1], padding="valid", dilation_rate=[1, 1],
              activation="linear")  # fmt: skip
    expected = [
        _row("stem", "Conv2D", [16, 16, 4], 112, [3, 3],
             **_conv([3, 3], [1, 1], "same", 4, "linear")),
        _row("a1", "Conv2D", [16, 16, 4], 148, [7, 7],
             **_conv([3, 3], [1, 1], "same", 4, "relu", d=[2, 2])),
        _row("short", "Conv2D", [16, 16, 4], 20, [3, 3],
             **_conv([1, 1], [1, 1], "valid", 4, "linear")),
        _row("add", "Add", [16, 16, 4], 0, [7, 7]),  # max of the two branches
        _row("pool", "MaxPooling2D", [8, 8, 4], 0, [8, 8], **_pool([2, 2], [2, 2])),
        _row("bn", "BatchNormalization", [8, 8, 4], 16, [8, 8]),
        _row("dw", "DepthwiseConv2D", [6, 6, 4], 40, [12, 12], **dw),
        _row("c2", "Conv2D", [2, 6, 8], 104, [16, 12],
             **_conv([3, 1], [2, 1], "valid", 8, "linear")),
        _row("gap", "GlobalAveragePooling2D", [8], 0, None),
        _row("out", "Dense", [2], 18, None, activation="linear"),
    ]  # fmt: skip
    rows = layer_table(model)
    _check(rows, expected, ignore=("arithmetic",))
    arithmetic = {r["name"]: r["arithmetic"] for r in rows}
    assert arithmetic["a1"]["output_size"].startswith("f_eff = 2·(3 − 1) + 1 = 5; same padding")
    assert arithmetic["dw"] == {"output_size": f"(8 − 3)/1 + 1 = 6: {FITS}", "params": None}
    assert arithmetic["c2"] == {
        "output_size": "(6 − 3)/2 + 1 = 2.5 → floor → 2: the last column of the input is not "
        "covered by any kernel position",
        "params": "(3·1·4 + 1)·8 = 104",
    }
    assert arithmetic["add"] is None and arithmetic["out"] is None


def test_nested_base_model_continues_from_its_input_field() -> None:
    base_in = keras.Input((20, 20, 3))
    y = L.Conv2D(4, 3, activation="relu", name="conv1")(base_in)
    y = L.MaxPooling2D(2, name="pool")(y)
    y = L.Conv2D(8, 3, activation="relu", name="conv2")(y)
    base = keras.Model(base_in, y, name="base")
    inp = keras.Input((20, 20, 3))
    x = L.Rescaling(1 / 255, name="rescale")(inp)
    x = L.Conv2D(3, 3, padding="same", name="pre")(x)
    x = base(x)
    x = L.Conv2D(8, 3, name="head_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out)
    expected = [
        _row("rescale", "Rescaling", [20, 20, 3], 0, [1, 1]),
        _row("pre", "Conv2D", [20, 20, 3], 84, [3, 3],
             **_conv([3, 3], [1, 1], "same", 3, "linear")),
        _row("base", "Functional", [7, 7, 8], 408, [10, 10]),
        _row("base/conv1", "Conv2D", [18, 18, 4], 112, [5, 5],
             **_conv([3, 3], [1, 1], "valid", 4, "relu")),
        _row("base/pool", "MaxPooling2D", [9, 9, 4], 0, [6, 6], **_pool([2, 2], [2, 2])),
        _row("base/conv2", "Conv2D", [7, 7, 8], 296, [10, 10],
             **_conv([3, 3], [1, 1], "valid", 8, "relu")),
        _row("head_conv", "Conv2D", [5, 5, 8], 584, [14, 14],
             **_conv([3, 3], [1, 1], "valid", 8, "linear")),
        _row("gap", "GlobalAveragePooling2D", [8], 0, None),
        _row("probs", "Dense", [3], 27, None, activation="softmax"),
    ]  # fmt: skip
    rows = layer_table(model)
    assert [r["name"] for r in rows][2:6] == ["base", "base/conv1", "base/pool", "base/conv2"]
    _check(rows, expected, ignore=("arithmetic",))
    by_name = {r["name"]: r for r in rows}
    assert by_name["base/pool"]["arithmetic"]["output_size"].startswith("(18 − 2)/2 + 1 = 9")
    assert by_name["base/conv2"]["arithmetic"]["params"] == "(3·3·4 + 1)·8 = 296"


def test_nested_sequential_base() -> None:
    base = keras.Sequential([L.Conv2D(2, 3, name="k1"), L.Conv2D(2, 3, name="k2")], name="seq")
    inp = keras.Input((12, 12, 1))
    x = L.Conv2D(2, 5, name="pre")(inp)
    out = base(x)
    rows = {r["name"]: r["receptive_field"] for r in layer_table(keras.Model(inp, out))}
    assert rows == {"pre": [5, 5], "seq": [9, 9], "seq/k1": [7, 7], "seq/k2": [9, 9]}


def test_vgg16_receptive_fields() -> None:
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    rows = {r["name"]: r for r in layer_table(model)}
    assert rows["block1_conv2"]["receptive_field"] == [5, 5]
    assert rows["block5_conv3"]["receptive_field"] == [196, 196]
    assert rows["block5_pool"]["receptive_field"] == [212, 212]
    assert rows["block5_conv3"]["params"] == (3 * 3 * 512 + 1) * 512
    json.dumps(list(rows.values()))


@pytest.mark.slow
def test_resnet50_receptive_field() -> None:
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    rows = {r["name"]: r for r in layer_table(model)}
    assert rows["conv1_conv"]["receptive_field"] == [7, 7]
    assert rows["pool1_pool"]["receptive_field"] == [11, 11]
    assert rows["conv5_block3_out"]["receptive_field"] == [483, 483]
