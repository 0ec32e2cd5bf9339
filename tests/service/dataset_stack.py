"""A convscope stack of its own for the dataset tests: an empty Redis database, a real Celery
worker and the API (Flask test client; ``env`` serves gunicorn for the CLI), all with a
private data dir inside ``base`` and tight dataset limits, so hostile archives can be shown
to write nothing outside the data dir. No TensorFlow: the worker describes no model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from service.launcher import free_port, spawn, stop, worker_command
from tests.pipeline import empty_database, wait_until, worker_env
from worker.settings import Settings

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
LIMITS = {"max_dataset_files": 5000, "max_dataset_file_bytes": 2**20,
          "max_dataset_bytes": 4 * 2**20}


@dataclass
class Stack:
    settings: Settings
    client: object  # Flask test client
    base: Path  # holds data/ (the data dir), roots/allowed/ and outside/
    env: dict[str, str]

    @property
    def allowed(self) -> Path:
        return self.base / "roots" / "allowed"

    def files_outside_data(self) -> set[Path]:
        """Every file and link under ``base`` but outside the data dir."""
        data = self.settings.data_dir
        return {p for p in self.base.rglob("*") if not p.is_relative_to(data)}


def _env(settings: Settings) -> dict[str, str]:
    env = worker_env(settings)
    env.update({"CONVSCOPE_API_KEYS": ",".join(settings.api_keys),
                "CONVSCOPE_DATASET_ROOTS": ",".join(settings.dataset_roots),
                **{f"CONVSCOPE_{k.upper()}": str(v) for k, v in LIMITS.items()}})
    return env


@pytest.fixture(scope="module", name="stack")
def stack_fixture(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from service.app import create_app

    base = tmp_path_factory.mktemp("datasets")
    for folder in ("data", "roots/allowed", "outside"):
        (base / folder).mkdir(parents=True)
    with empty_database(redis_url, "dataset tests") as url:
        settings = Settings(redis_url=url, data_dir=base / "data", describe_on_start=(),
                            api_keys=("key-a", "key-b"),
                            dataset_roots=(str(base / "roots" / "allowed"),), **LIMITS)
        env = _env(settings)
        proc = spawn(worker_command(1, f"datasets-{os.getpid()}-{free_port()}"), env=env,
                     log=base / "worker.log")
        client = redis.Redis.from_url(url)
        try:
            wait_until(lambda: proc.poll() is None and any(
                client.scan_iter("convscope:v1:worker:*")), 60, "the dataset worker")
            yield Stack(settings, create_app(settings).test_client(), base, env)
        finally:
            stop(proc)
