"""Tenants: with API keys every ``/v1`` call needs a Bearer key, and one tenant's jobs and
models are invisible to another. Same Redis and worker as the open app."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.service.job_http import (
    assert_problem,
    encode,
    keras_bytes,
    poll,
    run,
    submit,
    tiny_model,
    upload,
)

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture(scope="module")
def keyed(settings, worker):
    from service.app import create_app

    app = create_app(dataclasses.replace(settings, api_keys=("key-a", "key-b")))
    return app.test_client()


@pytest.fixture(scope="module")
def a_job(keyed) -> dict:
    image = encode(np.full((64, 64, 3), 60, np.uint8))
    return run(keyed, "activations", [image], layer="conv1", headers=A)


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models", "/v1/models/shapes/layers"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic a2V5LWE6", "Bearer "],
                         ids=["none", "wrong_key", "basic", "empty"])
def test_keys_required(keyed, path: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    res = keyed.get(path, headers=headers)
    assert_problem(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


def test_submit_without_key_queues_nothing(keyed) -> None:
    before = len(keyed.get("/v1/jobs?limit=500", headers=A).get_json()["jobs"])
    res = submit(keyed, "activations", [encode(np.zeros((64, 64, 3), np.uint8))],
                 layer="conv1")
    assert_problem(res, 401, "unauthorized")
    assert len(keyed.get("/v1/jobs?limit=500", headers=A).get_json()["jobs"]) == before


def test_health_needs_no_key(keyed) -> None:
    assert keyed.get("/healthz").status_code == 200


def test_jobs_are_private(keyed, client, a_job: dict) -> None:
    job_id = a_job["id"]
    assert keyed.get(f"/v1/jobs/{job_id}", headers=A).get_json()["status"] == "succeeded"
    assert keyed.get(f"/v1/jobs/{job_id}/artifacts/grid", headers=A).status_code == 200
    for other, headers in ((keyed, B), (client, {})):  # tenant B, and the open app's public
        assert_problem(other.get(f"/v1/jobs/{job_id}", headers=headers), 404, "not_found")
        assert_problem(other.get(f"/v1/jobs/{job_id}?wait=1", headers=headers), 404,
                       "not_found")
        for name in ("grid", "activations"):
            assert_problem(other.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers=headers),
                           404, "not_found")
        assert_problem(other.delete(f"/v1/jobs/{job_id}", headers=headers), 404, "not_found")
    listed_a = [j["id"] for j in keyed.get("/v1/jobs?limit=500", headers=A).get_json()["jobs"]]
    listed_b = [j["id"] for j in keyed.get("/v1/jobs?limit=500", headers=B).get_json()["jobs"]]
    assert job_id in listed_a and job_id not in listed_b
    assert keyed.get(f"/v1/jobs/{job_id}", headers=A).get_json()["status"] == "succeeded"


def test_idempotency_keys_are_per_tenant(keyed) -> None:
    image = encode(np.full((64, 64, 3), 200, np.uint8))
    ids = []
    for headers in (A, B):
        res = submit(keyed, "activations", [image], layer="conv1",
                     headers={**headers, "Idempotency-Key": "shared-key-1"})
        assert res.status_code == 202
        ids.append(res.get_json()["id"])
        assert poll(keyed, ids[-1], headers=headers)["status"] == "succeeded"
    assert ids[0] != ids[1]


def test_uploaded_models_are_private(keyed, client, tmp_path: Path) -> None:
    res = upload(keyed, keras_bytes(tiny_model(), tmp_path), name="a-private", headers=A)
    assert res.status_code == 201, res.get_json()
    model_id = res.get_json()["id"]
    image = encode(np.zeros((16, 16, 3), np.uint8))
    try:
        assert keyed.get(f"/v1/models/{model_id}", headers=A).status_code == 200
        for other, headers in ((keyed, B), (client, {})):
            models = other.get("/v1/models", headers=headers).get_json()["models"]
            listed = [m["id"] for m in models]
            assert model_id not in listed
            for path in (f"/v1/models/{model_id}", f"/v1/models/{model_id}/layers"):
                assert_problem(other.get(path, headers=headers), 404, "unknown_model")
            assert_problem(submit(other, "activations", [image], model=model_id, layer="conv",
                                  headers=headers), 404, "unknown_model")
            assert_problem(other.delete(f"/v1/models/{model_id}", headers=headers), 404,
                           "unknown_model")
        listed = [m["id"] for m in keyed.get("/v1/models", headers=A).get_json()["models"]]
        assert model_id in listed  # B's failed delete left it alone
    finally:
        assert keyed.delete(f"/v1/models/{model_id}", headers=A).status_code == 204
