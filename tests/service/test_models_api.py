"""``/v1/models``: the built-in list, layer tables, and uploads validated by a real worker."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.service.job_http import (
    assert_problem,
    encode,
    keras_bytes,
    load_npy,
    run,
    submit,
    tiny_model,
    upload,
)

LAYER_FIELDS = {"name", "type", "output_shape", "params", "kernel_size", "strides", "padding",
                "dilation_rate", "filters", "activation", "receptive_field"}


def test_list_models_includes_shapes(client) -> None:
    from models.shapes_data import CLASSES

    res = client.get("/v1/models")
    assert res.status_code == 200
    models = {m["id"]: m for m in res.get_json()["models"]}
    shapes = models["shapes"]
    assert shapes["status"] == "ready"
    assert shapes["input_shape"] == [64, 64, 3]
    assert shapes["classes"] == list(CLASSES)
    assert shapes["name"] and shapes["source"]
    assert {"id", "name", "status", "input_shape", "classes", "source"} <= set(shapes)
    assert "cifar10" in models and "vgg16" in models
    one = client.get("/v1/models/shapes").get_json()
    assert one["id"] == "shapes" and one["input_shape"] == [64, 64, 3]


def test_shapes_layer_table(client, shapes_model) -> None:
    res = client.get("/v1/models/shapes/layers")
    assert res.status_code == 200
    rows = {row["name"]: row for row in res.get_json()["layers"]}
    assert all(LAYER_FIELDS <= set(row) for row in rows.values())
    import keras

    assert list(rows) == [layer.name for layer in shapes_model.layers
                          if not isinstance(layer, keras.layers.InputLayer)]
    for name, row in rows.items():
        assert row["params"] == shapes_model.get_layer(name).count_params()
    conv1, conv2 = rows["conv1"], rows["conv2"]
    assert conv1["type"] == "Conv2D" and conv1["output_shape"] == [64, 64, 16]
    assert (conv1["kernel_size"], conv1["strides"], conv1["dilation_rate"]) == \
        ([3, 3], [1, 1], [1, 1])
    assert (conv1["padding"], conv1["filters"], conv1["activation"]) == ("same", 16, "relu")
    assert conv1["receptive_field"] == [3, 3]
    assert conv2["receptive_field"] == [8, 8]  # 3 → pool 2 (4) → 3×3 at stride 2 (8)
    assert rows["pool1"]["kernel_size"] == [2, 2] and rows["pool1"]["filters"] is None
    dense = rows["predictions"]
    assert dense["type"] == "Dense" and dense["output_shape"] == [6]
    assert dense["kernel_size"] is None and dense["padding"] is None
    assert dense["activation"] == "softmax"


def test_unknown_model_layers_404(client) -> None:
    assert_problem(client.get("/v1/models/nope/layers"), 404, "unknown_model")
    assert_problem(client.get("/v1/models/nope"), 404, "unknown_model")


def test_upload_use_and_delete(client, tmp_path: Path) -> None:
    from models.activations import ActivationExtractor

    model = tiny_model()
    res = upload(client, keras_bytes(model, tmp_path))
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    model_id = body["id"]
    assert res.headers["Location"] == f"/v1/models/{model_id}"
    assert body["status"] == "ready" and body["input_shape"] == [16, 16, 3]
    assert body["source"] == "upload" and body["name"] == "tiny" and body["preprocess"] == "raw"
    listed = [m["id"] for m in client.get("/v1/models").get_json()["models"]]
    assert model_id in listed
    rows = client.get(f"/v1/models/{model_id}/layers").get_json()["layers"]
    layers = {row["name"]: row for row in rows}
    assert layers["conv"]["output_shape"] == [16, 16, 4] and layers["conv"]["params"] == 112

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    job = run(client, "activations", [encode(pixels)], model=model_id, layer="conv")
    acts = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/activations").data)
    expected = ActivationExtractor(model, "conv")(pixels[None].astype(np.float32))
    np.testing.assert_allclose(acts, expected.activations[0], atol=1e-5)
    cam = run(client, "gradcam", [encode(pixels)], model=model_id)  # default layer: conv
    assert cam["layer"] == "conv"
    assert load_npy(client.get(f"/v1/jobs/{cam['id']}/artifacts/heatmap").data).shape == (16, 16)

    res = client.delete(f"/v1/models/{model_id}")
    assert res.status_code == 204 and not res.data
    assert "Content-Type" not in res.headers  # was text/html
    assert_problem(client.get(f"/v1/models/{model_id}"), 404, "unknown_model")
    assert_problem(client.delete(f"/v1/models/{model_id}"), 404, "unknown_model")
    assert model_id not in [m["id"] for m in client.get("/v1/models").get_json()["models"]]
    assert_problem(submit(client, "activations", [encode(pixels)], model=model_id), 404,
                   "unknown_model")


def test_options_lists_the_methods_without_a_type(client) -> None:
    res = client.options("/v1/models/shapes")
    assert res.status_code == 200 and not res.data
    assert {"GET", "DELETE"} <= set(res.headers["Allow"].split(", "))
    assert "Content-Type" not in res.headers  # was text/html for an empty body


def test_builtin_models_cannot_be_deleted(client) -> None:
    assert_problem(client.delete("/v1/models/shapes"), 403, "forbidden")
    assert client.get("/v1/models/shapes").get_json()["status"] == "ready"


def test_lambda_layer_is_unsafe(client, tmp_path: Path) -> None:
    res = upload(client, keras_bytes(tiny_model(lambda_layer=True), tmp_path), name="lambda")
    body = assert_problem(res, 422, "unsafe_model")
    assert "Lambda" in body["detail"] or "lambda" in body["detail"]


def _zip_without_config() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("metadata.json", "{}")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "code"), [
    (b"definitely not a keras archive" * 10, "invalid_model"),
    (_zip_without_config(), "invalid_model"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "unsafe_model"),  # legacy HDF5: no safe mode
], ids=["garbage", "zip_without_config", "hdf5"])
def test_refused_uploads(client, data: bytes, code: str) -> None:
    assert_problem(upload(client, data, name="bad"), 422, code)


def test_upload_over_model_size_limit(client, settings) -> None:
    data = b"PK" + b"\0" * (settings.max_model_bytes + 10)
    assert_problem(upload(client, data, name="huge", wait=0), 413, "payload_too_large")
