"""Dataset jobs (``top_examples``) against a real Redis and a real worker of two children:
the fanned-out result equals a brute-force NumPy pass through the same layer; any chunking
and any finishing order give the same result, each image counted once; a corrupt image is
counted, not fatal; cancel stops the chunks not started; the API's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from service.auth import tenant_of
from tests.pipeline import wait_until
from tests.service.dataset_job_stack import A, B, DatasetJobStack, dataset_job_stack
from tests.service.job_http import assert_problem, decode_png, encode, poll
from worker.chunks import RUNNING_UNITS
from worker.contract import QUEUE
from worker.dataset_records import DatasetRecords
from worker.datasets import new_dataset_id, open_dataset, read_images

LAYER, K, N = "conv2", 5, 48


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory) -> DatasetJobStack:
    with dataset_job_stack(settings, tmp_path_factory.mktemp("dsjobs"), 2,
                           "dataset job tests") as handles:
        yield handles


@pytest.fixture(scope="module")
def shapes_id(stack: DatasetJobStack) -> str:
    return stack.shapes_dataset(N, seed=7)


def finished(stack: DatasetJobStack, dataset: str, **options: object) -> dict:
    res = stack.submit(dataset, layer=LAYER, k=K, **options)
    assert res.status_code == 202, res.get_json()
    job = poll(stack.client, res.get_json()["id"], timeout=240, headers=A)
    assert job["status"] == "succeeded", job
    return job


def brute_force(stack: DatasetJobStack, dataset: str, model) -> list[dict]:
    """Per channel: score = max over (y, x), unit = first max in row-major order, top K by
    larger score then smaller image index, crop = the unit's receptive box."""
    import keras

    from models.receptive_field import receptive_grid

    manifest = open_dataset(stack.settings.data_dir, dataset)
    pixels = np.stack([r.pixels for r in read_images(manifest, 0, len(manifest))])
    probe = keras.Model(model.inputs, model.get_layer(LAYER).output)
    acts = np.asarray(probe.predict(pixels.astype(np.float32), verbose=0))
    grid = receptive_grid(model, LAYER)
    n, _, w, c = acts.shape
    out = []
    for channel in range(c):
        flat = acts[..., channel].reshape(n, -1)
        scores, where = flat.max(axis=1), flat.argmax(axis=1)
        order = sorted(range(n), key=lambda i: (-scores[i], i))[:K]
        top = [{"file": manifest.images[i].file, "value": float(scores[i]),
                "y": int(where[i] // w), "x": int(where[i] % w),
                "crop": grid.box(int(where[i] // w), int(where[i] % w))} for i in order]
        out.append({"index": channel, "dead_fraction": float((scores <= 0).mean()),
                    "top": top})
    return out


def assert_same_channels(got: list[dict], want: list[dict]) -> None:
    assert [c["index"] for c in got] == [c["index"] for c in want]
    for g, w in zip(got, want, strict=True):
        assert g["dead_fraction"] == pytest.approx(w["dead_fraction"]), g["index"]
        for key in ("file", "y", "x", "crop"):
            assert [t[key] for t in g["top"]] == [t[key] for t in w["top"]], (g["index"], key)
        np.testing.assert_allclose([t["value"] for t in g["top"]],
                                   [t["value"] for t in w["top"]], rtol=1e-5, atol=1e-6)


def test_top_examples_equal_a_brute_force_pass(stack, shapes_id, shapes_model) -> None:
    job = finished(stack, shapes_id, chunk_images=7)
    result = job["result"]
    assert (result["images"], result["corrupt"], result["chunks"]) == (N, 0, 7)
    assert job["chunks"] == 7 and job["dataset"] == shapes_id and job["progress"] == 1.0
    assert_same_channels(result["channels"], brute_force(stack, shapes_id, shapes_model))
    for channel in result["channels"]:
        assert sum(channel["histogram"]["counts"]) == N
    assert sorted(job["artifacts"]) == sorted(f"crops_{c}" for c in range(32))
    res = stack.client.get(f"/v1/jobs/{job['id']}/artifacts/crops_3", headers=A)
    assert res.status_code == 200 and res.mimetype == "image/png"
    strip = decode_png(res.data)
    assert strip.shape[1] > 3 * strip.shape[0]  # K tiles (and labels) side by side
    assert stack.records().runs(job["id"]) == 7 + 1  # each chunk once, one merge


def test_any_chunking_and_order_give_the_same_result(stack, shapes_id) -> None:
    """Chunks of 7, 3 and 1 images on two worker children finish in whatever order they
    run; the merged results are equal, and every image is counted once. Equal: the same
    files, units, crops and histograms, values to float32 precision (oneDNN's convolutions
    block a batch of 7 differently from a batch of 1, and the last bits move)."""
    results = [finished(stack, shapes_id, chunk_images=size)["result"] for size in (7, 3, 1)]
    assert [r["chunks"] for r in results] == [7, 16, 48]
    for result in results:
        assert (result["images"], result["corrupt"]) == (N, 0)
        assert_same_channels(result["channels"], results[0]["channels"])
        assert [c["histogram"] for c in result["channels"]] == \
            [c["histogram"] for c in results[0]["channels"]]


def test_a_corrupt_image_is_counted_not_fatal(stack) -> None:
    dataset = stack.shapes_dataset(10, seed=11)
    manifest = open_dataset(stack.settings.data_dir, dataset)
    (manifest.root / manifest.images[4].file).write_bytes(b"\x89PNG not really")
    job = finished(stack, dataset, chunk_images=3, channels=[0, 1])
    assert (job["result"]["images"], job["result"]["corrupt"]) == (9, 1)
    files = {t["file"] for c in job["result"]["channels"] for t in c["top"]}
    assert manifest.images[4].file not in files


def test_cancel_stops_the_chunks_not_started(stack, shapes_id) -> None:
    res = stack.submit(shapes_id, layer="conv4", k=K, chunk_images=1)
    job_id = res.get_json()["id"]
    records = stack.records()
    wait_until(lambda: records.done_count(job_id) >= 1, 120, "a chunk to end", interval=0.005)
    assert stack.client.delete(f"/v1/jobs/{job_id}", headers=A).status_code in (200, 202)
    runs = records.runs(job_id)
    assert runs < N
    wait_until(lambda: stack.r.llen(QUEUE) == 0 and not any(
        m.decode().startswith(job_id) for m in stack.r.zrange(RUNNING_UNITS, 0, -1)),
        120, "the remaining chunk messages to be consumed")
    job = poll(stack.client, job_id, headers=A)
    assert job["status"] == "canceled" and job["result"] is None
    assert records.runs(job_id) == runs  # no chunk was claimed after the cancel
    # the partials of the chunks done before the cancel were deleted, none stored after it
    assert not list(stack.r.scan_iter(records.key(job_id, "partial:*")))
    assert not stack.r.exists(records.key(job_id, "floors"))


def test_refusals(stack, shapes_id) -> None:
    submit = stack.submit
    assert_problem(submit(shapes_id, headers=B), 404, "unknown_dataset")
    assert_problem(submit("d" + "0" * 16), 404, "unknown_dataset")
    assert_problem(submit("../etc"), 404, "unknown_dataset")
    image = encode(np.zeros((64, 64, 3), np.uint8))
    assert_problem(submit(shapes_id, images=[image]), 400, "invalid_request")
    assert_problem(submit(None), 400, "missing_dataset")
    assert_problem(submit(shapes_id, layer="gap"), 400, "layer_not_spatial")
    assert_problem(submit(shapes_id, k=0), 400, "invalid_options")
    assert_problem(submit(shapes_id, k=65), 400, "invalid_options")
    assert_problem(submit(shapes_id, channels=[32]), 400, "filter_out_of_range")
    res = submit(shapes_id, channels=[5, 3, 5])  # a channel listed twice
    assert_problem(res, 400, "invalid_options")
    assert "[5] more than once" in res.get_json()["detail"]
    assert_problem(submit(shapes_id, chunk_images=10**6), 400, "invalid_options")
    assert_problem(submit(shapes_id, steps=3), 400, "invalid_options")
    res = stack.client.post("/v1/jobs", headers=A, content_type="multipart/form-data",
                            data={"model": "shapes", "kind": "activations",
                                  "dataset": shapes_id})
    assert_problem(res, 400, "invalid_request")
    pending = new_dataset_id()  # a dataset of tenant A still being read
    DatasetRecords(stack.r, 600).put({"id": pending, "tenant": tenant_of("key-a"),
                                      "status": "processing"})
    assert_problem(submit(pending), 409, "dataset_not_ready")


def test_openapi_names_the_dataset_field_and_kind(stack) -> None:
    spec = stack.client.get("/openapi.json").get_json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = spec["components"]["schemas"][ref]["properties"]
    assert "dataset" in fields and "top_examples" in fields["kind"]["enum"]


def test_cli_submit_over_a_dataset_writes_the_crops(stack, shapes_id) -> None:
    from click.testing import CliRunner

    from service.cli import main
    from tests.pipeline import serve_api, worker_env

    env = {**worker_env(stack.settings), "CONVSCOPE_API_KEYS": "key-a,key-b"}
    out = stack.base / "cli-out"
    with serve_api(env, stack.base / "api.log") as url:
        res = CliRunner().invoke(main, [
            "submit", "--dataset", shapes_id, "--kind", "top_examples", "--model", "shapes",
            "--layer", LAYER, "-o", "k=2", "-o", "channels=[4, 9]", "-o", "chunk_images=16",
            "--out", str(out), "--url", url, "--api-key", "key-a"])
    assert res.exit_code == 0, res.output
    (folder,) = out.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["crops_4.png", "crops_9.png",
                                                        "result.json"]
    assert (folder / "crops_4.png").read_bytes().startswith(b"\x89PNG")


def test_a_folder_swapped_for_a_link_out_of_the_roots_fails_its_job(stack) -> None:
    """A registered folder is read only while it is inside the roots: swapped since for a
    link to elsewhere, a job over it fails ``unknown_dataset`` and reads nothing there."""
    from worker.shapes_dataset import write_shapes_dataset

    folder, elsewhere = stack.base / "roots" / "moved", stack.base / "elsewhere"
    write_shapes_dataset(folder, 8, 3)
    res = stack.client.post("/v1/datasets?wait=60", data={"path": str(folder)}, headers=A,
                            content_type="multipart/form-data")
    assert res.status_code == 201, res.get_json()
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)
    res = stack.submit(res.get_json()["id"], layer=LAYER, k=K)
    assert res.status_code == 202, res.get_json()
    job = poll(stack.client, res.get_json()["id"], timeout=240, headers=A)
    assert job["status"] == "failed" and job["error"]["code"] == "unknown_dataset", job
    assert "outside the folders datasets may come from" in job["error"]["message"]
