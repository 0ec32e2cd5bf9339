"""The worker modules the API process shares (settings, store, npy, catalog, contract,
uploads, the Celery app factory) import nothing heavy: neither TensorFlow, Keras nor the
engine, and importing the Celery module builds no app from the environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SHARED = ("worker.settings", "worker.store", "worker.npy", "worker.catalog", "worker.contract",
          "worker.uploads", "worker.celery_app", "worker.tasks",
          "worker.sweeper")  # the last: in every worker's main process, beside Celery
HEAVY = ("tensorflow", "keras", "models")

PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
app_built = None
if sys.argv[1] == "worker.celery_app":
    app_built = module._default_app.cache_info().currsize > 0
heavy = sys.argv[2].split(",")
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
                  "app_built": app_built}))
"""


def probe(module: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, module, ",".join(HEAVY)],
                         capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", SHARED)
def test_shared_module_imports_nothing_heavy(module: str) -> None:
    assert probe(module)["loaded"] == []


def test_importing_the_celery_module_builds_no_app() -> None:
    assert probe("worker.celery_app")["app_built"] is False


def test_the_probe_sees_heavy_imports() -> None:
    assert "models" in probe("models.conv_arithmetic")["loaded"]


def test_the_worker_app_is_built_on_first_use() -> None:
    import worker.celery_app as celery_app

    app = celery_app.app
    assert app is celery_app.app  # one app per process
    assert app.conf.task_default_queue == "convscope"
    assert app.conf.task_acks_late and app.conf.accept_content == ["json"]
