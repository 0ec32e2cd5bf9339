"""A stack for dataset-job tests: an empty Redis database, a real Celery worker (with the
trained ``shapes`` model, its data dir's ``models`` linked to the session's) and the API with
two tenants (Flask test client); helpers to make a shapes dataset and run jobs over it."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from service.launcher import stop
from tests.pipeline import data_dir, empty_database, start_worker, wait_ready
from worker.chunks import ChunkRecords
from worker.settings import Settings
from worker.shapes_dataset import write_shapes_dataset
from worker.store import JobStore

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@dataclass
class DatasetJobStack:
    settings: Settings
    client: object  # Flask test client
    r: redis.Redis
    worker: object  # the worker process
    base: Path

    def records(self) -> ChunkRecords:
        return ChunkRecords(JobStore(self.r, self.settings.result_ttl))

    def shapes_dataset(self, n: int, seed: int) -> str:
        """Upload ``n`` generated shapes images (a zip) as tenant A; returns the id."""
        folder = self.base / f"shapes-{n}-{seed}"
        write_shapes_dataset(folder, n, seed)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, path.name)
        res = self.client.post("/v1/datasets?wait=60", headers=A,  # type: ignore[attr-defined]
                               data={"file": (io.BytesIO(buf.getvalue()), "shapes.zip")},
                               content_type="multipart/form-data")
        assert res.status_code == 201, res.get_json()
        return res.get_json()["id"]

    def submit(self, dataset: str | None, layer: str = "conv2", headers: dict | None = None,
               images: list[bytes] = (), **options: object):  # type: ignore[assignment]
        data: dict[str, object] = {"model": "shapes", "kind": "top_examples", "layer": layer,
                                   "options": json.dumps(options)}
        if dataset is not None:
            data["dataset"] = dataset
        if images:
            data["image"] = [(io.BytesIO(b), f"i{i}.png") for i, b in enumerate(images)]
        return self.client.post("/v1/jobs", data=data,  # type: ignore[attr-defined]
                                headers=headers or A, content_type="multipart/form-data")


@contextmanager
def dataset_job_stack(settings: Settings, base: Path, concurrency: int,
                      what: str) -> Iterator[DatasetJobStack]:
    from service.app import create_app

    data = base / "data"
    data.mkdir(parents=True)
    (base / "roots").mkdir()  # the one folder datasets may be registered from
    (data / "models").symlink_to(data_dir() / "models", target_is_directory=True)
    with empty_database(settings.redis_url, what) as url:
        own = dataclasses.replace(settings, redis_url=url, data_dir=data,
                                  describe_on_start=("shapes",), api_keys=("key-a", "key-b"),
                                  dataset_roots=(str(base / "roots"),))
        r = redis.Redis.from_url(url)
        proc = start_worker(own, base / "worker.log", concurrency)
        try:
            wait_ready(r, timeout=180)
            yield DatasetJobStack(own, create_app(own).test_client(), r, proc, base)
        finally:
            stop(proc)
