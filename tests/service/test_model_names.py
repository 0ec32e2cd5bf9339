"""Uploaded models by name, refused uploads hidden and expiring, and complete job options."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import redis

from tests.service.job_http import NS, assert_problem, encode, keras_bytes, run, tiny_model, upload


def test_an_upload_is_addressed_by_its_name(client, tmp_path: Path) -> None:
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    res = upload(client, keras_bytes(tiny_model(), tmp_path), name=name)
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    assert model_id != name
    assert client.get(f"/v1/models/{name}").get_json()["id"] == model_id
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    job = run(client, "activations", [encode(pixels)], model=name, layer="conv")
    assert job["model"] == model_id
    again = upload(client, keras_bytes(tiny_model(), tmp_path), name=name)
    assert_problem(again, 409, "model_name_taken")
    assert_problem(upload(client, keras_bytes(tiny_model(), tmp_path), name="shapes"), 409,
                   "model_name_taken")
    assert client.delete(f"/v1/models/{name}").status_code == 204
    assert_problem(client.get(f"/v1/models/{name}"), 404, "unknown_model")
    assert upload(client, keras_bytes(tiny_model(), tmp_path), name=name).status_code == 201


def test_a_name_no_path_could_address_is_refused(client, tmp_path: Path) -> None:
    data = keras_bytes(tiny_model(), tmp_path)
    first = upload(client, data, name=f"ok é {uuid.uuid4().hex[:6]}")  # unicode and spaces pass
    assert first.status_code == 201, first.get_json()
    model_id = first.get_json()["id"]
    for name, why in [("a/b", "a / or"), ("a\\b", "a / or"), ("a\nb", "control character"),
                      ("a\x00b", "control character"), ("x" * 101, "Longer than")]:
        body = assert_problem(upload(client, data, name=name), 400, "bad_request")  # schema
        assert why in body["detail"], (name, body)
    for name, why in [(model_id, "form of a model id"), ("m0123456789abcdef", "form of a model id"),
                      ("a\u200bb", "format character"), (" pad", "starts or ends"),
                      ("..", "only dots")]:
        body = assert_problem(upload(client, data, name=name), 422, "invalid_name")
        assert why in body["detail"], (name, body)
    # an upload named with the first one's id was accepted: DELETE by that id then removed
    # the first model, and the second's name addressed nothing
    assert client.get(f"/v1/models/{model_id}").get_json()["id"] == model_id
    assert client.delete(f"/v1/models/{model_id}").status_code == 204


def test_without_a_name_the_file_name_is_shown_but_reserves_nothing(client, tmp_path) -> None:
    data = keras_bytes(tiny_model(), tmp_path)
    first = client.post("/v1/models?wait=60", data={"file": (io.BytesIO(data), "model.keras")},
                        content_type="multipart/form-data")
    second = client.post("/v1/models?wait=60", data={"file": (io.BytesIO(data), "model.keras")},
                         content_type="multipart/form-data")
    assert first.status_code == second.status_code == 201
    assert first.get_json()["name"] == second.get_json()["name"] == "model"
    assert_problem(client.get("/v1/models/model"), 404, "unknown_model")


def test_refused_uploads_are_hidden_expire_and_can_be_deleted(client, settings) -> None:
    name = f"broken-{uuid.uuid4().hex[:8]}"
    assert_problem(upload(client, b"not a keras archive" * 8, name=name), 422, "invalid_model")
    listed = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert name not in listed
    every = {m["name"]: m for m in client.get("/v1/models?all=true").get_json()["models"]}
    assert every[name]["status"] == "refused"
    model_id = every[name]["id"]
    ttl = redis.Redis.from_url(settings.redis_url).ttl(f"{NS}:model:{model_id}")
    assert 0 < ttl <= settings.refused_model_ttl
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    every = {m["id"] for m in client.get("/v1/models?all=true").get_json()["models"]}
    assert model_id not in every


def test_an_expired_upload_drops_out_of_the_list(client, settings, tmp_path: Path) -> None:
    name = f"short-{uuid.uuid4().hex[:8]}"
    model_id = upload(client, keras_bytes(tiny_model(), tmp_path), name=name).get_json()["id"]
    redis.Redis.from_url(settings.redis_url).delete(f"{NS}:model:{model_id}")  # as if expired
    res = client.get("/v1/models?all=true")
    assert res.status_code == 200
    assert model_id not in {m["id"] for m in res.get_json()["models"]}


def test_job_options_are_complete_and_the_default_layer_is_the_models(client) -> None:
    image = encode(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    model = client.get("/v1/models/shapes?wait=30").get_json()
    layers = client.get("/v1/models/shapes/layers").get_json()["layers"]
    spatial = [row["name"] for row in layers if len(row["output_shape"]) == 3]
    job = run(client, "gradcam", [image])
    assert job["layer"] == spatial[-1]  # the last layer with an H×W×C output
    assert job["options"] == {"method": "gradcam", "class_index": None,
                              "top_k": min(5, len(model["classes"])), "target": "class",
                              "quality": False}
    acts = run(client, "activations", [image], layer="conv1")
    channels = {row["name"]: row for row in layers}["conv1"]["output_shape"][-1]
    assert acts["options"]["channels"] == list(range(channels))
    filters = run(client, "filters", layer="conv1", options={"steps": 2, "size": 16})
    assert filters["options"]["filters"] == list(range(min(16, channels)))
    assert filters["options"]["seed"] == 0


def test_the_contract_is_served(client) -> None:
    from worker import contract

    body = client.get("/v1/contract").get_json()
    assert body["kinds"] == list(contract.KINDS)
    assert body["cam_methods"] == list(contract.CAM_METHODS)
    assert body["option_defaults"]["filters"]["steps"] == \
        contract.OPTION_DEFAULTS["filters"]["steps"]
    assert body["channel_order"]["caffe"] == "BGR" and body["channel_order"]["raw"] == "RGB"
    assert body["model_waiting"] == ["pending", "validating"]
    assert "shapes" in body["convscope_models"]
    settings = client.application.config["CONVSCOPE"]
    assert body["max_content_length"] == settings.max_content_length
