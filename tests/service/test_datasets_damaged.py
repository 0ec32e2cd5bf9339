"""Archives that are not hostile but damaged or odd, against a real Redis and worker: each
gets a 4xx problem or a dataset whose skipped list says what was left out and why, never a
500. Entries that would take one path twice, names a file system cannot hold or that are not
UTF-8, archives cut short, boxes with absurd numbers, labels given twice; and what the image
endpoint serves (the format the file holds, not its name's)."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.service.dataset_stack import A, Stack, stack_fixture  # noqa: F401 - 'stack'
from tests.service.job_http import assert_problem
from tests.service.test_datasets import png, post
from tests.service.test_datasets_hostile import register
from worker.datasets import open_dataset

SAME_PATH = "another entry of the archive has the same path"


def zip_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip that may hold one name twice (``zip_of`` takes a dict)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        for name, data in entries:
            archive.writestr(name, data)
    return buf.getvalue()


def ready(res) -> dict:
    body = res.get_json()
    assert res.status_code == 201, body
    assert body["status"] == "ready", body
    return body


COLLIDING = {
    "same_name_twice": ([("a.png", png(4, 4, 1)), ("a.png", png(5, 5, 2))], "a.png"),
    "double_slash": ([("x/a.png", png(4, 4, 1)), ("x//a.png", png(5, 5, 2))], "x/a.png"),
    "file_then_folder": ([("a", png(4, 4, 1)), ("a/b.png", png(5, 5, 2))], "a/b.png"),
    "folder_then_file": ([("a/b.png", png(4, 4, 1)), ("a", png(5, 5, 2))], "a"),
}


@pytest.mark.parametrize("case", COLLIDING, ids=list(COLLIDING))
def test_an_entry_taking_a_path_already_taken_is_skipped(stack: Stack, case: str) -> None:
    entries, second = COLLIDING[case]
    body = ready(post(stack, zip_entries([*entries, ("c.png", png(6, 6, 3))])))
    assert body["images"] == 2  # the first entry and c.png
    assert {"file": second, "reason": SAME_PATH} in body["skipped"]
    manifest = open_dataset(stack.settings.data_dir, body["id"])
    first = next(i for i in manifest.images if i.file == entries[0][0].replace("//", "/"))
    assert (manifest.root / first.file).read_bytes() == entries[0][1]  # not written over


def test_a_path_goes_to_the_first_entry_kept_not_to_a_corrupt_one(stack: Stack) -> None:
    good = png(5, 5)
    body = ready(post(stack, zip_entries([("a.png", b"not a png"), ("a.png", good),
                                          ("b", b"not an image"), ("b/c.png", png(4, 4))])))
    assert body["images"] == 2
    assert sorted(s["reason"] == SAME_PATH for s in body["skipped"]) == [False, False]
    manifest = open_dataset(stack.settings.data_dir, body["id"])
    assert [i.file for i in manifest.images] == ["a.png", "b/c.png"]
    assert (manifest.root / "a.png").read_bytes() == good


def test_a_duplicate_in_a_tar_and_a_second_labels_file_are_skipped(stack: Stack) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in [("a.png", png(4, 4)), ("labels.csv", b"a.png,cat\n"),
                           ("a.png", png(5, 5)), ("labels.csv", b"a.png,dog\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    body = ready(post(stack, buf.getvalue(), "d.tar"))
    assert body["images"] == 1 and body["classes"] == ["cat"]
    assert body["skipped"] == [{"file": "a.png", "reason": SAME_PATH},
                               {"file": "labels.csv", "reason": SAME_PATH}]


def test_names_too_long_for_a_file_system_are_skipped(stack: Stack) -> None:
    long_name, deep = "x" * 300 + ".png", "/".join(["d" * 200] * 16) + "/a.png"
    body = ready(post(stack, zip_entries([(long_name, png(4, 4)), (deep, png(4, 4)),
                                          ("ok.png", png(4, 4))])))
    assert body["images"] == 1
    reasons = {s["file"]: s["reason"] for s in body["skipped"]}
    assert "longer than 255 bytes" in reasons[long_name]
    assert "longer than 3072 bytes" in reasons[deep]


def _cut_tar(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:  # type: ignore[call-overload]
        noise = np.random.default_rng(0).integers(0, 256, 600_000, dtype=np.uint8).tobytes()
        for name, data in [("a.png", png(4, 4)), ("b.bin", noise),
                           ("c.png", png(4, 4))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    return data[:len(data) // 2]


# A bzip2 stream cut inside its one block cannot be read at all (not recognised as a tar);
# the others fail inside the entry b.bin, after a.png was read.
CUT = {"gz": ("w:gz", "d.tar.gz", "b.bin"), "bz2": ("w:bz2", "d.tar.bz2", "not a .zip, .tar"),
       "xz": ("w:xz", "d.tar.xz", "b.bin"), "plain": ("w", "d.tar", "b.bin")}


@pytest.mark.parametrize("case", CUT, ids=list(CUT))
def test_a_tar_cut_short_is_an_invalid_archive(stack: Stack, case: str) -> None:
    mode, filename, named = CUT[case]
    res = post(stack, _cut_tar(mode), filename)
    assert_problem(res, 422, "invalid_archive")
    assert named in res.get_json()["detail"]


def test_absurd_box_numbers_and_repeated_labels_are_warnings(stack: Stack) -> None:
    huge = b'{"a.png": [["c", 0, 0, 1' + b"0" * 400 + b', 2], ["c", 0, 0, 2, 2]]}'
    labels = b"a.png,cat\n./a.png,dog\n a.png ,cat\n"
    body = ready(post(stack, zip_entries([("a.png", png(4, 4)), ("boxes.json", huge),
                                          ("labels.csv", labels)])))
    manifest = open_dataset(stack.settings.data_dir, body["id"])
    assert manifest.images[0].boxes == (("c", 0, 0, 2, 2),)  # the absurd box dropped
    assert manifest.images[0].label == "cat"  # the first row kept
    assert any("box 0" in w and "not inside" in w for w in body["warnings"])
    assert any("row 2" in w and "already has the class 'cat'" in w for w in body["warnings"])
    assert not any("row 3" in w for w in body["warnings"])  # the same class again: fine


def test_names_that_are_not_utf8_are_renamed_and_served(stack: Stack) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="latin-1") as archive:
        for name in ("caf\xe9.png", "caf\xe8.png", "ok.png"):
            data = png(4, 4)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    body = ready(post(stack, buf.getvalue(), "d.tar"))
    manifest = open_dataset(stack.settings.data_dir, body["id"])
    assert [i.file for i in manifest.images] == ["caf%E8.png", "caf%E9.png", "ok.png"]
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogates anywhere
    res = stack.client.get(f"/v1/datasets/{body['id']}/images/0", headers=A)
    assert res.status_code == 200 and res.mimetype == "image/png"


def test_folder_names_not_utf8_or_with_control_characters_are_skipped(stack: Stack) -> None:
    folder = stack.allowed / "latin"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png(4, 4))
    (folder / "caf\udce9.png").write_bytes(png(4, 4))  # the bytes b"caf\xe9.png"
    (folder / "x\ny.png").write_bytes(png(4, 4))  # no HTTP header can carry its name
    body = ready(register(stack, folder))
    assert body["images"] == 1
    assert {"file": "x\ny.png", "reason": "file name has control characters"} \
        in body["skipped"]
    body["skipped"] = [s for s in body["skipped"] if s["file"] != "x\ny.png"]
    assert body["skipped"] == [{"file": "caf%E9.png",
                                "reason": "file name is not valid UTF-8"}]


def test_a_path_with_a_nul_byte_is_refused(stack: Stack) -> None:
    assert_problem(register(stack, f"{stack.allowed}\0/x"), 422, "invalid_request")


def test_an_image_is_served_as_the_format_it_holds_not_its_name(stack: Stack) -> None:
    gif = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(gif, "GIF")
    page = gif.getvalue() + b"<script>alert(1)</script>"
    mpo = io.BytesIO()  # a JPEG with a second picture (as cameras write): Pillow's "MPO"
    Image.new("RGB", (8, 8)).save(mpo, "MPO", save_all=True,
                                  append_images=[Image.new("RGB", (8, 8), (9, 9, 9))])
    body = ready(post(stack, zip_entries([("x.html", page), ("y.png", png(4, 4)),
                                          ("z.jpg", mpo.getvalue())])))
    names = [i.file for i in open_dataset(stack.settings.data_dir, body["id"]).images]
    for index, expected in ((names.index("x.html"), "image/gif"),
                            (names.index("y.png"), "image/png"),
                            (names.index("z.jpg"), "image/jpeg")):
        res = stack.client.get(f"/v1/datasets/{body['id']}/images/{index}", headers=A)
        assert res.status_code == 200 and res.mimetype == expected
        assert res.headers["X-Content-Type-Options"] == "nosniff"


def test_a_labels_file_with_no_usable_row_gives_no_labels(stack: Stack) -> None:
    body = ready(post(stack, zip_entries([("a.png", png(4, 4)),
                                          ("labels.csv", "a.png,caf\xe9\n".encode("latin-1")),
                                          ("boxes.json", b'{"a.png": [["c", 3, 3, 1, 1]]}')])))
    assert (body["has_labels"], body["has_boxes"], body["classes"]) == (False, False, [])
    assert any("labels.csv is not readable" in w for w in body["warnings"])
    assert any("boxes.json 'a.png' box 0" in w for w in body["warnings"])


def test_a_file_changed_into_a_bomb_is_not_served(stack: Stack) -> None:
    """A server folder's image replaced, after it was read, by the header of a 30000² PNG:
    Pillow refuses to open it, and the endpoint answers 404 (not a 500, and not the bytes:
    what it serves is an image of the dataset)."""
    folder = stack.allowed / "changed"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(4, 4))
    body = ready(register(stack, folder))
    def chunk(body: bytes) -> bytes:  # a PNG chunk: length, type and data, CRC
        return (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    small = png(4, 4)  # its signature, and its IHDR's depth and colour type
    ihdr = b"IHDR" + (30000).to_bytes(4, "big") * 2 + small[24:29]
    (folder / "a.png").write_bytes(small[:8] + chunk(ihdr) + chunk(b"IDAT" + zlib.compress(
        b"\0" * 100)) + chunk(b"IEND"))
    res = stack.client.get(f"/v1/datasets/{body['id']}/images/0", headers=A)
    assert_problem(res, 404, "not_found")
