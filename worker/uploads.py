"""Files users give the service: uploaded ``.keras`` models (the API writes them, workers read
them) and local weights for ``keras.applications`` models (``convscope models weights``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.safe_load import ArchiveLimits
    from worker.settings import Settings


def upload_path(data_dir: str | os.PathLike, model_id: str) -> Path:
    return Path(data_dir) / "uploads" / f"{model_id}.keras"


def archive_limits(settings: Settings) -> ArchiveLimits:
    """What an uploaded ``.keras`` archive may unpack to, from the ``max_model_*`` settings
    (for :func:`models.safe_load.load_keras_file`). Imports the engine when called, which
    only workers do: the API imports this module and stays light."""
    from models.safe_load import ArchiveLimits

    return ArchiveLimits(max_members=settings.max_model_members,
                         max_member_bytes=settings.max_model_member_bytes,
                         max_total_bytes=settings.max_model_unpacked_bytes,
                         max_json_bytes=settings.max_model_json_bytes,
                         max_json_depth=settings.max_model_json_depth)


def weights_paths(data_dir: str | os.PathLike, model_id: str) -> list[Path]:
    """Where a built-in application model's local weights may be: the Keras 3 format
    (``<id>.weights.h5``) or the legacy HDF5 format Keras downloads (``<id>.h5``)."""
    folder = Path(data_dir) / "weights"
    return [folder / f"{model_id}.weights.h5", folder / f"{model_id}.h5"]


def install_weights(source: Path, data_dir: str | os.PathLike, model_id: str) -> Path:
    """Copy a weights file into place under the name its format needs; returns the target."""
    modern, legacy = weights_paths(data_dir, model_id)
    if source.suffix != ".h5":
        raise ValueError(f"{source}: expected a Keras weights file ending in .h5")
    target = modern if source.name.endswith(".weights.h5") else legacy
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in (modern, legacy):
        old.unlink(missing_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target
