"""The OpenAPI document says everything the API answers: every error as problem+json with the
codes each operation can give (401 only where keys are set, 503 with ``Retry-After`` wherever
Redis is needed), the real success statuses and media types. Then schemathesis, ``--checks
all``, against the launcher's gunicorn with a real worker, finds no violation (bounded: a few
examples per operation; the findings that are not this API's fault are dropped, each for a
stated reason, in ``tests/service/schemathesis_hooks.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.auth import METRICS_KEY
from tests.pipeline import ROOT, serve_api, worker_env
from worker.settings import Settings

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
METHODS = ("get", "post", "put", "patch", "delete")
# Positive data the schema cannot tell from bad: a job's options, layer and images are checked
# against the model's layer table (400), an uploaded file must be a safe .keras archive (422).
# A built-in model is described on first use (503 model_not_ready + Retry-After meanwhile).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

[[operations]]
include-name = "POST /v1/jobs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409",
                                                     "429", "5xx"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-name = "GET /v1/models/{model_id}/layers"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


def spec_of(api_keys: tuple = (), metrics_key: str = "") -> dict:
    from service.app import create_app

    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", api_keys=api_keys))
    app.config[METRICS_KEY] = metrics_key
    return app.spec  # type: ignore[return-value]


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def media(operation: dict, status: str) -> set[str]:
    return set(operation["responses"][status].get("content", {}))


def test_every_error_is_documented_as_problem_json() -> None:
    spec = spec_of(api_keys=("k",))
    assert set(spec["components"]["schemas"]["Problem"]["required"]) == {
        "type", "title", "status", "detail", "code"}
    for method, path, operation in operations(spec):
        errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        for status, response in errors.items():
            if path == "/readyz":
                continue
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}, \
                (method, path, status)
        if path not in ("/healthz", "/v1/contract"):
            assert "Retry-After" in operation["responses"]["503"]["headers"], (method, path)
        if path.startswith(("/v1/jobs", "/v1/models")):
            assert "401" in errors and operation["security"] == [{"bearer": []}], (method, path)
        if method == "post":
            assert {"400", "413", "415", "429", "503"} <= set(errors), path
            assert "Retry-After" in operation["responses"]["429"]["headers"]
            assert operation["requestBody"]["required"] is True


def test_success_statuses_and_media_types() -> None:
    paths = spec_of()["paths"]

    def statuses(method: str, path: str) -> set[str]:
        return {s for s in paths[path][method]["responses"] if s[0] in "23"}

    assert statuses("delete", "/v1/jobs/{job_id}") == {"200", "202"}
    assert statuses("delete", "/v1/models/{model_id}") == {"204"}
    assert statuses("post", "/v1/jobs") == {"200", "202"}
    assert statuses("post", "/v1/models") == {"201", "202"}
    for method, path, status in (("post", "/v1/jobs", "202"), ("post", "/v1/models", "201"),
                                 ("post", "/v1/models", "202")):
        assert paths[path][method]["responses"][status]["headers"]["Location"]["required"]
    assert media(paths["/metrics"]["get"], "200") == {"text/plain"}
    assert media(paths["/v1/jobs/{job_id}/events"]["get"], "200") == {"text/event-stream"}
    from worker.kind_base import NPY, PNG
    from worker.quality_pictures import CSV

    # every type a worker stores an artifact as (the quality job's CSV was served, not listed)
    assert media(paths["/v1/jobs/{job_id}/artifacts/{name}"]["get"], "200") == {PNG, NPY, CSV}
    assert media(paths["/v1/jobs/{job_id}/artifacts.tar"]["get"], "200") == {"application/x-tar"}
    assert media(paths["/readyz"]["get"], "503") == {"application/json"}
    assert "reason" in paths["/readyz"]["get"]["responses"]["503"]["content"][
        "application/json"]["schema"]["properties"]


def test_security_follows_the_configuration() -> None:
    open_spec = spec_of()
    for _method, path, operation in operations(open_spec):
        assert "401" not in operation["responses"] and "security" not in operation, path
    keyed = spec_of(api_keys=("k",))["paths"]["/metrics"]["get"]
    assert set(keyed["responses"]) == {"403", "503"}  # closed: no metrics key is set
    operator = spec_of(api_keys=("k",), metrics_key="op")["paths"]["/metrics"]["get"]
    assert {"200", "401"} <= set(operator["responses"]) and "403" not in operator["responses"]
    assert operator["security"] == [{"bearer": []}, {"operatorKey": []}]


@pytest.fixture()
def keyed_api(settings: Settings, worker, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """gunicorn against the session's Redis and worker, with a fresh tenant's key and an
    operator key; ``?wait`` capped at 2 s so generated waits stay short. Its uploads land in
    ``tmp_path`` (the generated files are no models: the worker, not finding them, refuses
    them as it would refuse them after reading them), not in the repository's data."""
    tenant, operator = uuid.uuid4().hex, uuid.uuid4().hex
    env = worker_env(settings)
    env.update({"CONVSCOPE_API_KEYS": tenant, METRICS_KEY: operator, "CONVSCOPE_MAX_WAIT": "2",
                "CONVSCOPE_DATA_DIR": str(tmp_path / "data")})
    with serve_api(env, tmp_path / "api.log") as url:
        yield url, tenant, operator


def test_schemathesis_finds_no_violation(keyed_api: tuple[str, str, str],
                                         tmp_path: Path) -> None:
    url, tenant, operator = keyed_api
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file",
               str(tmp_path / "schemathesis.toml"), "run", url + "/openapi.json",
               "--checks", "all", "--max-examples", "25", "--seed", "20261201",
               "--generation-database", "none", "--request-timeout", "30", "--workers", "2",
               "--no-color", "-H", f"Authorization: Bearer {tenant}",
               "-H", f"X-API-Key: {operator}"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-12000:]
    assert "Operations:" in report and "passed" in report
