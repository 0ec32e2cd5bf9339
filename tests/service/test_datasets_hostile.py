"""Hostile archives and server folders: refused with a stable code, and nothing written
outside the data dir (the whole test folder is compared before and after); folder
registration only inside ``CONVSCOPE_DATASET_ROOTS`` once links and ``..`` are resolved."""

from __future__ import annotations

import dataclasses
import io
import stat
import struct
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.service.dataset_stack import A, Stack, stack_fixture  # noqa: F401 - 'stack'
from tests.service.job_http import assert_problem
from tests.service.test_datasets import png, post, tar_of, zip_of
from worker.datasets import datasets_dir

EVIL = f"evil-{uuid.uuid4().hex[:8]}.png"


def _zip_link() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("ok.png", png(4, 4))
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buf.getvalue()


def _tar_special(kind: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        data = png(4, 4)
        info = tarfile.TarInfo("ok.png")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        special = tarfile.TarInfo("special.png")
        special.type, special.linkname = kind, "/etc/passwd"
        archive.addfile(special)
    return buf.getvalue()


def _many_tiny(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i in range(n):
            archive.writestr(f"f{i}.txt", b"")
    return buf.getvalue()


def _lying_zip(data: bytes, stated: int) -> bytes:
    """A zip of ``data`` whose headers (local and central) state ``stated`` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok.png", png(4, 4))
        archive.writestr("zeros.png", data)
    raw = bytearray(buf.getvalue())
    local = raw.index(b"PK\x03\x04zeros.png"[:4], raw.index(b"zeros.png") - 30)
    central = raw.rindex(b"PK\x01\x02")  # the last central record: zeros.png's
    struct.pack_into("<I", raw, local + 22, stated)
    struct.pack_into("<I", raw, central + 24, stated)
    return bytes(raw)


ZEROS = b"\0" * (3 * 2**20)  # 3 MiB, past the stack's 1 MiB per file; deflates to ~3 KiB
HOSTILE = {
    "zip_slip": (zip_of({"ok.png": png(4, 4), f"../../outside/{EVIL}": png(4, 4)}),
                 "x.zip", 422, "unsafe_archive"),
    "zip_absolute": (zip_of({f"/tmp/{EVIL}": png(4, 4)}), "x.zip", 422, "unsafe_archive"),
    "zip_backslash_slip": (zip_of({f"..\\..\\outside\\{EVIL}": png(4, 4)}), "x.zip", 422,
                           "unsafe_archive"),
    "tar_slip": (tar_of({"ok.png": png(4, 4), f"a/../../../outside/{EVIL}": png(4, 4)}),
                 "x.tar.gz", 422, "unsafe_archive"),
    "tar_absolute": (tar_of({f"/tmp/{EVIL}": png(4, 4)}, "w"), "x.tar", 422,
                     "unsafe_archive"),
    "zip_symlink": (_zip_link(), "x.zip", 422, "unsafe_archive"),
    "tar_symlink": (_tar_special(tarfile.SYMTYPE), "x.tar", 422, "unsafe_archive"),
    "tar_hardlink": (_tar_special(tarfile.LNKTYPE), "x.tar", 422, "unsafe_archive"),
    "tar_device": (_tar_special(tarfile.CHRTYPE), "x.tar", 422, "unsafe_archive"),
    "10000_tiny_files": (_many_tiny(10_000), "x.zip", 413, "archive_too_large"),
    "zip_bomb": (zip_of({"ok.png": png(4, 4), "zeros.png": ZEROS}), "x.zip", 413,
                 "archive_too_large"),
    "tar_gz_bomb": (tar_of({"ok.png": png(4, 4), "zeros.png": ZEROS}), "x.tar.gz", 413,
                    "archive_too_large"),
    # a directory that understates an entry's size: it is read only up to what it states
    "zip_understated_size": (_lying_zip(ZEROS, 100), "x.zip", 422, "invalid_archive"),
    "total_size": (zip_of({f"z{i}.bin": b"\0" * (2**20 - 1) for i in range(5)}), "x.zip", 413,
                   "archive_too_large"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_archives_are_refused_and_write_nothing_outside(stack: Stack,
                                                                case: str) -> None:
    data, filename, status, code = HOSTILE[case]
    before = stack.files_outside_data()
    res = post(stack, data, filename)
    assert_problem(res, status, code)
    assert stack.files_outside_data() == before
    assert not Path("/tmp", EVIL).exists()
    assert not any(datasets_dir(stack.settings.data_dir).rglob(EVIL))
    listed = stack.client.get("/v1/datasets", headers=A).get_json()["datasets"]
    failed = [d for d in listed if d["status"] == "failed"]
    assert failed and all(not Path(datasets_dir(stack.settings.data_dir), d["id"]).exists()
                          for d in failed)  # a refused dataset keeps no files


def register(stack: Stack, path: str | Path, client=None):
    return (client or stack.client).post("/v1/datasets?wait=30", data={"path": str(path)},
                                         headers=A, content_type="multipart/form-data")


def test_a_folder_inside_the_roots_is_read_in_place(stack: Stack) -> None:
    folder = stack.allowed / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(6, 5))
    (folder / "sub" / "b.png").write_bytes(png(3, 3))
    (folder / "labels.csv").write_text("a.png,x\nsub/b.png,y\n")
    secret = stack.base / "outside" / "secret.png"
    secret.write_bytes(png(4, 4))
    (folder / "leak.png").symlink_to(secret)
    res = register(stack, folder)
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert (body["source"], body["path"], body["name"]) == ("folder", str(folder), "photos")
    assert body["images"] == 2 and body["classes"] == ["x", "y"]
    assert [s["file"] for s in body["skipped"]] == ["leak.png"]
    assert "outside" in body["skipped"][0]["reason"]
    assert stack.client.delete(f"/v1/datasets/{body['id']}", headers=A).status_code == 204
    assert (folder / "a.png").is_file()  # the operator's folder is left alone


def test_folders_outside_the_roots_are_refused(stack: Stack) -> None:
    outside = stack.base / "outside"
    escape = stack.allowed / "escape"
    escape.symlink_to(outside, target_is_directory=True)
    before = stack.client.get("/v1/datasets", headers=A).get_json()["datasets"]
    for path in (outside, stack.allowed / ".." / ".." / "outside", escape, "/", "allowed"):
        assert_problem(register(stack, path), 403, "path_not_allowed")
    assert stack.client.get("/v1/datasets", headers=A).get_json()["datasets"] == before
    assert_problem(register(stack, stack.allowed / "nope"), 422, "not_a_folder")


def test_folders_are_refused_when_no_roots_are_set(stack: Stack) -> None:
    from service.app import create_app

    closed = create_app(dataclasses.replace(stack.settings, dataset_roots=())).test_client()
    assert_problem(register(stack, stack.allowed, closed), 403, "path_not_allowed")
