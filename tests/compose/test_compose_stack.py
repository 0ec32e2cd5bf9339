"""docker-compose.yml in a real Docker engine: images built, redis + api + two workers + the
proxy up, jobs through the proxy, and what deploying promises: a worker container killed
mid-job leaves its job to the other, a Redis restart loses no accepted job, ``down`` and
``up`` keep finished jobs, and healthchecks gate start-up.

Run by ``make compose-test`` (which starts a Docker engine if it can); skipped otherwise.
The tests share one stack and run in file order; everything the stack printed, and each
docker command, goes to build/compose/run/stack.log.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.compose.stack import BUILD_DIR, ROOT, Stack, wait_for

if os.environ.get("CONVSCOPE_COMPOSE_TEST") != "1":
    pytest.skip("the docker compose stack test runs with `make compose-test` (needs a Docker "
                "engine)", allow_module_level=True)

SAMPLE = ROOT / "service" / "static" / "samples" / "star.png"
MODELS = Path(os.environ.get("CONVSCOPE_DATA_DIR", ROOT / "data")) / "models"
SERVICES = ("redis", "api", "worker", "proxy")


def user_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def seed_model(stack: Stack) -> None:
    """The trained demo model into the data volume: copied from data/models when the test
    suite has trained it there (the image is built without it, for speed), else trained
    once in a container, as the image build would have."""
    if (MODELS / "shapes-v1.keras").exists():
        stack.compose("run", "--rm", "--no-deps", "-T", "-v", f"{MODELS}:/seed:ro", "worker",
                      "sh", "-c", "cp /seed/shapes-v1.* /data/models/")
    else:
        stack.compose("run", "--rm", "--no-deps", "-T", "worker",
                      "python", "-m", "worker.train", "shapes", timeout=900)


def wait_ready(stack: Stack, workers: int) -> None:
    """Every container healthy, and the API ready through the proxy with ``workers``."""
    def healthy() -> bool:
        ids = [c for s in SERVICES for c in stack.containers(s)]
        return len(stack.containers("worker")) == workers and all(
            stack.health(c) == "healthy" for c in ids)

    def ready() -> bool:
        try:
            resp = requests.get(stack.proxy_url + "/readyz", timeout=5)
        except requests.RequestException:
            return False
        return resp.status_code == 200 and resp.json()["workers"] == workers

    wait_for(healthy, 300, f"every container healthy ({stack.log})", interval=2)
    wait_for(ready, 120, f"/readyz through the proxy with {workers} workers ({stack.log})")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    workdir = BUILD_DIR / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    stack = Stack.create(workdir)
    stack.compose("down", "-v", "--remove-orphans", check=False)  # an interrupted run's
    stack.compose("build", timeout=1800)
    seed_model(stack)
    started = time.time()
    stack.compose("up", "-d", "--no-build", "--scale", "worker=2")
    try:
        wait_ready(stack, workers=2)
        stack.up_window = (started, time.time())
        yield stack
    finally:
        stack.dump_logs()
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture(scope="module")
def client(stack: Stack):
    from service.client import Client

    return Client(stack.proxy_url)


def run_job(client, kind: str = "gradcam", **fields) -> dict:
    job = client.wait(client.submit([SAMPLE], model="shapes", kind=kind, **fields), timeout=180)
    assert job["status"] == "succeeded", job
    return job


def test_healthchecks_gate_start_up(stack: Stack) -> None:
    """A service waiting on a healthy dependency starts only after the engine saw that
    dependency healthy (the engine's own event log of this start-up)."""
    events = stack.events(*stack.up_window)

    def times(service: str, action: str) -> list[int]:
        return sorted(e["timeNano"] for e in events if e["Action"] == action
                      and e["Actor"]["Attributes"]["com.docker.compose.service"] == service)

    gated = 0
    for name, service in user_compose()["services"].items():
        if name not in SERVICES:
            continue
        assert times(name, "start"), f"{name} did not start"
        if "healthcheck" in service:
            assert times(name, "health_status: healthy"), f"{name} never reported healthy"
        for dep, rule in service.get("depends_on", {}).items():
            assert rule["condition"] == "service_healthy", (name, dep)
            healthy = times(dep, "health_status: healthy")
            assert healthy and healthy[0] < times(name, "start")[0], \
                f"{name} started before {dep} was healthy"
            gated += 1
    assert gated >= 4  # api on redis; worker on redis and api; proxy on api


def test_containers_run_read_only_limited_and_restarting(stack: Stack) -> None:
    for name in SERVICES:
        for container in stack.containers(name):
            info = stack.inspect(container)
            host = info["HostConfig"]
            assert host["ReadonlyRootfs"], name
            assert host["RestartPolicy"]["Name"] == "unless-stopped", name
            assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0, name
            assert info["Config"]["User"] not in ("", "root", "0"), name
            if name != "redis":
                assert "/tmp" in (host.get("Tmpfs") or {}), name
            denied = stack.docker("exec", container, "touch", "/probe", check=False)
            assert denied.returncode != 0 and "Read-only file system" in denied.stderr, name
    redis_mounts = stack.inspect(stack.containers("redis")[0])["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in redis_mounts] == \
        [("volume", f"{stack.project}_redis-data", "/data")]


def test_a_job_runs_through_the_proxy(stack: Stack, client) -> None:
    resp = requests.get(stack.proxy_url + "/healthz", timeout=5)
    assert resp.headers["Server"] == "nginx"  # the proxy answered, the API behind it
    job = run_job(client, kind="activations", layer="conv1")
    grid = client.artifact(job["id"], "grid")
    assert grid.startswith(b"\x89PNG")
    stack.finished.append((job["id"], {"grid": grid}))

    # TensorFlow is loaded in the workers' processes and in no process of the API container.
    def tensorflow_processes(container: str) -> str:
        return stack.docker("exec", container, "sh", "-c",
                            "grep -l libtensorflow /proc/[0-9]*/maps || true").stdout

    assert tensorflow_processes(stack.containers("api")[0]) == ""
    assert any(tensorflow_processes(c) for c in stack.containers("worker"))


def test_the_proxy_limits_connections_per_client(stack: Stack) -> None:
    """Uploads that have not sent their body hold their connection at the proxy (it buffers
    whole requests before the API sees them); past 64 at once from one address it answers 429
    at once."""
    held, port = [], stack.ports["proxy"]
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000000\r\n\r\n")  # ... and no body yet
    answers: dict[socket.socket, bytes] = {}
    try:
        for _ in range(72):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(head)
            held.append(sock)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            waiting = [s for s in held if s not in answers]
            for sock in select.select(waiting, [], [], 0.2)[0]:
                answers[sock] = sock.recv(64)
    finally:
        for sock in held:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 429 ") for a in answers.values()), answers.values()
    assert 72 - 64 <= len(answers) < 72  # 64 still being read (at most), the rest refused
    wait_for(lambda: requests.get(stack.proxy_url + "/healthz", timeout=5).ok, 30,
             "the proxy to serve again once the slow uploads closed")


def test_a_killed_worker_container_leaves_its_job_to_the_other(stack: Stack, client) -> None:
    workers = stack.containers("worker")
    assert len(workers) == 2
    filters = list(range(next(layer["filters"] for layer in client.layers("shapes")
                              if layer["name"] == "conv4")))  # ~30 s of gradient ascent
    since = f"{time.time():.3f}"
    job = client.submit(model="shapes", kind="filters", layer="conv4",
                        options={"filters": filters, "steps": 512, "seed": 11})
    wait_for(lambda: client.job(job["id"])["progress"] > 0, 180,
             "the filters job to make progress")

    def received_a_job(container: str) -> bool:
        logs = stack.docker("logs", "--since", since, container)
        return re.search(r"convscope\.run_\w+\[", logs.stdout + logs.stderr) is not None

    doomed = [c for c in workers if received_a_job(c)]
    assert len(doomed) == 1, doomed
    assert client.job(job["id"])["status"] == "running"
    stack.docker("kill", doomed[0])
    done = client.wait(job, timeout=600)
    assert done["status"] == "succeeded", done
    assert not stack.inspect(doomed[0])["State"]["Running"]  # killed: not restarted
    survivor = [c for c in workers if c != doomed[0]]
    assert stack.containers("worker") == survivor
    assert received_a_job(survivor[0])  # the job's task went to it after the kill
    stack.finished.append((done["id"], {}))


def test_restarting_redis_loses_no_accepted_job(stack: Stack, client) -> None:
    redis_id = stack.containers("redis")[0]

    def config(name: str) -> str:
        return stack.docker("exec", redis_id, "redis-cli", "-p", str(stack.ports["redis"]),
                            "config", "get", name).stdout.split()[1]

    assert (config("appendonly"), config("appendfsync"), config("rdbcompression"),
            config("dir")) == ("yes", "everysec", "no", "/data")

    accepted: list[str] = []
    refused: list[object] = []
    stop = threading.Event()

    def submit_until_stopped() -> None:
        for _ in range(600):  # bounded: ~0.1 s apart, two minutes at most
            if stop.is_set():
                return
            try:
                with SAMPLE.open("rb") as fh:
                    resp = requests.post(stack.proxy_url + "/v1/jobs", timeout=30,
                                         data={"model": "shapes", "kind": "activations",
                                               "layer": "conv2"},
                                         files={"image": fh},
                                         headers={"Idempotency-Key": uuid.uuid4().hex})
            except requests.RequestException as exc:
                refused.append(type(exc).__name__)
            else:
                if resp.status_code == 202:
                    accepted.append(resp.json()["id"])
                else:
                    refused.append(resp.status_code)
            time.sleep(0.1)

    # The one worker left busy for a while, so that jobs wait in Redis when it restarts.
    busy = client.submit(model="shapes", kind="filters", layer="conv4",
                         options={"filters": list(range(24)), "steps": 512, "seed": 12})
    wait_for(lambda: client.job(busy["id"])["progress"] > 0, 120, "the filters job to run")
    submitter = threading.Thread(target=submit_until_stopped, daemon=True)
    submitter.start()
    try:
        wait_for(lambda: len(accepted) >= 5, 60, "jobs accepted before the restart")
        waiting = [j for j in list(accepted) if client.job(j)["status"] == "queued"]
        stack.compose("restart", "redis")
        after = len(accepted)
        wait_for(lambda: len(accepted) >= after + 5, 90, "jobs accepted after the restart")
    finally:
        stop.set()
        submitter.join(60)
    stack.note(f"redis restart: {len(accepted)} jobs accepted, {len(waiting)} of them queued "
               f"at the restart; refused: {refused}")
    assert waiting, "no accepted job was waiting in Redis when it restarted"
    assert set(refused) <= {503, "ConnectionError", "ReadTimeout"}, refused
    ends = {job_id: client.wait(job_id, timeout=300)["status"]
            for job_id in [busy["id"], *accepted]}
    assert ends == dict.fromkeys(ends, "succeeded")
    stack.finished.extend((job_id, {}) for job_id in [busy["id"], *accepted[:3]])


def test_down_and_up_keep_finished_jobs(stack: Stack, client) -> None:
    job = run_job(client)
    artifacts = {name: client.artifact(job["id"], name) for name in job["artifacts"]}
    kept = [*stack.finished, (job["id"], artifacts)]
    stack.dump_logs()  # the containers `down` removes (the killed worker's included)
    stack.compose("down", "--timeout", "20")
    assert not any(stack.containers(s, running_only=False) for s in SERVICES)
    stack.compose("up", "-d", "--no-build", "--scale", "worker=2")
    wait_ready(stack, workers=2)
    for job_id, files in kept:
        again = client.job(job_id)
        assert again["status"] == "succeeded", again
        for name, data in files.items():
            assert client.artifact(job_id, name) == data
    assert client.job(job["id"])["result"] == job["result"]
