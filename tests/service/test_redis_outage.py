"""Redis goes away and comes back: while it is down every request that needs it is answered
503 ``store_unavailable`` (problem+json, ``Retry-After``), ``/readyz`` says why, and once it
is back on the same port the same API process (no restart) answers again, writes and
enqueues. A real ``redis-server`` (keeping its data in an append-only file, so the restart
finds it) and the launcher's gunicorn; no worker is needed (``/readyz`` says so)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
import redis
import requests
from kombu.exceptions import OperationalError

from service.launcher import free_port, redis_server_binary, spawn, start_redis, stop
from tests.pipeline import serve_api, wait_until, worker_env
from worker.contract import QUEUE
from worker.settings import Settings

PROBLEM = "application/problem+json"


def start_redis_on(port: int, folder: Path, fsync: str = "always") -> subprocess.Popen:
    """``redis-server`` on ``port`` with an append-only file (fsync ``always`` or
    ``everysec``), once it answers and has loaded its data."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = spawn([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                  "--dir", str(folder), "--appendonly", "yes", "--appendfsync", fsync,
                  "--rdbcompression", "no", "--save", ""], log=folder / "redis.log")
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return bool(client.ping()) and not client.info("persistence").get("loading")
        except redis.RedisError:
            assert proc.poll() is None, (folder / "redis.log").read_text()[-2000:]
            return False

    wait_until(answers, 30, f"redis-server on port {port}")
    return proc


def upload(session: requests.Session, api: str) -> requests.Response:
    return session.post(api + "/v1/models", files={"file": ("m.keras", io.BytesIO(b"PK.."))})


def assert_store_unavailable(res: requests.Response) -> None:
    assert res.status_code == 503, (res.request.method, res.url, res.status_code, res.text)
    assert res.headers["Content-Type"] == PROBLEM
    assert int(res.headers["Retry-After"]) > 0
    body = res.json()
    assert body["code"] == "store_unavailable" and body["status"] == 503
    assert "Redis" in body["detail"] and "127.0.0.1" not in body["detail"]


def outage_requests(session: requests.Session, api: str, model_id: str) -> list:
    form = {"model": "shapes", "kind": "filters"}
    return [
        session.get(api + "/v1/jobs"),
        session.get(api + "/v1/models"),
        session.get(api + f"/v1/models/{model_id}"),
        session.get(api + f"/v1/models/{model_id}/layers"),
        session.delete(api + f"/v1/models/{model_id}"),
        session.get(api + "/v1/jobs/0123abcd"),
        session.get(api + "/v1/jobs/0123abcd/events"),
        session.get(api + "/v1/jobs/0123abcd/artifacts.tar"),
        session.delete(api + "/v1/jobs/0123abcd"),
        session.post(api + "/v1/jobs", data=form, files={"image": ("a.png", b"")}),
        session.post(api + "/v1/jobs?wait=5", data=form, files={"image": ("a.png", b"")},
                     headers={"Idempotency-Key": "outage"}),
        upload(session, api),
        session.get(api + "/metrics"),
    ]


def test_redis_restart_is_503_then_the_api_reconnects(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_proc = start_redis_on(port, tmp_path / "redis")
    env = worker_env(Settings(redis_url=url, data_dir=tmp_path / "data"))
    try:
        with serve_api(env, tmp_path / "api.log") as api, requests.Session() as session:
            first = upload(session, api)
            assert first.status_code == 202, first.text
            model_id = first.json()["id"]
            ready = session.get(api + "/readyz")
            assert ready.status_code == 503 and ready.json()["redis"] == "ok"
            assert ready.json()["reason"].startswith("no live worker")

            stop(redis_proc)
            for res in outage_requests(session, api, model_id):
                assert_store_unavailable(res)
            ready = session.get(api + "/readyz")
            assert ready.status_code == 503 and int(ready.headers["Retry-After"]) > 0
            assert ready.json()["redis"] == "unreachable"
            assert ready.json()["reason"].startswith("redis unreachable")
            assert session.get(api + "/healthz").status_code == 200

            redis_proc = start_redis_on(port, tmp_path / "redis")
            wait_until(lambda: session.get(api + "/v1/jobs").status_code == 200, 30,
                       "the API to answer again after Redis came back")
            assert session.get(api + f"/v1/models/{model_id}").json()["id"] == model_id
            queued = redis.Redis.from_url(url).llen(QUEUE)
            second = upload(session, api)  # stored and enqueued on fresh connections
            assert second.status_code == 202, second.text
            assert redis.Redis.from_url(url).llen(QUEUE) == queued + 1
            ready = session.get(api + "/readyz")
            assert ready.json()["redis"] == "ok" and ready.json()["reason"].startswith(
                "no live worker")
        booted = re.findall(r"Booting worker", (tmp_path / "api.log").read_text())
        assert len(booted) == 1  # the same gunicorn worker all along
    finally:
        stop(redis_proc)


@pytest.fixture()
def app_on_private_redis(tmp_path: Path):
    from service.app import create_app

    proc, url = start_redis(tmp_path / "redis", persistent=False)
    yield create_app(Settings(redis_url=url, data_dir=tmp_path / "data"))
    stop(proc)


def test_redis_loading_its_data_is_503(app_on_private_redis, monkeypatch) -> None:
    def loading(*args: object, **kwargs: object) -> None:
        raise redis.BusyLoadingError("Redis is loading the dataset in memory")

    store = app_on_private_redis.extensions["convscope"].store
    monkeypatch.setattr(store, "tenant_jobs", loading)
    res = app_on_private_redis.test_client().get("/v1/jobs")
    assert res.status_code == 503 and res.mimetype == PROBLEM
    assert res.get_json()["code"] == "store_unavailable"
    assert "loading" in res.get_json()["detail"] and res.headers["Retry-After"]


def test_the_broker_refusing_a_task_is_503(app_on_private_redis, monkeypatch) -> None:
    def refuse(*args: object) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app_on_private_redis.extensions["convscope"], "enqueue", refuse)
    res = app_on_private_redis.test_client().post(
        "/v1/models", data={"file": (io.BytesIO(b"PK.."), "m.keras")},
        content_type="multipart/form-data")
    assert res.status_code == 503 and res.mimetype == PROBLEM
    assert res.get_json()["code"] == "store_unavailable" and res.headers["Retry-After"]


def test_the_embedded_redis_keeps_an_uncompressed_aof_that_survives_a_rewrite(
        tmp_path: Path) -> None:
    """``convscope up``'s Redis: AOF fsynced every second, rewritten without LZF; what a
    rewrite saved is all there after a restart."""
    folder = tmp_path / "redis"
    proc, url = start_redis(folder)
    try:
        client = redis.Redis.from_url(url)
        assert {k: client.config_get(k)[k] for k in ("appendonly", "appendfsync",
                                                     "rdbcompression")} == \
            {"appendonly": "yes", "appendfsync": "everysec", "rdbcompression": "no"}
        blob = bytes(range(256)) * 4096  # 1 MiB that LZF would squeeze
        client.set("blob", blob)
        client.bgrewriteaof()
        wait_until(lambda: not any(client.info("persistence")[k] for k in (
            "aof_rewrite_in_progress", "aof_rewrite_scheduled")), 30, "the AOF rewrite")
        assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        assert sum(p.stat().st_size for p in folder.rglob("*.aof*")) > len(blob)  # not packed
    finally:
        stop(proc)
    proc, url = start_redis(folder)
    try:
        assert redis.Redis.from_url(url).get("blob") == blob
    finally:
        stop(proc)
