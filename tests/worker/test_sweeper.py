"""One task message per waiting batch, and the sweeper, on a real Redis (an empty database):
a job whose worker died is queued again exactly once, with ``attempts`` counted, and fails
``worker_lost`` at the third loss; a batch queue left without a message is sent one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline import empty_database
from worker.claims import Claims
from worker.contract import TASK_RUN_BATCH, TASK_RUN_JOB
from worker.store import RUNNING, JobStore, NewJob
from worker.sweeper import MAX_ATTEMPTS, Sweeper


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    with empty_database(redis_url, "the sweeper tests") as url:
        yield JobStore.from_url(url, ttl=600)


class Sent(list):
    """What a sweeper sent, as ``(task name, args)``."""

    def __call__(self, name: str, args: list) -> None:
        self.append((name, args))


def new_job(store: JobStore, batch: str | None = "key", kind: str = "gradcam") -> NewJob:
    return store.create_job("public", kind, "shapes", "conv4", {}, [b"x"], [{}], batch=batch)


def running(store: JobStore) -> set[str]:
    return {m.decode() for m in store.r.zrange(RUNNING, 0, -1)}


def test_only_the_first_job_of_a_waiting_batch_is_sent_a_message(store: JobStore) -> None:
    first, second, third = new_job(store), new_job(store), new_job(store)
    other = new_job(store, batch="other key")
    alone = new_job(store, batch=None, kind="filters")
    assert [first.send, second.send, third.send, other.send, alone.send] == \
        [True, False, False, True, True]
    assert store.r.lrange(store.batch_queue("key"), 0, -1) == \
        [first.id.encode(), second.id.encode(), third.id.encode()]
    store.r.delete(store.kick_key("key"))  # a worker took the message: the next job sends one
    assert new_job(store).send


def test_a_job_whose_worker_died_is_queued_again_once_then_fails(store: JobStore) -> None:
    sent, job = Sent(), new_job(store)
    sweeper, claims = Sweeper(store, sent), Claims(store)
    for attempt in range(1, MAX_ATTEMPTS):
        assert claims.claim(store.get_job(job.id)) == 1
        assert job.id in running(store)
        assert sweeper.sweep()["requeued"] == 0  # its owner lives: left alone
        store.r.delete(store.lease_key(job.id))  # the owner died: its lease lapsed
        assert sweeper.sweep()["requeued"] == 1
        assert sweeper.sweep()["requeued"] == 0  # exactly once
        record = store.get_job(job.id)
        assert (record["status"], record["attempts"], record["started"]) == \
            ("queued", attempt, None)
        assert [s for s in sent if s[0] == TASK_RUN_JOB] == [(TASK_RUN_JOB, [job.id])] * attempt
        assert job.id not in running(store)
        assert store.r.exists(store.input_key(job.id, 0)) == 1  # it will be computed again
    assert claims.claim(store.get_job(job.id)) == 1
    store.r.delete(store.lease_key(job.id))
    assert sweeper.sweep()["lost"] == 1
    record = store.get_job(job.id)
    assert record["status"] == "failed" and record["attempts"] == MAX_ATTEMPTS
    assert record["error"]["code"] == "worker_lost"
    assert job.id not in running(store)
    assert len([s for s in sent if s[0] == TASK_RUN_JOB]) == MAX_ATTEMPTS - 1
    # its image stayed through the re-runs and goes with its end, as any ended job's does
    assert store.r.exists(store.input_key(job.id, 0)) == 0


def test_ended_and_canceled_jobs_leave_the_running_set(store: JobStore) -> None:
    claims, sweeper, sent = Claims(store), None, Sent()
    done, canceled = new_job(store), new_job(store)
    for job in (done, canceled):
        assert claims.claim(store.get_job(job.id)) == 1
    assert running(store) == {done.id, canceled.id}
    assert store.finish(done.id, {"items": []}, {})
    assert store.cancel(canceled.id)
    assert running(store) == set()
    sweeper = Sweeper(store, sent)
    for job in (done, canceled):
        store.r.delete(store.lease_key(job.id))
    assert sweeper.sweep() == {"requeued": 0, "lost": 0, "kicked": 0}
    assert store.get_job(canceled.id)["status"] == "canceled"


def test_a_batch_queue_left_without_a_message_is_sent_one(store: JobStore) -> None:
    sent = Sent()
    sweeper = Sweeper(store, sent)
    new_job(store)
    assert sweeper.sweep()["kicked"] == 0  # its message is on its way
    store.r.delete(store.kick_key("key"))  # ... and was lost (an API process died)
    assert sweeper.sweep()["kicked"] == 1
    assert sent == [(TASK_RUN_BATCH, ["key"])]
    assert sweeper.sweep()["kicked"] == 0  # one message, not one per sweep
    store.r.delete(store.batch_queue("key"))  # the worker took every job
    store.r.delete(store.kick_key("key"))
    assert sweeper.sweep()["kicked"] == 0
    assert not store.r.sismember("convscope:v1:batch_keys", "key")


def test_a_queued_again_job_runs_without_companions(store: JobStore) -> None:
    """The runner's rule, as the store shows it: a job queued again is not in the batch
    queue, so no batch takes it along; its own message runs it alone."""
    job, companion = new_job(store), new_job(store)
    claims = Claims(store)
    assert claims.claim(store.get_job(job.id)) == 1
    store.r.delete(store.lease_key(job.id))
    Sweeper(store, Sent()).sweep()
    assert store.r.lrange(store.batch_queue("key"), 0, -1) == [companion.id.encode()]
    assert claims.claim_companions("key", 8, 8, 10**6) == [companion.id]


def test_expired_datasets_folders_are_removed_every_few_minutes(store: JobStore,
                                                                tmp_path) -> None:
    import os
    import time

    from worker.dataset_ingest import ORPHAN_SECONDS
    from worker.dataset_records import DatasetRecords
    from worker.datasets import dataset_dir, new_dataset_id
    from worker.settings import Settings

    settings = Settings(data_dir=tmp_path)
    old = time.time() - ORPHAN_SECONDS - 60
    live, expired, young = (new_dataset_id() for _ in range(3))
    for dataset, mtime in ((live, old), (expired, old), (young, time.time())):
        folder = dataset_dir(tmp_path, dataset)
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "a.png").write_bytes(b"png")
        os.utime(folder, (mtime, mtime))
    DatasetRecords(store.r, 600).put({"id": live, "tenant": "public", "status": "ready"})
    sweeper = Sweeper(store, Sent(), settings=settings)
    assert sweeper.remove_expired_files(wait=True)
    assert dataset_dir(tmp_path, live).is_dir()
    assert not dataset_dir(tmp_path, expired).exists()  # its record is gone: its files too
    assert dataset_dir(tmp_path, young).is_dir()  # maybe still being written
    assert not sweeper.remove_expired_files()  # not again within FILES_SECONDS
    assert not Sweeper(store, Sent()).remove_expired_files()  # no settings: no files


def test_a_chunk_lost_too_often_fails_its_job_and_drops_its_partials(store: JobStore) -> None:
    from worker.chunks import MAX_UNIT_ATTEMPTS, ChunkRecords, member
    from worker.contract import TASK_RUN_CHUNK

    job_id = new_job(store, batch=None, kind="top_examples").id
    assert store.transition(job_id, "running", ("queued",))
    store.update(job_id, chunks=2)
    records, sent = ChunkRecords(store), Sent()
    records.done(job_id, 0, 2, b"chunk 0")
    sweeper = Sweeper(store, sent)
    for lost in range(1, MAX_UNIT_ATTEMPTS + 1):
        assert records.claim(job_id, 1, "a worker", 60) == 1
        store.r.delete(store.lease_key(member(job_id, 1)))  # its worker died
        sent.clear()
        sweeper.sweep()
        resent = (TASK_RUN_CHUNK, [job_id, 1]) in sent
        assert resent == (lost < MAX_UNIT_ATTEMPTS)  # sent again, until the last loss
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert list(records.partials(job_id, 2)) == [None, None]  # not kept for a merge never run
