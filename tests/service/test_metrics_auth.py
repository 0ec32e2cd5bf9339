"""``/metrics`` shows every tenant's counters, so it is the operator's: with
``CONVSCOPE_METRICS_KEY`` it needs that key (Bearer or ``X-API-Key``), a tenant's key does not
open it; with API keys and no metrics key it is closed (403); an open service keeps it open.
The keyed case runs the launcher's gunicorn with the settings in its environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.auth import METRICS_KEY
from service.launcher import start_redis, stop
from tests.pipeline import serve_api, worker_env
from worker.settings import Settings

PROBLEM = "application/problem+json"
TENANT, OPERATOR = "tenant-key-1", "operator-key-1"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"), persistent=False)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def keyed_api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("metrics_api")
    env = worker_env(Settings(redis_url=redis_url, data_dir=folder / "data"))
    env.update({"CONVSCOPE_API_KEYS": TENANT, METRICS_KEY: OPERATOR})
    with serve_api(env, folder / "api.log") as url:
        yield url


def test_the_operator_key_opens_metrics(keyed_api: str) -> None:
    for headers in ({"Authorization": f"Bearer {OPERATOR}"}, {"X-API-Key": OPERATOR},
                    {"Authorization": f"Bearer {TENANT}", "X-API-Key": OPERATOR}):
        res = requests.get(keyed_api + "/metrics", headers=headers, timeout=30)
        assert res.status_code == 200, (headers, res.text)
        assert res.headers["Content-Type"].startswith("text/plain")
        assert "convscope_queue_depth" in res.text


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": f"Bearer {TENANT}"}, {"X-API-Key": TENANT},
    {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {OPERATOR}"},
], ids=["none", "tenant_bearer", "tenant_header", "wrong", "basic"])
def test_no_other_key_opens_metrics(keyed_api: str, headers: dict) -> None:
    res = requests.get(keyed_api + "/metrics", headers=headers, timeout=30)
    assert res.status_code == 401 and res.headers["Content-Type"] == PROBLEM
    assert res.json()["code"] == "unauthorized" and "operator key" in res.json()["detail"]
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_operator_key_is_no_tenant_key(keyed_api: str) -> None:
    res = requests.get(keyed_api + "/v1/jobs", headers={"Authorization": f"Bearer {OPERATOR}"},
                       timeout=30)
    assert res.status_code == 401
    ok = requests.get(keyed_api + "/v1/jobs", headers={"Authorization": f"Bearer {TENANT}"},
                      timeout=30)
    assert ok.status_code == 200


def make_client(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                api_keys: tuple = (), metrics_key: str | None = None):
    from service.app import create_app

    if metrics_key is None:
        monkeypatch.delenv(METRICS_KEY, raising=False)
    else:
        monkeypatch.setenv(METRICS_KEY, metrics_key)
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, api_keys=api_keys)
    return create_app(settings).test_client()


def test_with_api_keys_and_no_metrics_key_metrics_is_closed(redis_url: str, tmp_path: Path,
                                                           monkeypatch) -> None:
    client = make_client(redis_url, tmp_path, monkeypatch, api_keys=(TENANT,))
    for headers in ({}, {"Authorization": f"Bearer {TENANT}"}):
        res = client.get("/metrics", headers=headers)
        assert res.status_code == 403 and res.mimetype == PROBLEM
        assert METRICS_KEY in res.get_json()["detail"]


def test_an_open_service_keeps_metrics_open(redis_url: str, tmp_path: Path,
                                            monkeypatch) -> None:
    res = make_client(redis_url, tmp_path, monkeypatch).get("/metrics")
    assert res.status_code == 200 and res.mimetype == "text/plain"


def test_a_metrics_key_closes_metrics_on_an_open_service(redis_url: str, tmp_path: Path,
                                                         monkeypatch) -> None:
    client = make_client(redis_url, tmp_path, monkeypatch, metrics_key=OPERATOR)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": OPERATOR}).status_code == 200
    assert client.get("/v1/jobs").status_code == 200  # the API itself stays open
