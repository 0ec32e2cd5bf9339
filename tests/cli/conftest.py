"""Fixtures for running convscope as a user does: real processes, real ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pipeline import wait_for_line  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def data_dir(tmp_path: Path, shapes_model: object) -> Path:
    """A fresh data dir that already holds the trained shapes model (no retraining)."""
    source = Path(os.environ.get("CONVSCOPE_DATA_DIR", ROOT / "data")) / "models"
    target = tmp_path / "data" / "models"
    target.mkdir(parents=True)
    for item in source.glob("shapes-v1*"):
        shutil.copy(item, target / item.name)
    return tmp_path / "data"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVSCOPE_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **extra})
    return env


def descendants(pid: int) -> set[int]:
    """All live descendant pids of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def write_shape_images(folder: Path, n: int, seed: int = 7) -> list[Path]:
    from models.shapes_data import generate_shapes

    folder.mkdir(parents=True, exist_ok=True)
    batch = generate_shapes(n, seed=seed)
    paths = []
    for i, image in enumerate(batch.images):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(np.asarray(image)).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def reaper() -> Iterator[list[subprocess.Popen]]:
    """Processes a test started; killed (whole group) at the end whatever happens."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
