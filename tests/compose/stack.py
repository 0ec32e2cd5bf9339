"""docker-compose.yml run for real in a Docker engine, on host networking.

The user-facing compose file keeps its bridge network and service names. Here, a generated
override file (:func:`host_network_override`) puts every service on the host's network (this
machine's engine runs with ``--bridge=none``), listening on 127.0.0.1 at free ports, and tags
the images ``:compose-test``. Commands, persistence flags, healthchecks, limits and volumes
stay the compose file's own: the override only re-addresses them.

One thing cannot be overridden: a service on the host's network cannot publish ports (the
engine refuses both together, and compose v1 cannot remove a list in an override). So the
first file is the user's file with its ``ports:`` entries left out (:func:`without_ports`),
and nothing else changed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from service.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("CONVSCOPE_BUILD_DIR", ROOT / "build" / "compose"))
TAG = "compose-test"
PROJECT = "convscope-ctest"
BASE_IMAGE = os.environ.get("CONVSCOPE_BASE_IMAGE", "convscope-base:bookworm")


class _Dumper(yaml.SafeDumper):
    """Writes shared values out in full (no YAML anchors and aliases)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def compose_command() -> list[str]:
    """``docker compose`` (v2) where the plugin exists, else ``docker-compose`` (v1)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def escape(text: str) -> str:
    """A literal for a compose file (compose interpolates ``$``)."""
    return text.replace("$", "$$")


def pip_index_args() -> dict[str, str]:
    """pip's index URLs from this machine's pip configuration, for the image build (only
    ones a build can reach: not ``file://``)."""
    found = {}
    try:
        out = subprocess.run(["pip", "config", "list"], capture_output=True, text=True).stdout
    except OSError:
        return found
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        for name, arg in ((".index-url", "PIP_INDEX_URL"),
                          (".extra-index-url", "PIP_EXTRA_INDEX_URL")):
            urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
            if key.endswith(name) and urls:
                found[arg] = " ".join(urls)
    return found


def with_port(cmd: list[str], flag: str, value: str) -> list[str]:
    cmd = list(cmd)
    cmd[cmd.index(flag) + 1] = value
    return cmd


def host_network_override(base: dict, ports: dict[str, int]) -> dict:
    """The test's override of ``base`` (the parsed docker-compose.yml): host networking on
    127.0.0.1 at ``ports`` (``redis``, ``api``, ``proxy``), test image tags, builds on the
    host's network (pip reaches the package registry), no demo-model training in the image."""
    svc = base["services"]
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    app_env = {"CONVSCOPE_REDIS_URL": redis_url}
    build = {"network": "host"}
    app_build = {**build, "args": {"TRAIN_SHAPES": "0", **pip_index_args()}}
    worker_cmd = svc["worker"]["command"]
    # On the host's network every container has the host's name: give each worker a unique
    # Celery node name (what `worker@%h` gives in the user's bridge network).
    naming = ('node="worker-$(cut -c1-8 /proc/sys/kernel/random/uuid)"; '
              'echo "$node@$(cat /proc/sys/kernel/hostname)" > /tmp/celery-node; '
              'exec "$@" --name "$node"')
    ping = svc["worker"]["healthcheck"]["test"][1]  # a literal already ($$ for $)
    assert '"worker@$$HOSTNAME"' in ping, ping
    ping = ping.replace('"worker@$$HOSTNAME"', escape('"$(cat /tmp/celery-node)"'))
    api_check = [c.replace("8000", str(ports["api"])) for c in svc["api"]["healthcheck"]["test"]]
    proxy_check = [c.replace("8080", str(ports["proxy"]))
                   for c in svc["proxy"]["healthcheck"]["test"]]
    services = {
        "redis": {
            "build": build,
            "command": [*svc["redis"]["command"], "--port", str(ports["redis"]),
                        "--bind", "127.0.0.1"],
            "healthcheck": {"test": [*svc["redis"]["healthcheck"]["test"][:-1],
                                     "-p", str(ports["redis"]), "ping"]},
        },
        "api": {
            "build": app_build,
            "command": with_port(with_port(svc["api"]["command"], "--port", str(ports["api"])),
                                 "--host", "127.0.0.1"),
            "environment": app_env,
            "healthcheck": {"test": api_check},
        },
        "worker": {
            "command": ["sh", "-c", escape(naming), "convscope-worker", *worker_cmd],
            "environment": app_env,
            "healthcheck": {"test": ["CMD-SHELL", ping]},
        },
        "proxy": {
            "build": build,
            "environment": {"CONVSCOPE_PROXY_UPSTREAM": f"127.0.0.1:{ports['api']}",
                            "CONVSCOPE_PROXY_PORT": str(ports["proxy"])},
            "healthcheck": {"test": proxy_check},
        },
        "flower": {"environment": app_env},
    }
    for name, service in services.items():
        service["network_mode"] = "host"
        image = svc[name]["image"].split(":")[0]
        service["image"] = f"{image}:{TAG}"
    return {"services": services}


def without_ports(base: dict) -> dict:
    """``base`` (the parsed compose file, not interpolated) without published ports."""
    services = {name: {k: v for k, v in service.items() if k != "ports"}
                for name, service in base["services"].items()}
    return {**base, "services": services}


@dataclass
class Stack:
    """One compose project: the user's file plus the host-network override."""

    files: list[Path]
    ports: dict[str, int]
    log: Path
    project: str = PROJECT
    env: dict[str, str] = field(default_factory=dict)
    up_window: tuple[float, float] = (0.0, 0.0)  # Unix times around the first `up`
    finished: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # jobs kept

    @classmethod
    def create(cls, workdir: Path) -> Stack:
        base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        ports = {"redis": free_port(), "api": free_port(), "proxy": free_port()}
        files = [workdir / "docker-compose.yml", workdir / "docker-compose.test.yml"]
        for path, content in zip(files, (without_ports(base),
                                         host_network_override(base, ports)), strict=True):
            path.write_text(yaml.dump(content, Dumper=_Dumper, sort_keys=False))
        env = {**os.environ, "CONVSCOPE_BASE_IMAGE": BASE_IMAGE,
               "COMPOSE_PROJECT_NAME": PROJECT, "DOCKER_BUILDKIT": "0",
               "COMPOSE_DOCKER_CLI_BUILD": "0"}
        env.pop("CONVSCOPE_REDIS_URL", None)
        return cls(files, ports, workdir / "stack.log", env=env)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    def run(self, cmd: list[str], timeout: float = 600, check: bool = True,
            quiet: bool = False) -> subprocess.CompletedProcess:
        """Run ``cmd``; its output goes to the stack log (and comes back in the result)."""
        started = time.monotonic()
        done = subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        with self.log.open("a") as log:
            log.write(f"$ {shlex.join(cmd)}   # {time.monotonic() - started:.1f} s, "
                      f"exit {done.returncode}\n")
            if not quiet:
                log.write(done.stdout + done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} exited {done.returncode}:\n"
                                 f"{(done.stdout + done.stderr)[-4000:]}")
        return done

    def note(self, text: str) -> None:
        """A line in the stack log."""
        with self.log.open("a") as log:
            log.write(f"# {text}\n")

    def compose(self, *args: str, timeout: float = 600, check: bool = True,
                quiet: bool = False) -> subprocess.CompletedProcess:
        cmd = [*compose_command(), "-p", self.project, "--project-directory", str(ROOT)]
        for path in self.files:
            cmd += ["-f", str(path)]
        return self.run([*cmd, *args], timeout=timeout, check=check, quiet=quiet)

    def docker(self, *args: str, timeout: float = 120, check: bool = True,
               quiet: bool = True) -> subprocess.CompletedProcess:
        return self.run(["docker", *args], timeout=timeout, check=check, quiet=quiet)

    def containers(self, service: str, running_only: bool = True) -> list[str]:
        """Container ids of ``service`` in this project."""
        args = ["ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={service}"]
        if not running_only:
            args.insert(1, "-a")
        return self.docker(*args).stdout.split()

    def inspect(self, container: str) -> dict:
        return json.loads(self.docker("inspect", container).stdout)[0]

    def health(self, container: str) -> str:
        state = self.inspect(container)["State"]
        return state.get("Health", {}).get("Status", "none") if state["Running"] else "exited"

    def events(self, since: float, until: float) -> list[dict]:
        """The engine's container events of this project between two Unix times."""
        out = self.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                          "--filter", f"label=com.docker.compose.project={self.project}",
                          "--filter", "type=container", "--format", "{{json .}}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def dump_logs(self) -> None:
        self.compose("logs", "--no-color", "--timestamps", check=False, timeout=120)


def wait_for(check: Callable[[], object], timeout: float, what: str,
             interval: float = 0.5) -> object:
    """Poll ``check()`` until it returns something truthy, and return that; ``timeout`` only
    bounds a failure (nothing is asserted about how long it took)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
