"""The layer atlas (``GET /v1/models/{id}/layers/{layer}/atlas?dataset=ID``) against a real
Redis and a real worker: 202 with the jobs computing it, then 200 with pattern and crops URLs
that resolve to PNGs; pages of channels; the caller's models and datasets only; refusals;
deleting the dataset or the model drops the cached atlas. And a dataset's images by index."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest

from service.auth import tenant_of
from tests.service.dataset_job_stack import A, B, DatasetJobStack, dataset_job_stack
from tests.service.job_http import assert_problem, decode_png, keras_bytes, poll, tiny_model, upload
from worker.dataset_crops import MARK
from worker.dataset_records import DatasetRecords
from worker.datasets import new_dataset_id, open_dataset
from worker.shapes_dataset import write_shapes_dataset

LAYER, N = "conv2", 24


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory) -> Iterator[DatasetJobStack]:
    """Two worker children: a page's filters job and the top_examples chunks run together."""
    base = tmp_path_factory.mktemp("atlas")
    with dataset_job_stack(settings, base, 2, "atlas tests") as handles:
        yield handles


@pytest.fixture(scope="module")
def dataset(stack: DatasetJobStack) -> str:
    """Tenant A's dataset of ``N`` shapes images."""
    return stack.shapes_dataset(N, seed=3)


def atlas(stack, dataset: str, layer: str = LAYER, model: str = "shapes",
          headers: dict | None = None, **page: int):
    query = "".join(f"&{k}={v}" for k, v in page.items())
    return stack.client.get(f"/v1/models/{model}/layers/{layer}/atlas?dataset={dataset}{query}",
                            headers=headers or A)


def computed(stack, dataset: str, headers: dict | None = None, **kwargs) -> dict:
    """The atlas page once its jobs ended: 202 first (jobs named, ``Location`` one of them)."""
    first = atlas(stack, dataset, headers=headers, **kwargs)
    if first.status_code == 202:
        body = first.get_json()
        assert first.headers["Location"] in [j["location"] for j in body["jobs"]]
        for job in body["jobs"]:
            assert poll(stack.client, job["id"], timeout=300, headers=headers or A)[
                "status"] == "succeeded"
    res = atlas(stack, dataset, headers=headers, **kwargs)
    assert res.status_code == 200, res.get_json()
    return res.get_json()


def png(stack, url: str, headers: dict | None = None) -> np.ndarray:
    res = stack.client.get(url, headers=headers or A)
    assert res.status_code == 200 and res.mimetype == "image/png", url
    return decode_png(res.data)


def test_atlas_is_computed_then_cached(stack, dataset) -> None:
    res = atlas(stack, dataset, limit=4)
    assert res.status_code == 202, res.get_json()
    kinds = sorted(j["kind"] for j in res.get_json()["jobs"])
    assert kinds == ["filters", "top_examples"]
    body = computed(stack, dataset, limit=4)
    assert (body["model"], body["layer"], body["dataset"]) == ("shapes", LAYER, dataset)
    assert [c["index"] for c in body["channels"]] == [0, 1, 2, 3]
    assert body["next"].endswith(f"?dataset={dataset}&offset=4&limit=4")
    for channel in body["channels"]:
        assert 0 <= channel["dead_fraction"] <= 1
        assert channel["top"] and {"file", "value", "y", "x", "crop", "image"} <= set(
            channel["top"][0])
        assert png(stack, channel["pattern"]).shape[2] == 3
        crops = png(stack, channel["crops"])
        assert (crops == MARK).all(axis=-1).any()  # the max units are marked
    jobs_before = len(stack.client.get("/v1/jobs", headers=A).get_json()["jobs"])
    again = atlas(stack, dataset, limit=4)
    assert again.status_code == 200 and again.get_json()["jobs"] == body["jobs"]
    assert len(stack.client.get("/v1/jobs", headers=A).get_json()["jobs"]) == jobs_before


def test_pages_share_the_top_examples_job(stack, dataset) -> None:
    first = computed(stack, dataset, limit=4)
    res = atlas(stack, dataset, offset=4, limit=3)
    assert res.status_code == 202
    assert [j["kind"] for j in res.get_json()["jobs"]] == ["filters"]  # top_examples is done
    page = computed(stack, dataset, offset=4, limit=3)
    assert [c["index"] for c in page["channels"]] == [4, 5, 6]
    assert page["jobs"]["top_examples"] == first["jobs"]["top_examples"]
    total = page["total"]
    assert total == 32
    last = computed(stack, dataset, offset=total - 2, limit=8)
    assert [c["index"] for c in last["channels"]] == [total - 2, total - 1]
    assert last["next"] is None
    assert_problem(atlas(stack, dataset, limit=65), 400, "bad_request")


def test_refusals(stack, dataset) -> None:
    assert_problem(atlas(stack, dataset, layer="gap"), 400, "layer_not_spatial")
    assert_problem(atlas(stack, dataset, layer="nope"), 400, "unknown_layer")
    assert_problem(atlas(stack, dataset, model="nope"), 404, "unknown_model")
    assert_problem(atlas(stack, "d" + "0" * 16), 404, "unknown_dataset")
    pending = new_dataset_id()
    DatasetRecords(stack.r, 600).put({"id": pending, "tenant": tenant_of("key-a"),
                                      "status": "processing"})
    assert_problem(atlas(stack, pending), 409, "dataset_not_ready")


def test_another_tenant_sees_nothing(stack, dataset, tmp_path) -> None:
    assert_problem(atlas(stack, dataset, headers=B), 404, "unknown_dataset")
    assert stack.client.get(f"/v1/datasets/{dataset}/images/0", headers=B).status_code == 404
    res = upload(stack.client, keras_bytes(tiny_model(), tmp_path), name="atlas-tiny",
                 headers=A)
    assert res.status_code == 201, res.get_json()
    own = dataset_of(stack, B, tmp_path)
    assert_problem(atlas(stack, own, model=res.get_json()["id"], layer="conv", headers=B),
                   404, "unknown_model")


def dataset_of(stack, headers: dict, tmp_path) -> str:
    """Two shapes images uploaded as the caller of ``headers``; returns the id."""
    folder = tmp_path / "images"
    write_shapes_dataset(folder, 2, seed=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.glob("*.png")):
            archive.write(path, path.name)
    res = stack.client.post("/v1/datasets?wait=60", headers=headers,
                            data={"file": (io.BytesIO(buf.getvalue()), "b.zip")},
                            content_type="multipart/form-data")
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


def atlas_keys(stack) -> list[bytes]:
    return list(stack.r.scan_iter("convscope:v1:atlas:*"))


def test_deleting_the_dataset_or_the_model_drops_the_atlas(stack, tmp_path) -> None:
    own = stack.shapes_dataset(8, seed=9)
    res = upload(stack.client, keras_bytes(tiny_model(), tmp_path), name="atlas-gone",
                 headers=A)
    model = res.get_json()["id"]
    before = set(atlas_keys(stack))
    body = computed_for(stack, own, model)
    assert len(body["channels"]) == 4
    made = set(atlas_keys(stack)) - before
    assert len(made) == 1
    assert stack.client.delete(f"/v1/models/{model}", headers=A).status_code == 204
    assert not made & set(atlas_keys(stack))
    assert_problem(atlas(stack, own, model=model, layer="conv"), 404, "unknown_model")
    computed(stack, own, limit=2)
    made = set(atlas_keys(stack)) - before
    assert len(made) == 1
    assert stack.client.delete(f"/v1/datasets/{own}", headers=A).status_code == 204
    assert not made & set(atlas_keys(stack))
    assert_problem(atlas(stack, own, limit=2), 404, "unknown_dataset")


def computed_for(stack, dataset: str, model: str) -> dict:
    first = atlas(stack, dataset, model=model, layer="conv")
    assert first.status_code == 202, first.get_json()
    for job in first.get_json()["jobs"]:
        assert poll(stack.client, job["id"], timeout=300, headers=A)["status"] == "succeeded"
    res = atlas(stack, dataset, model=model, layer="conv")
    assert res.status_code == 200, res.get_json()
    return res.get_json()


def test_dataset_images_by_index(stack, dataset) -> None:
    manifest = open_dataset(stack.settings.data_dir, dataset)
    res = stack.client.get(f"/v1/datasets/{dataset}/images/2", headers=A)
    assert res.status_code == 200 and res.mimetype.startswith("image/")
    assert res.data == (manifest.root / manifest.images[2].file).read_bytes()
    assert_problem(stack.client.get(f"/v1/datasets/{dataset}/images/{N}", headers=A), 404,
                   "not_found")


def test_openapi_documents_the_atlas(stack) -> None:
    spec = stack.client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/models/{model_id}/layers/{layer}/atlas"]["get"]
    assert {"200", "202", "400", "404", "409"} <= set(operation["responses"])
    assert "Location" in operation["responses"]["202"]["headers"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"dataset", "offset", "limit"} <= names
    assert "/v1/datasets/{dataset_id}/images/{index}" in spec["paths"]
