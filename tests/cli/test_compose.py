"""docker-compose.yml's services, run as local processes with the compose file's own commands
(no Docker engine here), then a job through them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import redis
import yaml

from service.client import Client
from service.launcher import free_port, redis_server_binary
from tests.cli.conftest import clean_env, write_shape_images
from tests.pipeline import wait_until

ROOT = Path(__file__).resolve().parents[2]


def interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` substitution (from this process's environment)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m[1], m[2]), text)


def compose() -> dict:
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text()))


def replace_arg(cmd: list[str], flag: str, value: str) -> list[str]:
    cmd = list(cmd)
    cmd[cmd.index(flag) + 1] = value
    return cmd


def test_compose_declares_what_deploying_needs() -> None:
    services = compose()["services"]
    assert {"redis", "api", "worker", "flower"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert "everysec" in services["redis"]["command"]
    assert "noeviction" in services["redis"]["command"]
    assert services["redis"]["healthcheck"]["test"][-1] == "ping"
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["CONVSCOPE_REDIS_URL"].startswith("redis://redis")
    assert "ports" not in services["worker"]  # scalable: --scale worker=4
    assert services["flower"]["profiles"] == ["monitoring"]


def test_compose_commands_run_a_job(data_dir: Path, tmp_path: Path, reaper: list) -> None:
    services = compose()["services"]
    redis_port, api_port = free_port(), free_port()
    redis_cmd = [redis_server_binary(), *services["redis"]["command"][1:], "--port",
                 str(redis_port), "--dir", str(tmp_path), "--bind", "127.0.0.1"]
    redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    reaper.append(redis_proc)
    url = f"redis://127.0.0.1:{redis_port}/0"

    def pong() -> bool:
        assert redis_proc.poll() is None, "redis-server exited with the compose command"
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    wait_until(pong, 30, "redis-server (compose command) to answer PING")

    def env_of(name: str) -> dict[str, str]:
        env = {k: "" if v is None else str(v) for k, v in services[name]["environment"].items()}
        env.update(CONVSCOPE_REDIS_URL=url, CONVSCOPE_DATA_DIR=str(data_dir))
        return clean_env(**env)

    api_cmd = replace_arg(replace_arg(services["api"]["command"], "--port", str(api_port)),
                          "--host", "127.0.0.1")
    started = {}
    for name, cmd in (("api", api_cmd), ("worker", services["worker"]["command"])):
        exe = [sys.executable, "-m", "service.cli", *cmd[1:]] if cmd[0] == "convscope" else cmd
        started[name] = subprocess.Popen(exe, env=env_of(name), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        reaper.append(started[name])
    check = [c.replace("8000", str(api_port)) for c in services["api"]["healthcheck"]["test"][1:]]
    client = Client(f"http://127.0.0.1:{api_port}")

    def ready() -> bool:
        for name, proc in started.items():
            assert proc.poll() is None, f"the {name} (compose command) exited: {proc.returncode}"
        return client.ready()

    wait_until(ready, 180, "the api and worker (compose commands) to be ready", interval=0.5)
    assert subprocess.run(check, capture_output=True).returncode == 0  # the api healthcheck
    image = write_shape_images(tmp_path / "in", 1)[0]
    job = client.wait(client.submit([image], model="shapes", kind="activations"), timeout=120)
    assert job["status"] == "succeeded", job
    assert set(job["artifacts"]) == {"grid", "activations"}
