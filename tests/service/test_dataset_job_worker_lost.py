"""A worker SIGKILLed (its whole process group) while it computes a chunk of a dataset job:
the chunk's lease lapses, another worker's sweeper sends the chunk again, and the job ends
``succeeded`` with every image counted exactly once. Its own Redis database and workers."""

from __future__ import annotations

import os
import signal

from service.launcher import stop
from tests.pipeline import start_worker, wait_until
from tests.service.dataset_job_stack import A, dataset_job_stack
from tests.service.job_http import poll
from worker.chunks import RUNNING_UNITS

N, CHUNK = 24, 4


def test_a_chunk_of_a_killed_worker_is_run_again(settings, tmp_path) -> None:
    with dataset_job_stack(settings, tmp_path, 1, "the dataset worker-lost test") as stack:
        dataset = stack.shapes_dataset(N, seed=5)
        res = stack.submit(dataset, layer="conv3", k=3, chunk_images=CHUNK)
        job_id = res.get_json()["id"]

        def held() -> list[bytes]:
            return [m for m in stack.r.zrange(RUNNING_UNITS, 0, -1)
                    if m.decode().startswith(job_id)]

        wait_until(held, 120, "a chunk to be computed", interval=0.001)
        os.killpg(stack.worker.pid, signal.SIGKILL)  # main process and child, no goodbye
        stack.worker.wait(10)
        assert held(), "the chunk ended before the kill: nothing was interrupted"
        second = start_worker(stack.settings, tmp_path / "second.log", 1)
        try:
            job = poll(stack.client, job_id, timeout=240, headers=A)
        finally:
            stop(second)
        assert job["status"] == "succeeded", job
        assert (job["result"]["images"], job["result"]["corrupt"]) == (N, 0)
        assert job["result"]["chunks"] == N // CHUNK
        for channel in job["result"]["channels"]:
            assert sum(channel["histogram"]["counts"]) == N
        assert stack.records().runs(job_id) > N // CHUNK + 1  # the killed chunk ran again
