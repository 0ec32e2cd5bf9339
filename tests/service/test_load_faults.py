"""The bounded load test of issue 11, loopback only: 500 Grad-CAM jobs from 8 clients through
two workers, while one worker's whole process tree is SIGKILLed and Redis is SIGKILLed and
restarted on its AOF once. Every job accepted more than the AOF window before the Redis kill
ends ``succeeded``; no job id is handed out twice; afterwards no key is left without a TTL
(but the broker's own). A submission refused during the outage (503) is not a job."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import redis

from service.launcher import free_port, stop
from tests.pipeline import start_worker, wait_ready, wait_until
from tests.service.job_http import encode, submit
from tests.service.test_batching import KOMBU_KEYS
from tests.service.test_redis_restart import AOF_WINDOW, redis_on

JOBS, CLIENTS = 500, 8
PACE = 0.02  # job n is sent at start + n × PACE: 500 jobs over 10 s
KILL_WORKER_AT, KILL_REDIS_AT = 2.0, 5.0  # seconds after the start


def test_500_jobs_through_a_worker_kill_and_a_redis_restart(settings, tmp_path: Path) -> None:
    from service.app import create_app

    port, folder = free_port(), tmp_path / "redis"
    server = redis_on(port, folder)
    own = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    workers = [start_worker(own, tmp_path / f"worker{i}.log", 1) for i in range(2)]
    r = redis.Redis(port=port)
    faults = None
    try:
        wait_ready(r, timeout=180)
        wait_until(lambda: len(list(r.scan_iter("convscope:v1:worker:*"))) == 2, 120,
                   "both workers")
        app = create_app(own)
        pixels = [encode(np.random.default_rng(i).integers(0, 256, (64, 64, 3), np.uint8))
                  for i in range(8)]
        accepted: dict[str, float] = {}
        refused, lock = [0], threading.Lock()

        start = time.monotonic()

        def one(n: int) -> None:
            time.sleep(max(0.0, start + n * PACE - time.monotonic()))
            res = submit(app.test_client(), "gradcam", [pixels[n % 8]])
            with lock:
                if res.status_code == 202:
                    job_id = res.get_json()["id"]
                    assert job_id not in accepted, "a job id handed out twice"
                    accepted[job_id] = time.monotonic()
                else:
                    assert res.status_code == 503, res.get_json()
                    refused[0] += 1

        faults = threading.Thread(target=_faults, args=(start, workers[0], port, folder),
                                  daemon=True)
        faults.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(one, range(JOBS)))
        faults.join(120)
        killed_redis_at = faults.killed_redis_at  # type: ignore[attr-defined]
        survivors = [j for j, t in accepted.items() if t < killed_redis_at - AOF_WINDOW]
        later = [j for j, t in accepted.items() if t > killed_redis_at]
        client = app.test_client()

        def ended() -> bool:
            return all(_status(client, j) == "succeeded" for j in survivors + later)

        wait_until(ended, 300, "every accepted job to succeed", interval=1.0)
        window = [j for j in accepted if j not in survivors and j not in later]
        # accepted within the AOF window: kept (then it succeeds) or lost with the window
        wait_until(lambda: all(_status(client, j) in ("succeeded", None) for j in window),
                   300, "the jobs of the AOF window to succeed or be gone", interval=1.0)
        assert len(survivors) > 100 and len(later) > 100, (len(survivors), len(later))
        forever = [k.decode() for k in r.scan_iter()
                   if r.ttl(k) == -1 and not k.decode().startswith(KOMBU_KEYS + ("_kombu.",))]
        assert forever == []
        lost = sum(_status(client, j) is None for j in window)
        print(f"\n{len(accepted)} accepted ({len(survivors)} before the Redis kill's window,"
              f" {len(window)} in it ({lost} lost with it), {len(later)} after), "
              f"{refused[0]} refused with 503")
    finally:
        for proc in workers:
            stop(proc)
        for proc in (server, getattr(faults, "server", None)):
            if proc is not None:
                stop(proc)


def _status(client, job_id: str) -> str | None:
    res = client.get(f"/v1/jobs/{job_id}")
    return res.get_json()["status"] if res.status_code == 200 else None


def _faults(start: float, victim, port: int, folder: Path) -> None:
    """SIGKILL the first worker's process tree, then SIGKILL Redis and start it again on the
    same port and files, while the jobs are being sent."""
    me = threading.current_thread()
    time.sleep(max(0.0, start + KILL_WORKER_AT - time.monotonic()))
    os.killpg(victim.pid, signal.SIGKILL)
    time.sleep(max(0.0, start + KILL_REDIS_AT - time.monotonic()))
    pid = int(redis.Redis(port=port).info("server")["process_id"])
    me.killed_redis_at = time.monotonic()  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    me.server = redis_on(port, folder)  # type: ignore[attr-defined]
