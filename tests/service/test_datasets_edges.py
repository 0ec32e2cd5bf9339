"""Dataset inputs at their edges, each found by probing the live service: folders whose path
cannot be resolved, a link loop inside a folder, a folder swapped for a link after it was
read, a zip stored as a tar's last file, damaged compressed trailers, control characters in
names, zip names without the UTF-8 flag, and a quote left open in ``labels.csv``."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.service.dataset_stack import A, Stack, stack_fixture  # noqa: F401 - 'stack'
from tests.service.job_http import assert_problem
from tests.service.test_datasets import png, post, tar_of, zip_of
from tests.service.test_datasets_hostile import register
from worker.datasets import DatasetMoved, open_dataset, read_images


def _folder(stack: Stack, name: str, image: bytes) -> Path:
    """A new folder inside the roots holding ``a.png``."""
    folder = stack.allowed / name
    folder.mkdir()
    (folder / "a.png").write_bytes(image)
    return folder


def test_folders_whose_path_cannot_be_resolved_are_refused_cleanly(stack: Stack) -> None:
    long_name = stack.allowed / ("a" * 300)  # one name past the file system's 255 bytes
    assert_problem(register(stack, long_name), 422, "not_a_folder")
    loop = stack.allowed / "loop"
    loop.symlink_to("loop")
    try:
        for path in (loop, loop / "x"):
            assert_problem(register(stack, path), 422, "not_a_folder")
        outside_loop = stack.base / "outside" / "loop"
        outside_loop.symlink_to("loop")
        assert_problem(register(stack, outside_loop), 403, "path_not_allowed")
        outside_loop.unlink()
    finally:
        loop.unlink()


def test_a_link_loop_inside_a_folder_is_skipped_not_fatal(stack: Stack) -> None:
    folder = _folder(stack, "with-loop", png(5, 5))
    (folder / "self.png").symlink_to("self.png")
    res = register(stack, folder)
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body["status"] == "ready" and body["images"] == 1
    assert [(s["file"], s["reason"]) for s in body["skipped"]] == [
        ("self.png", "a link that cannot be followed (a loop of links)")]


def test_a_folder_swapped_for_a_link_out_of_the_roots_is_no_longer_read(stack: Stack) -> None:
    folder = _folder(stack, "swap", png(6, 6, 1))
    res = register(stack, folder)
    assert res.status_code == 201, res.get_json()
    dataset = res.get_json()["id"]
    image = stack.client.get(f"/v1/datasets/{dataset}/images/0", headers=A)
    assert image.status_code == 200 and image.mimetype == "image/png"
    secret = stack.base / "outside" / "swapped"
    secret.mkdir()
    (secret / "a.png").write_bytes(b"TOP SECRET, not an image")
    folder.rename(stack.allowed / "swap.orig")
    folder.symlink_to(secret, target_is_directory=True)
    try:
        assert_problem(stack.client.get(f"/v1/datasets/{dataset}/images/0", headers=A), 404,
                       "not_found")
        settings = stack.settings
        manifest = open_dataset(settings.data_dir, dataset, settings.dataset_roots)
        with pytest.raises(DatasetMoved, match="outside the folders"):
            read_images(manifest, 0, 1)
        folder.unlink()  # back where it was: read again
        folder.symlink_to(stack.allowed / "swap.orig", target_is_directory=True)
        assert read_images(manifest, 0, 1)[0].pixels.shape == (6, 6, 3)
    finally:
        folder.unlink()


def test_an_image_changed_into_something_else_is_not_served(stack: Stack) -> None:
    folder = _folder(stack, "changed", png(4, 4))
    dataset = register(stack, folder).get_json()["id"]
    (folder / "a.png").write_bytes(b"<html>not an image any more</html>")
    assert_problem(stack.client.get(f"/v1/datasets/{dataset}/images/0", headers=A), 404,
                   "not_found")


def test_a_tar_whose_last_file_is_a_zip_is_read_as_the_tar(stack: Stack) -> None:
    inner = zip_of({"fromzip1.png": png(4, 4, 1), "fromzip2.png": png(4, 4, 2)})
    for mode, suffix in (("w", "x.tar"), ("w:gz", "x.tar.gz")):
        res = post(stack, tar_of({"real.png": png(5, 5), "inner.zip": inner}, mode), suffix)
        assert res.status_code == 201, res.get_json()
        body = res.get_json()
        assert body["images"] == 1, body  # real.png, not the inner zip's two files
        assert [s["file"] for s in body["skipped"]] == ["inner.zip"]


def _damaged_gzip(tar: bytes) -> bytes:
    """The tar gzipped without compression, one byte of a file's text changed: the bytes
    inflate, and only the CRC in the gzip trailer tells."""
    raw = bytearray(gzip.compress(tar, compresslevel=0))
    at = raw.index(b"a.png,circle")
    raw[at + 7] ^= 0x20  # circle -> cIrcle
    return bytes(raw)


def test_a_damaged_or_cut_compressed_trailer_is_refused(stack: Stack) -> None:
    entries = {"a.png": png(4, 4), "labels.csv": b"a.png,circle\n"}
    tar = tar_of(entries, "w")
    gz = gzip.compress(tar)
    for data in (_damaged_gzip(tar), gz[:-5], gz[:-8] + b"\0" * 8, bz2.compress(tar)[:-4],
                 lzma.compress(tar)[:-6]):
        assert_problem(post(stack, data, "x.tar.gz"), 422, "invalid_archive")
    for data in (gz, bz2.compress(tar), lzma.compress(tar), gzip.compress(tar) + gz):
        res = post(stack, data, "x.tar.gz")  # whole streams (two gzip members are one file)
        assert res.status_code == 201 and res.get_json()["classes"] == ["circle"], res.get_json()


def test_control_characters_in_names_skip_the_entry(stack: Stack) -> None:
    for name in ("a\x01.png", "a\x1b[31m.png", "a\x7f.png", "sub\n/a.png"):
        res = post(stack, zip_of({name: png(4, 4), "b.png": png(4, 4, 1)}))
        assert res.status_code == 201, (name, res.get_json())
        body = res.get_json()
        assert body["images"] == 1
        assert [s["reason"] for s in body["skipped"]] == ["file name has control characters"]


def _zip_named(raw_names: list[bytes]) -> bytes:
    """A zip whose entries' names are ``raw_names``' bytes, without the UTF-8 flag (zipfile
    would set it: the names are written as ASCII placeholders, then patched)."""
    placeholders = [f"n{i:0{len(raw) - 5}d}.png".encode() for i, raw in enumerate(raw_names)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i, placeholder in enumerate(placeholders):
            archive.writestr(placeholder.decode(), png(4, 4, i))
    data = buf.getvalue()
    for placeholder, raw in zip(placeholders, raw_names, strict=True):
        assert len(placeholder) == len(raw) and data.count(placeholder) == 2
        data = data.replace(placeholder, raw)
    return data


def test_zip_names_without_the_utf8_flag_are_read_as_utf8_or_else_as_cp437(
        stack: Stack) -> None:
    names = ["café.png".encode(), "naïve.png".encode("cp437"), b"a\xff\xfe.png"]
    res = post(stack, _zip_named(names))
    assert res.status_code == 201, res.get_json()
    manifest = open_dataset(stack.settings.data_dir, res.get_json()["id"])
    assert sorted(image.file for image in manifest.images) == sorted(
        ["café.png", "naïve.png", b"a\xff\xfe.png".decode("cp437")])


def test_a_quote_left_open_in_labels_is_warned_about(stack: Stack) -> None:
    labels = b'a.png,"circle\nb.png,square\n'
    res = post(stack, zip_of({"a.png": png(4, 4), "b.png": png(4, 4, 1), "labels.csv": labels}))
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body["classes"] == [] and not body["has_labels"]
    assert any("quote left open" in warning for warning in body["warnings"]), body["warnings"]


def test_a_zip_is_told_by_its_first_bytes(stack: Stack, tmp_path: Path) -> None:
    from worker.dataset_archive import DatasetLimits, archive_members

    path = tmp_path / "x.bin"
    path.write_bytes(zip_of({"a.png": png(4, 4)}))
    assert [m.name for m in archive_members(path, DatasetLimits())] == ["a.png"]
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: its directory alone
    assert list(archive_members(path, DatasetLimits())) == []
    inner = tmp_path / "inner.zip"
    inner.write_bytes(zip_of({"z.png": png(4, 4)}))
    with tarfile.open(path, "w") as archive:  # a tar, its one file a zip
        archive.add(inner, arcname="inner.zip")
    assert [m.name for m in archive_members(path, DatasetLimits())] == ["inner.zip"]


def _members(path: Path, data: bytes) -> list[str]:
    from worker.dataset_archive import DatasetLimits, archive_members

    path.write_bytes(data)
    return [member.name for member in archive_members(path, DatasetLimits())]


def test_archives_common_tools_write_are_read(tmp_path: Path) -> None:
    """Each of these was read before the archive's type came from its first bytes, and the
    compressed trailer was checked: the checks must not refuse them."""
    path, image = tmp_path / "upload.bin", png(4, 4)
    zipped = zip_of({"a.png": image})
    assert _members(path, b"#!/bin/sh\nexit 0\n" + zipped) == ["a.png"]  # a stub before it
    bzh = tar_of({"BZh_cats/a.png": image}, "w")  # a plain tar that starts with "BZh"
    assert _members(path, bzh) == ["BZh_cats/a.png"]
    tar = tar_of({"a.png": image}, "w")
    alone = lzma.compress(tar, format=lzma.FORMAT_ALONE)  # .tar.lzma
    assert _members(path, alone) == ["a.png"]
    for trailing in (b"\n", b"\0" * 4096, b"junk after the stream"):  # as gzip(1) ignores
        assert _members(path, gzip.compress(tar) + trailing) == ["a.png"]


def test_what_follows_a_tars_end_is_bounded(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import tar_streams
    from worker.archive_errors import ArchiveTooLargeError

    monkeypatch.setattr(tar_streams, "TRAILER_BYTES", 2**16)
    path, tar = tmp_path / "upload.bin", tar_of({"a.png": png(4, 4)}, "w")
    assert _members(path, tar + b"\0" * 2**15) == ["a.png"]
    for data in (tar + b"\0" * 2**17,  # decompressed bytes
                 gzip.compress(tar) + b"\0" * 2**17,  # the file's bytes: gzip's padding
                 gzip.compress(tar) + gzip.compress(b"") * 2**13):  # empty gzip members
        with pytest.raises(ArchiveTooLargeError, match="follow the tar archive's end"):
            _members(path, data)


def test_an_upload_gone_before_a_worker_reads_it_is_refused_not_a_crash(tmp_path: Path) -> None:
    """As it was before the archive's type came from its first bytes: 422, not 500 (found by
    schemathesis, whose API and worker have data dirs of their own)."""
    from worker.archive_errors import InvalidArchiveError
    from worker.dataset_archive import DatasetLimits, archive_members

    with pytest.raises(InvalidArchiveError, match="the uploaded archive is gone"):
        archive_members(tmp_path / "never-written.bin", DatasetLimits())
