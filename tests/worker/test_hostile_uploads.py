"""Hostile uploads through the worker (issue 11, item 7): ``describe_model`` records each as
the model's refusal (status ``refused``, a stable error code, the reason) without raising,
removes the uploaded file, and writes nothing outside the data dir; a real model is still
described. The limits are settings (``CONVSCOPE_MAX_MODEL_*``).

The worker's job store is a dict here (``describe_model`` only gets and puts model records);
the model cache, the loader and the files are the real ones.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from models.safe_load import ArchiveLimitError, ArchiveLimits, load_keras_file
from tests.models.hostile_zips import (
    MiB,
    WriteLog,
    legit_archive,
    lie_about_size,
    members,
    outside,
    repack,
)
from worker import runner
from worker.model_cache import ModelCache
from worker.settings import Settings
from worker.uploads import archive_limits, upload_path

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
MODEL_ID = "m0123456789abcdef"


class Records:
    """The two model-record methods of ``worker.store.JobStore`` that describing uses."""

    def __init__(self) -> None:
        self.models: dict[str, dict] = {}

    def get_model(self, model_id: str) -> dict | None:
        return self.models.get(model_id)

    def put_model(self, model_id: str, record: dict, ttl: int | None = None,
                  replace_only: bool = False) -> bool:
        if replace_only and model_id not in self.models:
            return False
        self.models[model_id] = {**record, "ttl": ttl}
        return True


@pytest.fixture()
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Records]:
    """Default settings on a data dir of this test's own; ``$TMPDIR`` an empty folder."""
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    settings, records = Settings(data_dir=tmp_path / "data"), Records()
    cache = ModelCache(settings, records.get_model)
    monkeypatch.setattr(runner, "_store", lambda: records)
    monkeypatch.setattr(runner, "_cache", lambda: cache)
    monkeypatch.setattr(runner, "get_settings", lambda: settings)
    return settings, records


def _bomb(legit: dict, path: Path) -> None:
    repack(path, legit, padding={"config.json": 64 * MiB})


def _many_members(legit: dict, path: Path) -> None:
    repack(path, {**legit, **{f"junk/{i}": b"" for i in range(10_001)}})


def _deep_config(legit: dict, path: Path) -> None:
    repack(path, {**legit, "config.json": b"[" * 100_000 + b"]" * 100_000})


def _lying_weights(legit: dict, path: Path) -> None:
    repack(path, legit)
    lie_about_size(path, "model.weights.h5", len(legit["model.weights.h5"]) // 2)


def _escaping_member(legit: dict, path: Path) -> None:
    repack(path, {**legit, "assets/../../../escape.txt": b"x"})


HOSTILE: dict[str, tuple[Callable[[dict, Path], None], str, str]] = {
    "config_bomb": (_bomb, "invalid_model", r"config.json unpacks to \d+ bytes; the limit is"),
    "many_members": (_many_members, "invalid_model", "holds 10004 members; the limit is 10000"),
    "deep_config": (_deep_config, "invalid_model", r"config.json nests arrays and objects"),
    "lying_weights": (_lying_weights, "invalid_model", r"'model.weights.h5' is damaged"),
    "escaping_member": (_escaping_member, "unsafe_model", "points outside"),
}


def _upload(settings: Settings, records: Records, build: Callable[[Path], object]) -> Path:
    """An upload as the API leaves it: the file in ``uploads/``, a ``validating`` record."""
    path = upload_path(settings.data_dir, MODEL_ID)
    path.parent.mkdir(parents=True, exist_ok=True)
    build(path)
    records.put_model(MODEL_ID, {"id": MODEL_ID, "name": "upload", "status": "validating",
                                 "tenant": "public", "source": "upload", "preprocess": "raw",
                                 "file": path.name, "error": None})
    return path


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_upload_is_refused_and_removed(worker, tmp_path: Path, case: str) -> None:
    settings, records = worker
    build, code, reason = HOSTILE[case]
    legit = members(legit_archive(tmp_path / "legit" / "legit.keras"))
    path = _upload(settings, records, lambda p: build(legit, p))
    with WriteLog.recording() as written:
        runner.describe_model(MODEL_ID)  # records the refusal; never raises
    record = records.get_model(MODEL_ID)
    assert record is not None and record["status"] == "refused"
    assert record["error"]["code"] == code
    assert re.search(reason, record["error"]["message"]), record["error"]
    assert record["ttl"] == settings.refused_model_ttl
    assert not path.exists()
    assert not any(path.parent.iterdir())  # no unpacked copy left either
    assert not outside(written, settings.data_dir)
    assert not any((tmp_path / "system_tmp").iterdir())


def test_a_legitimate_upload_is_described(worker, tmp_path: Path) -> None:
    settings, records = worker
    path = _upload(settings, records, legit_archive)
    with WriteLog.recording() as written:
        runner.describe_model(MODEL_ID)
    record = records.get_model(MODEL_ID)
    assert record is not None and record["status"] == "ready", record.get("error")
    assert record["input_shape"] == [16, 16, 3]
    assert [row["name"] for row in record["layers"]][-1] == "predictions"
    assert sorted(path.parent.iterdir()) == [path]
    assert not outside(written, settings.data_dir)
    assert not any((tmp_path / "system_tmp").iterdir())


def test_the_limits_are_settings() -> None:
    env = {"CONVSCOPE_MAX_MODEL_MEMBERS": "7", "CONVSCOPE_MAX_MODEL_MEMBER_BYTES": "1000",
           "CONVSCOPE_MAX_MODEL_UNPACKED_BYTES": "2000",
           "CONVSCOPE_MAX_MODEL_JSON_BYTES": "300", "CONVSCOPE_MAX_MODEL_JSON_DEPTH": "9"}
    assert archive_limits(Settings.from_env(env)) == ArchiveLimits(
        max_members=7, max_member_bytes=1000, max_total_bytes=2000, max_json_bytes=300,
        max_json_depth=9)
    assert archive_limits(Settings()) == ArchiveLimits()  # one set of defaults


def test_limits_from_the_environment_refuse_a_model(tmp_path: Path) -> None:
    path = legit_archive(tmp_path / "legit.keras")
    limits = archive_limits(Settings.from_env({"CONVSCOPE_MAX_MODEL_JSON_DEPTH": "3"}))
    with pytest.raises(ArchiveLimitError, match=r"config.json nests .* the limit is 3"):
        load_keras_file(path, limits=limits)
    assert load_keras_file(path, limits=archive_limits(Settings.from_env({}))) is not None


def test_the_worker_applies_the_configured_limits(worker, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A legitimate archive refused once the member limit is set below its member count:
    the settings reach the loader through the worker's model cache."""
    settings, records = worker
    tight = dataclasses.replace(settings, max_model_members=2)
    cache = ModelCache(tight, records.get_model)
    monkeypatch.setattr(runner, "_cache", lambda: cache)
    monkeypatch.setattr(runner, "get_settings", lambda: tight)
    path = _upload(tight, records, legit_archive)
    runner.describe_model(MODEL_ID)
    record = records.get_model(MODEL_ID)
    assert record["status"] == "refused" and record["error"]["code"] == "invalid_model"
    assert re.search(r"members; the limit is 2", record["error"]["message"]), record["error"]
    assert not path.exists()
