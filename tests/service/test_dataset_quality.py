"""Dataset jobs ``class_cam`` and ``quality`` against a real Redis and a real worker of two
children: the fanned-out results equal an in-test pass over the whole dataset (per-image
Grad-CAM via make_cam grouped by true label; models/quality.py called directly), whatever the
chunking and the order chunks finish in; Grad-CAM beats the random map on deletion with the
blurred baseline; a dataset without boxes gives ``pointing_game`` null; the API's refusals."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from models.shapes_data import CLASSES
from tests.service.dataset_job_stack import A, DatasetJobStack, dataset_job_stack
from tests.service.job_http import assert_problem, decode_png, poll
from worker.datasets import open_dataset, read_images
from worker.shapes_dataset import write_shapes_dataset

LAYER, N = "conv4", 30


@pytest.fixture(scope="module", name="stack")
def quality_stack(settings, tmp_path_factory) -> DatasetJobStack:
    """Two worker children; the shapes dataset of these tests is made with the stack."""
    base = tmp_path_factory.mktemp("dsquality")
    with dataset_job_stack(settings, base, 2, "dataset quality tests") as handles:
        handles.shapes_id = handles.shapes_dataset(N, seed=21)  # type: ignore[attr-defined]
        yield handles


@pytest.fixture(scope="module")
def shapes_id(stack: DatasetJobStack) -> str:
    return stack.shapes_id  # type: ignore[attr-defined]


def submit(stack: DatasetJobStack, dataset: str, kind: str, **options: object):
    data = {"model": "shapes", "kind": kind, "layer": LAYER, "dataset": dataset,
            "options": json.dumps(options)}
    return stack.client.post("/v1/jobs", data=data, headers=A,  # type: ignore[attr-defined]
                             content_type="multipart/form-data")


def finished(stack: DatasetJobStack, dataset: str, kind: str, **options: object) -> dict:
    res = submit(stack, dataset, kind, **options)
    assert res.status_code == 202, res.get_json()
    job = poll(stack.client, res.get_json()["id"], timeout=300, headers=A)
    assert job["status"] == "succeeded", job
    return job


def whole_dataset(stack: DatasetJobStack, dataset: str):
    manifest = open_dataset(stack.settings.data_dir, dataset)
    pixels = np.stack([r.pixels for r in read_images(manifest, 0, len(manifest))])
    labels = np.array([CLASSES.index(i.label) for i in manifest.images])
    return manifest, pixels.astype(np.float32), labels


def artifact(stack: DatasetJobStack, job: dict, name: str):
    res = stack.client.get(f"/v1/jobs/{job['id']}/artifacts/{name}", headers=A)
    assert res.status_code == 200, name
    return res


def test_class_cam_equals_a_numpy_pass(stack, shapes_id, shapes_model) -> None:
    from models.cam import make_cam

    _, pixels, labels = whole_dataset(stack, shapes_id)
    cam = make_cam("gradcam", shapes_model, LAYER)(pixels, class_index=labels.tolist())
    predicted = np.argmax(cam.probs, axis=1)
    jobs = [finished(stack, shapes_id, "class_cam", chunk_images=size) for size in (7, 4)]
    for job in jobs:
        result = job["result"]
        assert (result["images"], result["corrupt"], result["method"]) == (N, 0, "gradcam")
        want = [{"index": c, "label": CLASSES[c], "count": int((labels == c).sum())}
                for c in range(len(CLASSES)) if (labels == c).any()]
        assert result["classes"] == want
        confusion = np.zeros((len(CLASSES),) * 2, np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        assert result["confusion"] == {"labels": list(CLASSES), "matrix": confusion.tolist()}
        assert result["accuracy"] == pytest.approx(float((labels == predicted).mean()))
        for c in {w["index"] for w in want}:
            got = np.load(io.BytesIO(artifact(stack, job, f"mean_cam_{c}").data))
            assert got.shape == (64, 64) and got.dtype == np.float32
            np.testing.assert_allclose(got, cam.heatmaps[labels == c].mean(axis=0), atol=1e-5)
            assert decode_png(artifact(stack, job, f"mean_cam_{c}_png").data).shape[:2] == \
                (64, 64)
    assert [j["result"]["chunks"] for j in jobs] == [5, 8]


def reference_quality(stack, dataset: str, model, steps: int, baseline: str) -> dict:
    """Mean AUCs and pointing game per map over the whole dataset, by models/quality.py."""
    from models.cam import make_cam
    from models.quality import (
        baseline_images,
        deletion_insertion,
        points_into,
        random_map,
        trapezoid_auc,
    )

    manifest, pixels, labels = whole_dataset(stack, dataset)
    maps = {"gradcam": make_cam("gradcam", model, LAYER)(pixels, labels.tolist()).heatmaps,
            "random": np.stack([random_map((64, 64), 0, i) for i in range(len(pixels))])}
    bases = baseline_images(pixels, baseline)
    out = {}
    for name, heat in maps.items():
        deletion, insertion = deletion_insertion(
            lambda x: model.predict(x, verbose=0), pixels, heat, labels, bases, steps)
        hits = [points_into(h, [b[1:] for b in image.boxes])
                for h, image in zip(heat, manifest.images, strict=True)]
        out[name] = {"deletion_auc": trapezoid_auc(deletion).mean(),
                     "insertion_auc": trapezoid_auc(insertion).mean(),
                     "pointing_game": float(np.mean(hits))}
    return out


def test_quality_equals_a_whole_dataset_pass(stack, shapes_id, shapes_model) -> None:
    job = finished(stack, shapes_id, "quality", methods=["gradcam"], steps=8,
                   chunk_images=7)
    result = job["result"]
    assert (result["images"], result["chunks"], result["baseline"]) == (N, 5, "blur")
    rows = {r["method"]: r for r in result["methods"] + result["baselines"]}
    assert [r["method"] for r in result["baselines"]] == ["random", "centre"]
    want = reference_quality(stack, shapes_id, shapes_model, 8, "blur")
    for name, expected in want.items():
        for key, value in expected.items():
            assert rows[name][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (name, key)
        assert len(rows[name]["deletion_curve"]) == 9
    assert rows["gradcam"]["deletion_auc"] < rows["random"]["deletion_auc"]
    assert rows["gradcam"]["insertion_auc"] > rows["random"]["insertion_auc"]
    csv = artifact(stack, job, "quality_csv")
    assert csv.mimetype == "text/csv"
    lines = csv.data.decode().splitlines()
    assert lines[0].startswith("method,pointing_game,deletion_auc,insertion_auc")
    assert [line.split(",")[0] for line in lines[1:]] == ["gradcam", "random", "centre"]
    png = artifact(stack, job, "quality_curves")
    assert png.mimetype == "image/png" and decode_png(png.data).shape[1] > 400

    again = finished(stack, shapes_id, "quality", methods=["gradcam"], steps=8,
                     chunk_images=3)["result"]  # other chunks, finishing in another order
    # Sums merge exactly in any order; what other chunks change is the model's batches (7
    # images a call, then 3), and oneDNN's float32 results move in the last bits with the
    # batch (seen: a relative 2.6e-9 on an AUC), so equal to float32's precision, not exactly.
    for got, first in zip(again["methods"] + again["baselines"],
                          result["methods"] + result["baselines"], strict=True):
        for key in ("deletion_auc", "insertion_auc", "pointing_game"):
            assert got[key] == pytest.approx(first[key], rel=1e-6), (got["method"], key)
        np.testing.assert_allclose(got["deletion_curve"], first["deletion_curve"], rtol=1e-6)


def test_quality_without_boxes_has_no_pointing_game(stack) -> None:
    folder = stack.base / "no-boxes"
    write_shapes_dataset(folder, 6, seed=3)
    (folder / "boxes.json").unlink()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    res = stack.client.post("/v1/datasets?wait=60", headers=A,
                            data={"file": (io.BytesIO(buf.getvalue()), "nb.zip")},
                            content_type="multipart/form-data")
    assert res.status_code == 201, res.get_json()
    job = finished(stack, res.get_json()["id"], "quality", methods=["gradcam"], steps=4,
                   baseline="black")
    for row in job["result"]["methods"] + job["result"]["baselines"]:
        assert row["pointing_game"] is None and row["pointing_images"] == 0
        assert row["deletion_auc"] is not None and row["images"] == 6


def test_refusals(stack, shapes_id) -> None:
    for kind, options in [("quality", {"methods": ["nope"]}), ("quality", {"methods": []}),
                          ("quality", {"methods": ["gradcam", "gradcam"]}),
                          ("quality", {"steps": 0}), ("quality", {"steps": 129}),
                          ("quality", {"baseline": "grey"}), ("class_cam", {"method": "x"}),
                          ("class_cam", {"k": 3})]:
        assert_problem(submit(stack, shapes_id, kind, **options), 400, "invalid_options")
    spec = stack.client.get("/openapi.json").get_json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    kinds = spec["components"]["schemas"][ref]["properties"]["kind"]["enum"]
    assert {"class_cam", "quality"} <= set(kinds)
