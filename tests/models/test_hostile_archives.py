"""Hostile ``.keras`` archives (issue 11, item 7): zip bombs, too many members, members whose
headers lie, JSON nested too deeply, members that point outside the archive. Each is refused
with a reason before it costs memory or disk; nothing is ever written outside the archive's
folder (the data dir, for uploads), and nothing is left there; a real model still loads.

Memory is measured with :mod:`tracemalloc` (zipfile's buffers and NumPy's arrays are traced),
writes with an audit hook (:class:`tests.models.hostile_zips.WriteLog`), with ``$TMPDIR``
pointed at an empty folder of the test's own.
"""

from __future__ import annotations

import json
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.safe_load import (
    ArchiveLimitError,
    ArchiveLimits,
    InvalidModelError,
    UnsafeModelError,
    json_depth,
    load_keras_file,
)
from tests.models import tiny_models as tm
from tests.models.hostile_zips import (
    MiB,
    WriteLog,
    legit_archive,
    lie_about_count,
    lie_about_size,
    members,
    outside,
    repack,
)

# Keras's own saving code converts variables with np.array(copy=False): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TRACED_PEAK = 4 * MiB  # what refusing may cost; the payloads below are 64 MiB
MANY = 10_001  # junk members added to the model's 3: one past the default cap, with them


@pytest.fixture()
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$TMPDIR``, empty, for this test (``tempfile`` reads it again)."""
    folder = tmp_path / "system_tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert tempfile.gettempdir() == str(folder)
    return folder


@pytest.fixture()
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "uploads"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def legit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The members of a real ``.keras`` archive: config.json, metadata.json, weights."""
    return members(legit_archive(tmp_path_factory.mktemp("legit") / "legit.keras"))


def traced_peak(call: Callable[[], object]) -> int:
    """Bytes allocated at the peak of ``call()`` (which must raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def forbid_reading_members(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, decompressing any member fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a member was decompressed")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


def test_a_legitimate_model_loads_and_writes_only_in_its_folder(uploads: Path,
                                                                 system_tmp: Path) -> None:
    path = legit_archive(uploads / "m1.keras")
    with WriteLog.recording() as written:
        loaded = load_keras_file(path)
    x = tm.images(2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               tm.functional().predict(x, verbose=0), rtol=1e-6)
    assert any("model.weights.h5" in p for p in written)  # it was unpacked, and we saw it
    assert not outside(written, uploads)
    assert sorted(uploads.iterdir()) == [path]  # the unpacked copy is gone
    assert not any(system_tmp.iterdir())


def test_a_config_bomb_is_refused_before_it_is_inflated(uploads: Path, legit: dict) -> None:
    # Valid JSON: the model's config followed by 64 MiB of spaces, in ~64 KB of archive.
    path = repack(uploads / "bomb.keras", legit, padding={"config.json": 64 * MiB})
    assert path.stat().st_size < MiB
    peak = traced_peak(lambda: load_keras_file(path))
    assert peak < TRACED_PEAK
    with pytest.raises(ArchiveLimitError,
                       match=rf"config.json unpacks to {64 * MiB + len(legit['config.json'])} "
                             rf"bytes; the limit is {16 * MiB}"):
        load_keras_file(path)
    assert sorted(uploads.iterdir()) == [path]


def test_too_many_members_are_refused_before_the_directory_is_parsed(
        tmp_path: Path, legit: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = repack(tmp_path / "many.keras", {**legit, **{f"junk/{i}": b"" for i in range(MANY)}})

    def parse(*args, **kwargs):
        raise AssertionError("zipfile was asked to parse the directory")

    monkeypatch.setattr(zipfile, "ZipFile", parse)
    with pytest.raises(ArchiveLimitError, match=r"holds 10004 members; the limit is 10000"):
        load_keras_file(path)


def test_members_are_counted_even_when_the_end_record_understates_them(
        tmp_path: Path, legit: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = repack(tmp_path / "many.keras", {**legit, **{f"junk/{i}": b"" for i in range(MANY)}})
    lie_about_count(path, 3)
    forbid_reading_members(monkeypatch)
    with pytest.raises(ArchiveLimitError, match=r"holds 10004 members; the limit is 10000"):
        load_keras_file(path)


def test_member_and_total_sizes_are_refused_from_the_directory(
        tmp_path: Path, legit: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    limits = ArchiveLimits(max_member_bytes=2 * MiB, max_total_bytes=3 * MiB)
    big = repack(tmp_path / "big.keras", legit, padding={"extra.bin": 4 * MiB}, fill=b"\0")
    several = repack(tmp_path / "several.keras", legit,
                     padding={f"extra{i}.bin": MiB for i in range(4)}, fill=b"\0")
    forbid_reading_members(monkeypatch)
    with pytest.raises(ArchiveLimitError, match=rf"'extra.bin' unpacks to {4 * MiB} bytes; "
                                                rf"the limit is {2 * MiB}"):
        load_keras_file(big, limits=limits)
    with pytest.raises(ArchiveLimitError, match=rf"the archive unpacks to \d+ bytes; the limit "
                                                rf"is {3 * MiB}"):
        load_keras_file(several, limits=limits)


def test_extra_members_are_never_unpacked(uploads: Path, system_tmp: Path, legit: dict) -> None:
    # Within the limits (96 MiB in all), so the model loads; Keras would unpack all of it.
    path = repack(uploads / "m2.keras", legit, fill=b"\0",
                  padding={f"extra{i}.bin": 32 * MiB for i in range(3)})
    with WriteLog.recording() as written:
        load_keras_file(path)
    assert not outside(written, uploads), outside(written, uploads)
    assert not [p for p in written if Path(p).name.startswith("extra")]
    assert not any(system_tmp.iterdir())
    assert sorted(uploads.iterdir()) == [path]


def test_a_config_whose_header_lies_is_refused_as_it_inflates(uploads: Path,
                                                               legit: dict) -> None:
    path = repack(uploads / "liar.keras", legit, padding={"config.json": 64 * MiB})
    lie_about_size(path, "config.json", 2048)  # passes every size check
    with pytest.raises(InvalidModelError, match=r"'config.json' is damaged"):
        load_keras_file(path)
    assert traced_peak(lambda: load_keras_file(path)) < TRACED_PEAK
    assert sorted(uploads.iterdir()) == [path]


@pytest.mark.parametrize(("factor", "reason"), [
    (0.5, r"'model.weights.h5' is damaged: Bad CRC-32"),  # zipfile stops at the stated size
    (2.0, r"'model.weights.h5' unpacks to \d+ bytes, not the \d+ its header states"),
], ids=["understated", "overstated"])
def test_weights_whose_header_lies_are_refused_and_nothing_is_left(
        uploads: Path, system_tmp: Path, legit: dict, factor: float, reason: str) -> None:
    path = repack(uploads / "liar.keras", legit)
    lie_about_size(path, "model.weights.h5", int(len(legit["model.weights.h5"]) * factor))
    with WriteLog.recording() as written, pytest.raises(InvalidModelError, match=reason):
        load_keras_file(path)
    assert not outside(written, uploads)
    assert sorted(uploads.iterdir()) == [path]
    assert not any(system_tmp.iterdir())


DEEP = {
    "config_lists": ("config.json", "[" * 100_000 + "]" * 100_000),
    "config_objects": ("config.json", '{"a": ' * 100_000 + "0" + "}" * 100_000),
    "metadata": ("metadata.json", '{"keras_version": ' + "[" * 201 + "]" * 201 + "}"),
}


@pytest.mark.parametrize("case", DEEP)
def test_deep_json_is_refused_without_recursion(tmp_path: Path, legit: dict, case: str) -> None:
    name, text = DEEP[case]
    path = repack(tmp_path / "deep.keras", {**legit, name: text.encode()})
    with pytest.raises(ArchiveLimitError,
                       match=rf"{name} nests arrays and objects \d+ levels deep; the limit is 200"):
        load_keras_file(path)


def test_json_within_the_depth_limit_loads(tmp_path: Path, legit: dict) -> None:
    metadata = '{"keras_version": "3", "note": ' + "[" * 150 + "]" * 150 + "}"
    path = repack(tmp_path / "ok.keras", {**legit, "metadata.json": metadata.encode()})
    assert load_keras_file(path).name == tm.functional().name


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_json_depth_counts_structure_not_strings(legit: dict) -> None:
    texts = ["0", "{}", "[[1, [2]], {\"a\": {\"b\": []}}]", r'["[[[[", "\"]]]", "\\", "\\\"{"]',
             r'{"k\\": [{"\\\\\"": "x"}]}', legit["config.json"].decode()]
    for text in texts:
        assert json_depth(text) == _depth(json.loads(text)), text
    assert json_depth('["unterminated [[[') >= 1  # invalid: never less than a parser reaches


@pytest.mark.parametrize("name", ["../escape.txt", "assets/../../escape.txt", "/etc/escape",
                                  "assets\\..\\..\\escape.txt"])
def test_members_pointing_outside_the_archive_are_refused(tmp_path: Path, legit: dict,
                                                          name: str) -> None:
    path = repack(tmp_path / "escape.keras", {**legit, name: b"x"})
    with pytest.raises(UnsafeModelError, match="points outside"):
        load_keras_file(path)
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize(("field", "value"), [("max_members", 0), ("max_json_depth", 10_000)])
def test_limits_name_a_bad_value(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{field}={value}"):
        ArchiveLimits(**{field: value})
