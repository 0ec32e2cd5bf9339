"""``GET /v1/jobs/{id}/artifacts.tar``: a job's artifacts and result.json in one tar, the bytes
of each member those of the single-artifact endpoint; private to the job's tenant."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile

import numpy as np
import pytest

from models.shapes_data import generate_shapes
from tests.service.job_http import artifacts, assert_problem, encode, run

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
EXTENSION = {"image/png": ".png", "application/x-npy": ".npy"}


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        found = tar.getmembers()
        assert all(m.isfile() for m in found)
        return {m.name: tar.extractfile(m).read() for m in found}


@pytest.fixture(scope="module")
def two_images() -> list[bytes]:
    return [encode(np.asarray(image)) for image in generate_shapes(2, seed=3).images]


def test_bundle_holds_every_artifact_and_the_result(client, two_images) -> None:
    job = run(client, "gradcam", two_images)
    assert len(job["result"]["items"]) == 2
    singles = artifacts(client, job)
    assert {"heatmap", "heatmap.1", "overlay", "overlay.1"} <= set(singles)

    res = client.get(f"/v1/jobs/{job['id']}/artifacts.tar")
    assert res.status_code == 200 and res.mimetype == "application/x-tar"
    assert int(res.headers["Content-Length"]) == len(res.data)
    tar = members(res.data)
    types = {name: client.get(f"/v1/jobs/{job['id']}/artifacts/{name}").mimetype
             for name in singles}
    expected = {name + EXTENSION[types[name]] for name in singles} | {"result.json"}
    assert set(tar) == expected
    for name, data in singles.items():
        assert tar[name + EXTENSION[types[name]]] == data, name
    assert json.loads(tar["result.json"]) == client.get(f"/v1/jobs/{job['id']}").get_json()
    assert list(tar)[-1] == "result.json"
    for item in job["result"]["items"]:  # each item names its own artifacts, all in the tar
        assert {n + EXTENSION[types[n]] for n in item["artifacts"].values()} < set(tar)


def test_a_job_without_artifacts_gives_its_result_alone(client, two_images) -> None:
    job = run(client, "explain", two_images[:1], layer="conv1")
    res = client.get(f"/v1/jobs/{job['id']}/artifacts.tar")
    assert res.status_code == 200
    tar = members(res.data)
    assert list(tar) == ["result.json"]
    assert json.loads(tar["result.json"])["result"] == job["result"]


def test_bundle_is_private_to_its_tenant(settings, client, two_images) -> None:
    from service.app import create_app

    keyed = create_app(dataclasses.replace(settings, api_keys=("key-a", "key-b"))).test_client()
    job = run(keyed, "gradcam", two_images[:1], headers=A)
    path = f"/v1/jobs/{job['id']}/artifacts.tar"
    assert keyed.get(path, headers=A).status_code == 200
    assert_problem(keyed.get(path, headers=B), 404, "not_found")
    assert_problem(client.get(path), 404, "not_found")  # the open app's public tenant
    assert_problem(keyed.get(path), 401, "unauthorized")
    assert_problem(keyed.get("/v1/jobs/nosuchjob/artifacts.tar", headers=A), 404, "not_found")


def test_bundle_is_in_the_openapi_spec(client) -> None:
    spec = client.get("/openapi.json").get_json()
    get = spec["paths"]["/v1/jobs/{job_id}/artifacts.tar"]["get"]
    assert "application/x-tar" in get["responses"]["200"]["content"]
    assert get["summary"]


def test_members_are_named_by_their_content_type() -> None:
    from service.api.bundles import member_name

    assert member_name("quality_csv", "text/csv") == "quality_csv.csv"
    assert member_name("overlay.3", "image/png") == "overlay.3.png"
    assert member_name("odd", "application/octet-stream") == "odd.bin"


@pytest.mark.parametrize("keys, size", [(2, 1 << 30), (128, 1)])
def test_artifacts_read_in_groups_give_the_same_bundle(client, two_images, monkeypatch, keys,
                                                       size) -> None:
    """Groups of 2 keys, or of one artifact each (every artifact past the byte limit)."""
    from service.api import bundles

    job = run(client, "gradcam", two_images)
    whole = client.get(f"/v1/jobs/{job['id']}/artifacts.tar").data
    reads = []
    with client.application.app_context():
        store = bundles.backend().store
    original = store.get_artifacts
    monkeypatch.setattr(store, "get_artifacts",
                        lambda job_id, names: reads.append(names) or original(job_id, names))
    monkeypatch.setattr(bundles, "GROUP_KEYS", keys)
    monkeypatch.setattr(bundles, "GROUP_BYTES", size)
    grouped = client.get(f"/v1/jobs/{job['id']}/artifacts.tar").data
    assert grouped == whole
    assert all(len(names) == (keys if keys == 2 else 1) for names in reads)
    assert sum(len(names) for names in reads) == len(job["artifacts"])
