"""The API process: it never imports TensorFlow, and its operational endpoints (health,
readiness, metrics, OpenAPI, docs) answer as the contract says."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.service.job_http import encode, run
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

SERVE = r"""
import io, json, sys
from PIL import Image
from service.app import create_app
from worker.settings import Settings

client = create_app(Settings.from_env()).test_client()
codes, submits, statuses = {}, {}, {}
for path in ("/healthz", "/readyz", "/v1/models", "/v1/models/shapes/layers", "/metrics",
             "/openapi.json", "/docs", "/v1/jobs"):
    codes[path] = client.get(path).status_code
png = io.BytesIO()
Image.new("RGB", (64, 64), (30, 90, 150)).save(png, "PNG")
for kind, layer in (("activations", "conv2"), ("gradcam", "conv4")):
    res = client.post("/v1/jobs?wait=60", content_type="multipart/form-data", data={
        "model": "shapes", "kind": kind, "layer": layer,
        "image": [(io.BytesIO(png.getvalue()), "x.png")]})
    job = res.get_json()
    for _ in range(3):  # the worker may still be describing the models listed above
        if job["status"] not in ("queued", "running"):
            break
        job = client.get(f"/v1/jobs/{job['id']}?wait=60").get_json()
    submits[kind] = res.status_code
    statuses[kind] = job["status"]
    codes[kind + " artifact"] = client.get(
        f"/v1/jobs/{job['id']}/artifacts/{job['artifacts'][0]}").status_code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "models"))
print(json.dumps({"codes": codes, "submits": submits, "statuses": statuses, "heavy": heavy}))
"""


def settings_env(settings: Settings) -> dict[str, str]:
    """``CONVSCOPE_*`` variables that make ``Settings.from_env()`` equal ``settings``."""
    env = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        env["CONVSCOPE_" + field.name.upper()] = \
            ",".join(value) if isinstance(value, tuple) else str(value)
    return env


def test_api_process_never_imports_tensorflow(settings: Settings, worker) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVSCOPE_")}
    env.update(settings_env(settings))
    proc = subprocess.run([sys.executable, "-c", SERVE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report["codes"].values()) == {200}, report["codes"]
    # ?wait answers 200 when the job ended in time, 202 while the worker was still busy.
    assert set(report["submits"].values()) <= {200, 202}, report["submits"]
    assert report["statuses"] == {"activations": "succeeded", "gradcam": "succeeded"}
    assert report["heavy"] == []  # no tensorflow, keras or models.* module was imported


def test_settings_env_round_trips(settings: Settings) -> None:
    assert Settings.from_env(settings_env(settings)) == settings


def test_healthz(client) -> None:
    res = client.get("/healthz")
    assert res.status_code == 200 and res.get_json() == {"status": "ok"}


def test_readyz_with_a_live_worker(client) -> None:
    res = client.get("/readyz")
    assert res.status_code == 200
    body = res.get_json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["workers"] >= 1


def test_readyz_without_workers_or_redis(settings: Settings) -> None:
    from service.app import create_app

    no_workers = re.sub(r"/\d+$", "/9", settings.redis_url)  # a Redis database nobody beats in
    res = create_app(dataclasses.replace(settings, redis_url=no_workers)).test_client().get(
        "/readyz")
    assert res.status_code == 503 and res.get_json()["workers"] == 0
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    res = create_app(dataclasses.replace(settings, redis_url=dead)).test_client().get("/readyz")
    assert res.status_code == 503 and res.get_json()["status"] == "unavailable"


def _jobs_total(text: str, kind: str, status: str) -> float:
    pattern = rf'^convscope_jobs_total\{{kind="{re.escape(kind)}",status="{status}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_jobs_by_kind_and_status(client) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    run(client, "activations", [encode(np.full((64, 64, 3), 7, np.uint8))], layer="conv1")
    res = client.get("/metrics")
    assert res.status_code == 200 and res.mimetype == "text/plain"
    text = res.get_data(as_text=True)
    for status in ("queued", "running", "succeeded"):
        assert _jobs_total(text, "activations", status) == \
            _jobs_total(before, "activations", status) + 1, status
    assert "# TYPE convscope_jobs_total counter" in text
    depth = re.search(r"^convscope_queue_depth (\S+)$", text, re.MULTILINE)
    assert depth and float(depth.group(1)) >= 0
    assert re.search(r"^convscope_workers_alive [1-9]", text, re.MULTILINE)


def test_openapi_document(client) -> None:
    res = client.get("/openapi.json")
    assert res.status_code == 200
    spec = res.get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/artifacts/{name}",
            "/v1/models", "/v1/models/{model_id}/layers"} <= set(spec["paths"])
    assert {"post", "get"} <= set(spec["paths"]["/v1/jobs"])
    assert "delete" in spec["paths"]["/v1/jobs/{job_id}"]


def test_docs_page(client) -> None:
    res = client.get("/docs")
    assert res.status_code == 200 and res.mimetype == "text/html"
    assert b"openapi.json" in res.data
    html = res.get_data(as_text=True)
    # Swagger UI comes from this server, not a CDN: /docs works without internet.
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert not [a for a in assets if "://" in a], assets
    kinds = {a.rsplit(".", 1)[-1] for a in assets}
    assert {"css", "js", "png"} <= kinds
    for url in assets:
        got = client.get(url)
        assert got.status_code == 200, url
        assert len(got.data) > 500, url
    assert client.get("/docs/assets/index.html").status_code == 404  # only the named files


@pytest.mark.parametrize("path", ["/v1/jobs/0123abc", "/v1/jobs/../etc",
                                  "/v1/jobs/abc/artifacts/grid"])
def test_unknown_job_is_problem_404(client, path: str) -> None:
    res = client.get(path)
    assert res.status_code == 404 and res.mimetype == "application/problem+json"
    assert res.get_json()["code"] == "not_found"
