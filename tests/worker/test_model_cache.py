"""The worker's model cache: a deleted upload is forgotten, a built-in model whose files
change (trained, or given weights) is loaded again; unchanged models are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.job_http import keras_bytes, tiny_model
from worker.model_cache import ModelCache
from worker.settings import Settings
from worker.uploads import upload_path


def test_a_deleted_upload_is_forgotten(tmp_path: Path) -> None:
    from models.zoo import UnknownModelError

    settings = Settings(data_dir=tmp_path)
    path = upload_path(tmp_path, "m1")
    path.parent.mkdir(parents=True)
    path.write_bytes(keras_bytes(tiny_model(), tmp_path))
    records = {"m1": {"id": "m1", "name": "tiny", "preprocess": "raw"}}
    cache = ModelCache(settings, records.get)
    first = cache.get("m1")
    assert cache.get("m1") is first  # cached
    cache.tool("m1", ("probe",), lambda m: object())
    del records["m1"]  # DELETE /v1/models/m1
    with pytest.raises(UnknownModelError):
        cache.get("m1")
    assert "m1" not in cache._models and not cache._tools


def test_a_builtin_model_is_reloaded_when_its_file_changes(tmp_path: Path) -> None:
    from models.cifar_cnn import build_cifar_cnn

    cache = ModelCache(Settings(data_dir=tmp_path), lambda _: None)
    untrained = cache.get("cifar10")
    assert untrained.info.status == "untrained" and untrained.info.random_weights
    assert cache.get("cifar10") is untrained
    trained = build_cifar_cnn()
    (tmp_path / "models").mkdir()
    trained.save(tmp_path / "models" / "cifar10.keras")  # `convscope models train cifar10`
    reloaded = cache.get("cifar10")
    assert reloaded is not untrained
    assert reloaded.info.status == "ready" and not reloaded.info.random_weights
