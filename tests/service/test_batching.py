"""Cross-job micro-batching on a real worker with one child: jobs queued behind a busy
worker are computed in one run, each with the result it gets alone; a canceled job is never
computed; a bad job fails alone; a worker killed mid-batch leaves every job re-run to success.

Its own worker and Redis database (8), so the batches here are the only ones there."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from contextlib import contextmanager

import numpy as np
import pytest
import redis

from service.launcher import stop as stop_process_group
from tests.pipeline import start_worker, wait_ready, wait_until
from tests.service.job_http import NS, encode, load_npy, poll, submit
from tests.service.test_worker_death import other_database
from tests.service.test_worker_safety import children
from worker.contract import QUEUE, TASK_RUN_BATCH, TASK_RUN_JOB

MAX_IMAGES = 8  # the worker's CONVSCOPE_BATCH_MAX_IMAGES here
BLOCKER = {"filters": list(range(8)), "steps": 200, "size": 64, "seed": 3}


@contextmanager
def own_worker(settings, folder, db: int, **env: str):
    """(Flask test client, redis, worker process) on Redis database ``db``, one worker
    child with ``env`` in its environment."""
    from service.app import create_app

    own = dataclasses.replace(settings, redis_url=other_database(settings.redis_url, db))
    r = redis.Redis.from_url(own.redis_url)
    r.flushdb()
    os.environ.update(env)  # the worker's environment
    try:
        proc = start_worker(own, folder / "worker.log", 1)
    finally:
        for name in env:
            del os.environ[name]
    try:
        wait_ready(r, timeout=180)
        yield create_app(own).test_client(), r, proc
    finally:
        stop_process_group(proc)
        r.flushdb()


@pytest.fixture(scope="module")
def lone(settings, tmp_path_factory):
    """Database 8, one worker child, batches of at most ``MAX_IMAGES`` images."""
    with own_worker(settings, tmp_path_factory.mktemp("batching"), 8,
                    CONVSCOPE_BATCH_MAX_IMAGES=str(MAX_IMAGES)) as handles:
        yield handles


def images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def runs(r: redis.Redis, kind: str) -> tuple[int, int]:
    """(computations, jobs they served) of ``kind`` so far."""
    return (int(r.hget(f"{NS}:stats:batch_runs", kind) or 0),
            int(r.hget(f"{NS}:stats:batch_jobs", kind) or 0))


def behind_a_busy_worker(client, r: redis.Redis, jobs: list[dict]) -> tuple[str, list[str]]:
    """Occupy the only child with a long filters job, queue ``jobs``; returns the ids."""
    blocker = submit(client, "filters", layer="conv4", options=BLOCKER).get_json()["id"]
    wait_until(lambda: client.get(f"/v1/jobs/{blocker}").get_json()["progress"] > 0, 120,
               "the blocker to run")
    ids = []
    for job in jobs:
        res = submit(client, job.get("kind", "gradcam"), [encode(i) for i in job["images"]],
                     options=job.get("options"), layer=job.get("layer"))
        assert res.status_code == 202, res.get_json()
        ids.append(res.get_json()["id"])
    return blocker, ids


def test_queued_jobs_form_one_batch_with_their_own_results(lone, shapes_model) -> None:
    from models.cam import make_cam

    client, r, _ = lone
    specs = [{"images": images(2, 1)}, {"images": images(1, 2), "options": {"class_index": 2}},
             {"images": images(2, 3), "options": {"class_index": [0, 1]}},
             {"images": images(1, 4)}, {"images": images(2, 5)}]  # 8 images: one batch
    before = runs(r, "gradcam")
    blocker, ids = behind_a_busy_worker(client, r, specs)
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids)
    assert runs(r, "gradcam") == (before[0] + 1, before[1] + len(ids))  # one computation
    assert all(j["batch"] == len(ids) for j in jobs)
    cam = make_cam("gradcam", shapes_model, "conv4")
    for spec, job in zip(specs, jobs, strict=True):
        alone = cam(np.stack(spec["images"]).astype(np.float32),
                    class_index=(spec.get("options") or {}).get("class_index"))
        for i, item in enumerate(job["result"]["items"]):
            assert item["class_index"] == alone.class_index[i]
            name = item["artifacts"]["heatmap"]
            assert name == ("heatmap" if i == 0 else f"heatmap.{i}")
            heat = load_npy(client.get(f"/v1/jobs/{job['id']}/artifacts/{name}").data)
            np.testing.assert_allclose(heat, alone.heatmaps[i], atol=1e-5)


def test_batches_stop_at_the_image_cap(lone) -> None:
    client, r, _ = lone
    before = runs(r, "gradcam")
    blocker, ids = behind_a_busy_worker(client, r, [{"images": images(3, s)} for s in range(4)])
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["batch"] for j in jobs] == [2, 2, 2, 2]  # 3 + 3 images; a third would pass 8
    assert runs(r, "gradcam") == (before[0] + 2, before[1] + 4)


def test_a_job_canceled_while_waiting_is_never_computed(lone) -> None:
    client, r, _ = lone
    before = runs(r, "gradcam")
    blocker, ids = behind_a_busy_worker(client, r, [{"images": images(1, s)} for s in range(4)])
    assert client.delete(f"/v1/jobs/{ids[1]}").status_code == 202
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "canceled", "succeeded", "succeeded"]
    assert jobs[1]["started"] is None and jobs[1]["artifacts"] == []
    assert runs(r, "gradcam") == (before[0] + 1, before[1] + 3)


def test_a_bad_job_fails_alone(lone) -> None:
    client, r, _ = lone
    blocker, ids = behind_a_busy_worker(client, r, [{"images": images(1, s)} for s in range(3)])
    r.delete(f"{NS}:job:{ids[1]}:input:0")  # its image is gone before it runs
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "failed", "succeeded"]
    assert "expired" in jobs[1]["error"]["message"]
    assert jobs[0]["batch"] == jobs[2]["batch"] == 2


def test_different_options_are_not_batched_together(lone) -> None:
    client, r, _ = lone
    before = runs(r, "gradcam")
    blocker, ids = behind_a_busy_worker(client, r, [
        {"images": images(1, 1)}, {"images": images(1, 2), "options": {"method": "layercam"}},
        {"images": images(1, 3)}])
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["batch"] for j in jobs] == [2, 1, 2]
    assert runs(r, "gradcam") == (before[0] + 2, before[1] + 3)


def test_a_worker_killed_mid_batch_leaves_every_job_rerun(lone) -> None:
    client, r, proc = lone
    specs = [{"images": images(4, s), "options": {"method": "scorecam"}} for s in range(2)]
    blocker, ids = behind_a_busy_worker(client, r, specs)
    client.delete(f"/v1/jobs/{blocker}")

    def all_running() -> bool:
        return all(client.get(f"/v1/jobs/{i}").get_json()["status"] == "running" for i in ids)

    wait_until(all_running, 120, "the batch to be claimed")
    (child,) = children(proc.pid)
    os.kill(child, signal.SIGKILL)
    statuses = [client.get(f"/v1/jobs/{i}").get_json()["status"] for i in ids]
    assert statuses == ["running"] * len(ids), "the batch ended before the kill"
    jobs = [poll(client, i, 240) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids)
    assert proc.poll() is None


def test_no_job_is_lost_through_two_workers(lone, tmp_path) -> None:
    """500 jobs from 8 clients through two worker processes on one Redis: each ends once."""
    from concurrent.futures import ThreadPoolExecutor

    client, r, _ = lone
    own_url = client.application.config["CONVSCOPE"].redis_url
    second = start_worker(dataclasses.replace(client.application.config["CONVSCOPE"],
                                              redis_url=own_url), tmp_path / "w2.log", 1)
    try:
        wait_until(lambda: len(list(r.scan_iter(f"{NS}:worker:*"))) >= 2, 180,
                   "the second worker")
        pixels = [encode(i) for i in images(8, 9)]
        before = runs(r, "gradcam")

        def one(n: int) -> str:
            res = submit(client.application.test_client(), "gradcam", [pixels[n % 8]])
            assert res.status_code == 202, res.get_json()
            return res.get_json()["id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(one, range(500)))
        assert len(set(ids)) == 500
        jobs = [poll(client, i, 300) for i in ids]
        assert {j["status"] for j in jobs} == {"succeeded"}
        computations, served = (a - b for a, b in zip(runs(r, "gradcam"), before, strict=True))
        assert served == 500  # every job computed exactly once, by one worker or the other
        assert 1 <= computations <= 500
    finally:
        stop_process_group(second)


def test_jobs_waiting_together_cost_one_task_message(lone) -> None:
    """Six jobs queued behind a busy worker, one batch key: one message reaches the broker
    (the first job's); the worker's run of it computes all six."""
    client, r, _ = lone
    options = {"top_k": 2}  # a batch key no other test here uses
    blocker, ids = behind_a_busy_worker(client, r, [{"images": images(1, s), "options": options}
                                                    for s in range(6)])
    assert r.llen(QUEUE) == 1, "one message for the six waiting jobs"
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 6
    assert [j["batch"] for j in jobs] == [6] * 6


KOMBU_KEYS = ("convscope", "unacked", "unacked_index", "unacked_mutex")  # the broker's own


def test_no_key_is_left_without_a_ttl(lone) -> None:
    """After jobs of every kind ran (batched, alone, canceled, failed), every key in the
    database expires, but the broker's own (kombu's queue and unacked bookkeeping)."""
    client, r, _ = lone
    blocker, ids = behind_a_busy_worker(client, r, [
        {"images": images(1, 1)}, {"images": images(2, 2)},
        {"kind": "activations", "layer": "conv1", "images": images(1, 3)},
        {"kind": "explain", "layer": "conv1", "images": images(1, 4),
         "options": {"filter": 0, "y": 3, "x": 3}}])
    client.delete(f"/v1/jobs/{ids[1]}")
    r.delete(f"{NS}:job:{ids[2]}:input:0")  # this one fails
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "canceled", "failed", "succeeded"]
    forever = [k.decode() for k in r.scan_iter()
               if r.ttl(k) == -1 and not k.decode().startswith(KOMBU_KEYS + ("_kombu.",))]
    assert forever == []


def test_a_job_larger_than_the_pixel_cap_still_runs(settings, tmp_path) -> None:
    """With batches capped at one 64×64 image's pixels, jobs of two images each pass the cap
    alone: each still runs (as a batch of its own), none waits forever."""
    with own_worker(settings, tmp_path, 9, CONVSCOPE_BATCH_MAX_PIXELS="4096") as (client, r, _):
        before = runs(r, "gradcam")
        blocker, ids = behind_a_busy_worker(client, r, [{"images": images(2, s)}
                                                        for s in range(3)])
        client.delete(f"/v1/jobs/{blocker}")
        jobs = [poll(client, i, 180) for i in ids]
        assert [(j["status"], j["batch"]) for j in jobs] == [("succeeded", 1)] * 3
        assert runs(r, "gradcam") == (before[0] + 3, before[1] + 3)
        assert r.llen(QUEUE) == 0  # no message left going round


@contextmanager
def task_messages(r: redis.Redis):
    """The task names of the messages published to the task queue meanwhile (MONITOR)."""
    sent: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with r.monitor() as monitor:
            watching.set()
            for command in monitor.listen():
                words = command["command"].split(" ", 2)
                if words[0].upper() == "LPUSH" and words[1] == QUEUE:
                    sent.append(TASK_RUN_BATCH if TASK_RUN_BATCH in words[2] else TASK_RUN_JOB)
                if command["command"] == "ECHO end-of-watch":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    watching.wait(10)
    try:
        yield sent
    finally:
        r.echo("end-of-watch")
        thread.join(10)


def test_a_busy_queue_is_served_batch_after_batch_without_messages(lone) -> None:
    """20 jobs of one batch key queued behind a busy worker: the first job's message starts
    the worker on the queue, and it serves all three batches (8, 8, 4 images) before handing
    the queue back: no message for the second and third batch, from the API or the worker."""
    client, r, _ = lone
    options = {"top_k": 4}  # a batch key no other test here uses
    with task_messages(r) as sent:
        blocker, ids = behind_a_busy_worker(client, r, [{"images": images(1, 40 + s),
                                                         "options": options}
                                                        for s in range(20)])
        client.delete(f"/v1/jobs/{blocker}")
        jobs = [poll(client, i, 180) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 20
    assert sorted(j["batch"] for j in jobs) == [4] * 4 + [8] * 16
    assert sent == [TASK_RUN_JOB] * 2  # the blocker's and the first waiting job's


def test_a_queue_served_in_a_row_yields_to_other_waiting_work(lone) -> None:
    """While a worker serves one batch queue, a job of another queue waits at most one batch:
    its message in the task queue makes the worker hand the busy queue back."""
    client, r, _ = lone
    busy = [{"images": images(1, 80 + s), "options": {"top_k": 5}} for s in range(24)]
    other = {"kind": "activations", "layer": "conv1", "images": images(1, 99)}
    blocker, ids = behind_a_busy_worker(client, r, [*busy, other])
    client.delete(f"/v1/jobs/{blocker}")
    jobs = [poll(client, i, 180) for i in ids]
    assert all(j["status"] == "succeeded" for j in jobs)
    assert sorted(j["batch"] for j in jobs[:-1]) == [8] * 24
    ends = sorted(j["finished"] for j in jobs[:-1])
    assert ends[7] < jobs[-1]["finished"] < ends[8]  # after the first batch, before the second


def test_jobs_posted_one_after_another_are_claimed_without_messages(lone) -> None:
    """One job at a time (each posted after the last one ended): a worker serving the queue,
    waiting on its wake list, claims each next job as it is stored, without a message (before,
    one each). A first job starts the worker on the queue; the four after it may cross the end
    of one 2 s serving run (DRAIN_SECONDS), which costs one message."""
    client, r, _ = lone
    options = {"top_k": 3}  # a batch key no other test here uses

    def one(seed: int) -> dict:
        return submit(client, "gradcam", [encode(i) for i in images(1, seed)],
                      options=options, wait=60).get_json()

    assert one(59)["status"] == "succeeded"
    with task_messages(r) as sent:
        jobs = [one(60 + s) for s in range(4)]
    assert [j["status"] for j in jobs] == ["succeeded"] * 4
    assert len(sent) <= 1, sent
