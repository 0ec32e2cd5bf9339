"""Helpers for the pipeline tests: encode images, submit jobs, poll, fetch artifacts, count
what reached the queue (so bad-input tests can show nothing did), and build and upload tiny
``.keras`` models."""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from PIL import Image

from worker.contract import QUEUE, TASK_RUN_JOB, TERMINAL

PROBLEM = "application/problem+json"
NS = "convscope:v1"
UNACKED = "unacked"  # kombu's Redis transport: messages delivered to a worker, not yet acked
NPY_ARTIFACTS = ("heatmap", "activations", "attribution")


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    """An image (PIL or uint8 array) as file bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def submit(client, kind: str, images: list[bytes] = (), model: str = "shapes",
           layer: str | None = None, options: dict | str | None = None, wait: float = 0,
           headers: dict | None = None):
    """POST /v1/jobs as multipart; ``options`` may be a dict or a raw string."""
    data: dict[str, Any] = {"model": model, "kind": kind}
    if layer is not None:
        data["layer"] = layer
    if options is not None:
        data["options"] = options if isinstance(options, str) else json.dumps(options)
    if images:
        data["image"] = [(io.BytesIO(b), f"image{i}.png") for i, b in enumerate(images)]
    url = "/v1/jobs" + (f"?wait={wait}" if wait else "")
    return client.post(url, data=data, headers=headers or {},
                       content_type="multipart/form-data")


def poll(client, job_id: str, timeout: float = 120.0, headers: dict | None = None) -> dict:
    """GET the job until it reaches an end state."""
    deadline = time.monotonic() + timeout
    while True:
        res = client.get(f"/v1/jobs/{job_id}", headers=headers or {})
        assert res.status_code == 200, res.get_json()
        job = res.get_json()
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def run(client, kind: str, images: list[bytes] = (), timeout: float = 120.0,
        **kw: Any) -> dict:
    """Submit (checking 202 + Location) and poll to the end; returns the finished job."""
    res = submit(client, kind, images, **kw)
    assert res.status_code == 202, res.get_json()
    job_id = res.get_json()["id"]
    assert res.headers["Location"] == f"/v1/jobs/{job_id}"
    job = poll(client, job_id, timeout, kw.get("headers"))
    assert job["status"] == "succeeded", job
    return job


def artifacts(client, job: dict, headers: dict | None = None) -> dict[str, bytes]:
    """Fetch every artifact the job lists, checking each content type (NPY for the
    ``heatmap`` and ``activations`` arrays, PNG for every picture)."""
    out = {}
    for name in job["artifacts"]:
        res = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}", headers=headers or {})
        assert res.status_code == 200, (name, res.get_json())
        npy = name.split(".")[0] in NPY_ARTIFACTS
        assert res.mimetype == ("application/x-npy" if npy else "image/png"), name
        assert res.data.startswith(b"\x93NUMPY" if npy else b"\x89PNG"), name
        out[name] = res.data
    return out


def assert_problem(res, status: int, code: str) -> dict:
    assert res.status_code == status, (res.status_code, res.data[:500])
    assert res.mimetype == PROBLEM
    body = res.get_json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"].endswith(code)
    return body


@dataclass(frozen=True)
class QueueCount:
    """What a submit could have left behind: tenant's jobs, queued tasks, "queued" counters."""

    jobs: int
    queue: int
    queued: int

    @classmethod
    def read(cls, r: redis.Redis, tenant: str = "public") -> QueueCount:
        queued = sum(int(v) for k, v in r.hgetall(f"{NS}:stats:jobs").items()
                     if k.decode().endswith("|queued"))
        return cls(r.zcard(f"{NS}:tenant:{tenant}:jobs"), r.llen(QUEUE), queued)


def _run_job_arg(payload: bytes | str) -> str | None:
    """The job id of a run-job task message as kombu's Redis transport stores it (JSON with a
    base64 body holding ``[args, kwargs, embed]``); None for other tasks."""
    message = json.loads(payload)
    if isinstance(message, list):  # an unacked entry: [message, exchange, routing_key]
        message = message[0]
    if message.get("headers", {}).get("task") != TASK_RUN_JOB:
        return None
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args = json.loads(body)[0]
    return args[0] if args else None


@dataclass(frozen=True)
class Broker:
    """Run-job tasks in the broker: ``waiting`` in the queue (no worker has taken them) and
    ``reserved`` (delivered to a worker and not acknowledged: with late acks, still running)."""

    waiting: tuple[str, ...]
    reserved: tuple[str, ...]

    @classmethod
    def read(cls, r: redis.Redis) -> Broker:
        waiting = [_run_job_arg(m) for m in r.lrange(QUEUE, 0, -1)]
        reserved = [_run_job_arg(m) for m in r.hvals(UNACKED)]
        return cls(tuple(j for j in waiting if j), tuple(j for j in reserved if j))

    def holds(self, job_id: str) -> bool:
        return job_id in self.waiting or job_id in self.reserved


def tiny_model(lambda_layer: bool = False):
    """A 16×16 RGB CNN: conv (same, 4 filters) → GAP → Dense(3); optionally a Lambda in it."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def keras_bytes(model, tmp_path: Path) -> bytes:
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return path.read_bytes()


def upload(client, data: bytes, name: str = "tiny", wait: float = 60,
           headers: dict | None = None):
    return client.post(f"/v1/models?wait={wait}", headers=headers or {},
                       data={"file": (io.BytesIO(data), f"{name}.keras"), "name": name},
                       content_type="multipart/form-data")
