"""``/v1/datasets`` against a real Redis and a real worker: archives read into datasets (images,
what was skipped and why, labels and boxes), the manifest workers read, tenants kept apart,
DELETE removing files and record."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import numpy as np
from PIL import Image

from tests.service.dataset_stack import A, B, Stack, stack_fixture  # noqa: F401 - 'stack'
from tests.service.job_http import assert_problem, encode
from worker.datasets import dataset_dir, open_dataset, read_images


def png(h: int, w: int, seed: int = 0) -> bytes:
    return encode(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def tar_of(entries: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def post(stack: Stack, data: bytes, filename: str = "set.zip", wait: float = 30,
         headers: dict | None = None, **fields: str):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return stack.client.post(f"/v1/datasets?wait={wait}", data=form, headers=headers or A,
                             content_type="multipart/form-data")


LABELS = b"file,class\na.png,cat\nb.png,dog\nsub/c.png,cat\nmissing.png,cat\n"
BOXES = json.dumps({"a.png": [["cat", 1, 2, 5, 7]],
                    "b.png": [["dog", 0, 0, 10, 12], ["dog", 0, 0, 11, 5]]}).encode()


def test_zip_with_labels_boxes_and_skipped_files(stack: Stack) -> None:
    archive = zip_of({"set/a.png": png(8, 8, 1), "set/b.png": png(12, 10, 2),
                      "set/sub/c.png": png(5, 6, 3), "set/notes.txt": b"hello",
                      "set/broken.png": png(32, 32, 4)[:600], "set/.DS_Store": b"\0\1",
                      "set/labels.csv": LABELS, "set/boxes.json": BOXES})
    res = post(stack, archive, name="pets")
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert res.headers["Location"] == f"/v1/datasets/{body['id']}"
    assert (body["name"], body["status"], body["images"]) == ("pets", "ready", 3)
    assert body["has_labels"] and body["has_boxes"] and body["classes"] == ["cat", "dog"]
    reasons = {s["file"]: s["reason"] for s in body["skipped"]}
    assert set(reasons) == {"set/notes.txt", "set/broken.png", "set/.DS_Store"}
    assert "not an image" in reasons["set/notes.txt"]
    assert "corrupt" in reasons["set/broken.png"]
    assert any("missing.png" in w for w in body["warnings"])  # a label for no image
    assert any("'b.png' box 1" in w for w in body["warnings"])  # x1 = 11 > width 10
    assert body["expires"] > body["created"]
    assert stack.client.get(f"/v1/datasets/{body['id']}", headers=A).get_json() == body

    manifest = open_dataset(stack.settings.data_dir, body["id"])
    assert [i.file for i in manifest.images] == ["a.png", "b.png", "sub/c.png"]
    assert [i.size for i in manifest.images] == [(8, 8), (12, 10), (5, 6)]
    assert [i.label for i in manifest.images] == ["cat", "dog", "cat"]
    assert manifest.images[0].boxes == (("cat", 1, 2, 5, 7),)
    assert manifest.images[1].boxes == (("dog", 0, 0, 10, 12),)  # the bad box dropped
    reads = read_images(manifest, 1, 10)
    assert [r.image.file for r in reads] == ["b.png", "sub/c.png"]
    np.testing.assert_array_equal(reads[0].pixels, np.asarray(Image.open(io.BytesIO(
        png(12, 10, 2)))))


def test_tar_gz_upload_then_delete_removes_files_and_record(stack: Stack) -> None:
    res = post(stack, tar_of({"./one.png": png(4, 4), "two.png": png(6, 6)}), "imgs.tar.gz")
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert (body["name"], body["images"], body["has_labels"]) == ("imgs", 2, False)
    folder = dataset_dir(stack.settings.data_dir, body["id"])
    assert (folder / "files" / "one.png").is_file() and not (folder / "upload.bin").exists()
    listed = stack.client.get("/v1/datasets", headers=A).get_json()["datasets"]
    assert body["id"] in [d["id"] for d in listed]
    assert stack.client.delete(f"/v1/datasets/{body['id']}", headers=A).status_code == 204
    assert not folder.exists()
    assert_problem(stack.client.get(f"/v1/datasets/{body['id']}", headers=A), 404,
                   "unknown_dataset")
    listed = stack.client.get("/v1/datasets", headers=A).get_json()["datasets"]
    assert body["id"] not in [d["id"] for d in listed]


def test_without_wait_it_is_processed_by_the_worker(stack: Stack) -> None:
    res = post(stack, zip_of({"a.png": png(4, 4)}), wait=0)
    # the answer is the record as read once: an idle worker may have read one image by then
    assert (res.status_code, res.get_json()["status"]) in {(202, "processing"), (201, "ready")}
    done = stack.client.get(f"{res.headers['Location']}?wait=30", headers=A).get_json()
    assert done["status"] == "ready" and done["images"] == 1


def test_not_an_archive_and_no_images_are_refused(stack: Stack) -> None:
    assert_problem(post(stack, b"just some text " * 20, "x.zip"), 422, "invalid_archive")
    assert_problem(post(stack, zip_of({"readme.txt": b"no pictures"})), 422, "empty_dataset")


def test_another_tenant_cannot_see_or_delete_a_dataset(stack: Stack) -> None:
    mine = post(stack, zip_of({"a.png": png(4, 4)}), headers=A).get_json()
    path = f"/v1/datasets/{mine['id']}"
    assert_problem(stack.client.get(path, headers=B), 404, "unknown_dataset")
    assert_problem(stack.client.delete(path, headers=B), 404, "unknown_dataset")
    theirs = stack.client.get("/v1/datasets", headers=B).get_json()["datasets"]
    assert mine["id"] not in [d["id"] for d in theirs]
    assert stack.client.get(path, headers=A).get_json()["status"] == "ready"
    assert dataset_dir(stack.settings.data_dir, mine["id"]).is_dir()
    assert_problem(stack.client.get(path), 401, "unauthorized")


def test_the_endpoints_are_in_the_openapi_spec(stack: Stack) -> None:
    spec = stack.client.get("/openapi.json").get_json()
    paths = spec["paths"]
    post_ = paths["/v1/datasets"]["post"]
    assert {"201", "202", "403", "413", "422"} <= set(post_["responses"])
    ref = post_["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"file", "path", "name"} <= set(form["properties"])
    assert "404" in paths["/v1/datasets/{dataset_id}"]["get"]["responses"]
    assert {"204", "404"} <= set(paths["/v1/datasets/{dataset_id}"]["delete"]["responses"])
