"""Atomic writes of the model cache: the old file or the whole new one, never a torn one."""

from __future__ import annotations

import stat
from pathlib import Path

import keras
import numpy as np
import pytest

from models.saving import atomic_write, save_model_atomically
from tests.models import tiny_models as tm

# Keras's own saving code converts variables with np.array(copy=False): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text("old")

    def fails_half_way(tmp: str) -> None:
        Path(tmp).write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fails_half_way)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_a_write_replaces_the_file_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    target.write_text("old")
    seen: list[str] = []

    def write(tmp: str) -> None:
        seen.append(tmp)
        assert target.read_text() == "old"  # the target is untouched while writing
        Path(tmp).write_text("new")

    assert atomic_write(target, write) == target
    assert target.read_text() == "new"
    assert Path(seen[0]).parent == tmp_path and seen[0].endswith(".json")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_save_model_atomically_round_trips(tmp_path: Path) -> None:
    model = tm.functional()
    path = save_model_atomically(model, tmp_path / "cache" / "tiny.keras")
    assert path == tmp_path / "cache" / "tiny.keras"
    assert [p.name for p in path.parent.iterdir()] == ["tiny.keras"]
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = tm.images(2)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
