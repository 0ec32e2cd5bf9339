"""``worker.store.JobStore`` against a real Redis: the atomic status transition (and a cancel
racing the finish), idempotency keys, TTLs on every key a job makes, artifacts, and the
tenant's job listing.

The tests use a database of the session's Redis that is empty when they start (so every key
in it is theirs), and delete what they made at the end.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.pipeline import empty_database, wait_until
from worker import wake
from worker.contract import TERMINAL
from worker.store import KICK_SECONDS, NS, JobStore

TTL = 600  # not the default, so a key that took a hard-coded TTL shows
STATS_JOBS = f"{NS}:stats:jobs"


@pytest.fixture(scope="module")
def db_url(redis_url: str) -> Iterator[str]:
    """A database nobody uses, emptied at the end."""
    with empty_database(redis_url, "the store tests") as url:
        yield url


@pytest.fixture()
def db(db_url: str) -> redis.Redis:
    return redis.Redis.from_url(db_url)


@pytest.fixture()
def store(db: redis.Redis) -> JobStore:
    return JobStore(db, ttl=TTL)


@pytest.fixture()
def tenant() -> str:
    return f"t-{uuid.uuid4().hex}"


def new_job(store: JobStore, tenant: str, key: str | None = None,
            inputs: tuple[bytes, ...] = (b"\x93NUMPY input",)) -> tuple[str, bool]:
    return store.create_job(tenant, "activations", "shapes", "conv1", {"channels": None},
                            list(inputs), [{"size": [64, 64]} for _ in inputs],
                            idempotency_key=key)[:2]


def counted(db: redis.Redis, status: str, kind: str = "activations") -> int:
    return int(db.hget(STATS_JOBS, f"{kind}|{status}") or 0)


def expire_now(db: redis.Redis, key: str) -> None:
    """Let Redis expire ``key`` (1 ms TTL), and wait until it has."""
    assert db.pexpire(key, 1)
    wait_until(lambda: not db.exists(key), 10, f"{key} to expire")


# -- status transitions ------------------------------------------------------------------
@pytest.mark.parametrize(("current", "status", "allowed_from", "moved"), [
    ("queued", "running", ("queued", "running"), True),  # a worker starts it
    ("running", "running", ("queued", "running"), True),  # re-delivered after a worker died
    ("running", "succeeded", ("running",), True),
    ("running", "failed", ("running",), True),
    ("queued", "canceled", ("queued", "running"), True),
    ("running", "canceled", ("queued", "running"), True),
    ("queued", "succeeded", ("running",), False),  # never finished without running
    ("succeeded", "running", ("queued", "running"), False),  # a finished job is left alone
    ("canceled", "running", ("queued", "running"), False),  # canceled before it started
    ("failed", "canceled", ("queued", "running"), False),
    ("canceled", "succeeded", ("running",), False),  # canceled while computing
])
def test_transition(store: JobStore, db: redis.Redis, tenant: str, current: str, status: str,
                    allowed_from: tuple[str, ...], moved: bool) -> None:
    job_id, _ = new_job(store, tenant)
    store.update(job_id, status=current)
    before = store.get_job(job_id)
    counts = counted(db, status)
    assert store.transition(job_id, status, allowed_from) is moved
    after = store.get_job(job_id)
    assert after["status"] == (status if moved else current)
    assert counted(db, status) == counts + moved
    stamp = "started" if status == "running" else "finished"
    if moved:
        assert isinstance(after[stamp], float) and after[stamp] >= before["created"]
    else:
        assert after == before  # a refused transition writes nothing


def test_cancel_answers_whether_it_canceled(store: JobStore, tenant: str) -> None:
    job_id, _ = new_job(store, tenant)
    assert not store.is_canceled(job_id)
    assert store.cancel(job_id) is True
    assert store.is_canceled(job_id)
    assert store.cancel(job_id) is False  # already over
    assert store.get_job(job_id)["status"] == "canceled"


def test_a_missing_job_is_not_transitioned_or_created(store: JobStore, db: redis.Redis) -> None:
    job_id = uuid.uuid4().hex
    keys, stats = db.dbsize(), db.hgetall(STATS_JOBS)
    assert store.transition(job_id, "running", ("queued", "running")) is False
    assert store.cancel(job_id) is False
    assert store.get_job(job_id) is None
    assert store.is_canceled(job_id)  # a worker holding a vanished job stops
    assert not db.exists(store.job_key(job_id))
    assert db.dbsize() == keys and db.hgetall(STATS_JOBS) == stats  # nothing written


def test_cancel_racing_the_finish_leaves_one_end(store: JobStore, db: redis.Redis,
                                                 db_url: str, tenant: str) -> None:
    """The API's cancel and a worker's succeeded/failed, from threads on their own
    connections, started together: exactly one wins each time, and the record says which."""
    contenders = {
        "canceled": lambda s, j: s.cancel(j),
        "succeeded": lambda s, j: s.transition(j, "succeeded", ("running",)),
        "failed": lambda s, j: s.transition(j, "failed", ("running",)),
    }
    stores = {end: JobStore.from_url(db_url, ttl=TTL) for end in contenders}
    counts = {end: counted(db, end) for end in contenders}
    rounds = 40
    for _ in range(rounds):
        job_id, _ = new_job(store, tenant)
        assert store.transition(job_id, "running", ("queued",))
        start = threading.Barrier(len(contenders))
        won: dict[str, bool] = {}

        def contend(end: str, job_id: str = job_id, start: threading.Barrier = start,
                    won: dict[str, bool] = won) -> None:
            start.wait(10)
            won[end] = contenders[end](stores[end], job_id)

        threads = [threading.Thread(target=contend, args=(end,)) for end in contenders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == len(contenders), won  # every contender answered
        winners = [end for end, ok in won.items() if ok]
        assert len(winners) == 1, won
        job = store.get_job(job_id)
        assert job["status"] == winners[0] and job["status"] in TERMINAL
        assert isinstance(job["finished"], float)
    assert sum(counted(db, end) - counts[end] for end in contenders) == rounds


# -- idempotency keys --------------------------------------------------------------------
def test_the_same_key_returns_the_same_job(store: JobStore, db: redis.Redis,
                                           tenant: str) -> None:
    key = uuid.uuid4().hex
    queued = counted(db, "queued")
    job_id, created = new_job(store, tenant, key)
    assert created is True
    keys = db.dbsize()
    again, created = new_job(store, tenant, key, inputs=(b"other", b"bytes"))
    assert (again, created) == (job_id, False)
    assert db.dbsize() == keys  # nothing new stored: no record, inputs or index entry
    assert counted(db, "queued") == queued + 1
    assert [j["id"] for j in store.tenant_jobs(tenant)] == [job_id]
    assert store.get_input(job_id, 0) == b"\x93NUMPY input"
    assert store.idempotent_job(tenant, key) == job_id
    assert store.idempotent_job(tenant, None) is None
    assert store.idempotent_job(tenant, uuid.uuid4().hex) is None


def test_tenants_do_not_share_keys(store: JobStore, tenant: str) -> None:
    key = "retry-1"
    other = f"{tenant}-other"
    mine, created_mine = new_job(store, tenant, key)
    theirs, created_theirs = new_job(store, other, key)
    assert created_mine and created_theirs and mine != theirs
    assert store.idempotent_job(tenant, key) == mine
    assert store.idempotent_job(other, key) == theirs
    assert [j["id"] for j in store.tenant_jobs(other)] == [theirs]


def test_an_expired_jobs_key_makes_a_new_job(store: JobStore, db: redis.Redis,
                                             tenant: str) -> None:
    key = uuid.uuid4().hex
    old, _ = new_job(store, tenant, key)
    expire_now(db, store.job_key(old))
    assert store.idempotent_job(tenant, key) is None  # the key outlived its job
    new, created = new_job(store, tenant, key)
    assert created is True and new != old
    assert store.get_job(new)["status"] == "queued"
    assert store.idempotent_job(tenant, key) == new
    assert 0 < db.pttl(f"{NS}:idem:{tenant}:{key}") <= TTL * 1000
    assert new_job(store, tenant, key) == (new, False)


# -- TTLs --------------------------------------------------------------------------------
def test_every_key_a_job_makes_expires(store: JobStore, db: redis.Redis, tenant: str) -> None:
    before = set(db.scan_iter())
    job_id = store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"in0", b"in1"],
                              [{}, {}], idempotency_key="k", originals=[b"orig0", None]).id
    assert store.transition(job_id, "running", ("queued",))
    store.set_progress(job_id, 0.5)
    store.put_artifacts(job_id, {"heatmap": (b"npy", "application/x-npy"),
                                 "overlay": (b"png", "image/png")})
    store.update(job_id, result={"items": []}, progress=1.0)
    # The metrics counters behind /metrics are the one thing meant to outlive jobs.
    counters = {f"{NS}:stats:{name}" for name in ("jobs", "duration_sum", "duration_count")}
    made = {k.decode() for k in set(db.scan_iter()) - before} - counters
    inputs = {store.input_key(job_id, 0), store.input_key(job_id, 1),
              store.original_key(job_id, 0)}  # the second image needed no original
    kept = {store.job_key(job_id), store.artifact_key(job_id, "heatmap"),
            store.artifact_key(job_id, "overlay"), f"{NS}:idem:{tenant}:k",
            f"{NS}:tenant:{tenant}:jobs"}
    assert made == kept | inputs
    ttls = {key: db.pttl(key) for key in made}
    assert all(0 < ms <= TTL * 1000 for ms in ttls.values()), ttls
    assert store.transition(job_id, "succeeded", ("running",))
    # an ended job's images are not read again: they go with its end, the rest stays
    assert {k.decode() for k in set(db.scan_iter()) - before} - counters == kept


@pytest.mark.parametrize(("current", "end"), [("queued", "canceled"), ("running", "canceled"),
                                              ("running", "failed"), ("running", "succeeded")])
def test_a_job_that_ends_drops_its_images_and_only_its_own(store: JobStore, db: redis.Redis,
                                                          tenant: str, current: str,
                                                          end: str) -> None:
    def images(job_id: str) -> list[int]:
        return [db.exists(store.input_key(job_id, i)) + db.exists(store.original_key(job_id, i))
                for i in range(3)]

    made = [store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"a", b"b", b"c"],
                             [{}, {}, {}], originals=[b"o", None, b"o"]).id for _ in range(2)]
    ending, other = made
    if current == "running":
        assert store.transition(ending, "running", ("queued",))
    assert images(ending) == images(other) == [2, 1, 2]
    assert store.transition(ending, end, ("queued", "running"))
    assert images(ending) == [0, 0, 0]
    assert images(other) == [2, 1, 2]  # another job's images are untouched
    assert store.get_job(ending)["status"] == end  # the job itself stays, with its status


# -- artifacts ---------------------------------------------------------------------------
def test_artifacts_round_trip(store: JobStore, tenant: str) -> None:
    job_id, _ = new_job(store, tenant)
    every_byte = bytes(range(256)) * 64
    store.put_artifacts(job_id, {"grid": (every_byte, "image/png"),
                                 "activations": (b"\x93NUMPY\x00\x01", "application/x-npy")})
    assert store.get_artifact(job_id, "grid") == every_byte
    assert store.get_artifact(job_id, "activations") == b"\x93NUMPY\x00\x01"
    assert store.get_job(job_id)["artifacts"] == {"grid": "image/png",
                                                  "activations": "application/x-npy"}
    # A second call adds to the list and replaces what it names again.
    store.put_artifacts(job_id, {"grid": (b"new", "image/png"),
                                 "filter_3": (b"f3", "image/png")})
    assert store.get_artifact(job_id, "grid") == b"new"
    assert store.get_artifact(job_id, "activations") == b"\x93NUMPY\x00\x01"
    assert store.get_job(job_id)["artifacts"] == {
        "grid": "image/png", "activations": "application/x-npy", "filter_3": "image/png"}
    assert store.get_artifact(job_id, "missing") is None
    assert store.get_artifact(uuid.uuid4().hex, "grid") is None


# -- listing -----------------------------------------------------------------------------
def test_tenant_jobs_newest_first(store: JobStore, db: redis.Redis, tenant: str) -> None:
    made = [new_job(store, tenant)[0] for _ in range(4)]
    other, _ = new_job(store, f"{tenant}-other")
    listed = store.tenant_jobs(tenant)
    assert [j["id"] for j in listed] == made[::-1]
    assert [j["created"] for j in listed] == sorted((j["created"] for j in listed),
                                                   reverse=True)
    assert [j["id"] for j in store.tenant_jobs(tenant, limit=2)] == made[:1:-1]
    assert other not in {j["id"] for j in listed}
    expire_now(db, store.job_key(made[1]))
    assert [j["id"] for j in store.tenant_jobs(tenant)] == [made[3], made[2], made[0]]


def test_a_model_deleted_while_validated_stays_deleted(store: JobStore, db: redis.Redis,
                                                        tenant: str) -> None:
    """The worker's write after validation replaces a record; it never brings one back."""
    record = {"id": "m1", "tenant": tenant, "status": "validating"}
    store.put_model("m1", record)
    assert store.put_model("m1", {**record, "status": "ready"}, replace_only=True)
    assert store.get_model("m1")["status"] == "ready"
    store.delete_model("m1", tenant)
    assert not store.put_model("m1", {**record, "status": "ready"}, replace_only=True)
    assert store.get_model("m1") is None
    assert "m1" not in store.tenant_models(tenant)


def test_simultaneous_first_uses_of_a_key_make_one_job(store: JobStore, tenant: str) -> None:
    """8 requests with one new key at once (a client retrying over 8 connections): one job,
    and all 8 answers name it."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    for _ in range(10):
        key, start = uuid.uuid4().hex, Barrier(8)

        def use(_: int, key: str = key, start: Barrier = start) -> tuple[str, bool]:
            start.wait()
            return store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"x"], [{}],
                                    idempotency_key=key, fingerprint="same")[:2]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(use, range(8)))
        assert len({job_id for job_id, _ in answers}) == 1, answers
        assert sum(created for _, created in answers) == 1


def test_a_key_reused_for_another_request_is_refused(store: JobStore, tenant: str) -> None:
    from worker.idempotency import IdempotencyKeyReused

    key = uuid.uuid4().hex
    first = store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"x"], [{}],
                             idempotency_key=key, fingerprint="request-a")
    again = store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"x"], [{}],
                             idempotency_key=key, fingerprint="request-a")
    assert again[:2] == (first.id, False)
    with pytest.raises(IdempotencyKeyReused):
        store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"y"], [{}],
                         idempotency_key=key, fingerprint="request-b")


def test_writes_after_a_job_expired_recreate_nothing(store: JobStore, db: redis.Redis,
                                                     tenant: str) -> None:
    job_id, _ = new_job(store, tenant)
    expire_now(db, store.job_key(job_id))
    store.set_progress(job_id, 0.5)
    store.update(job_id, status="running")
    assert not store.transition(job_id, "succeeded", ("queued", "running"))
    assert not db.exists(store.job_key(job_id))


def test_several_jobs_inputs_and_originals_in_one_round_trip(store: JobStore, db: redis.Redis,
                                                              tenant: str, monkeypatch) -> None:
    first = store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"a0", b"a1"],
                             [{"original_stored": True}, {"original_stored": False}],
                             originals=[b"png-a0", None]).id
    second = store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"b0"],
                              [{"original_stored": True}], originals=[b"png-b0"]).id
    expire_now(db, store.input_key(second, 0))
    jobs = store.get_jobs([first, second])
    sent = []
    execute = redis.client.Pipeline.execute

    def counting(pipe, *args, **kwargs):
        sent.append(len(pipe))
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    got = store.get_job_inputs(jobs)
    assert sent == [5]  # one pipeline: three inputs, two originals
    assert got == [([b"a0", b"a1"], [b"png-a0", None]), ([None], [b"png-b0"])]


def test_chunk_floors_keep_the_k_largest_values_per_row_and_go_with_the_partials(
        store: JobStore, db: redis.Redis, tenant: str) -> None:
    from worker.chunks import ChunkRecords

    records, job_id = ChunkRecords(store), new_job(store, tenant)[0]
    assert store.transition(job_id, "running", ("queued",))
    assert records.floors(job_id) == {}
    records.raise_floors(job_id, {0: [1.5, 0.5], 1: [-2.0]}, keep=3)
    records.raise_floors(job_id, {0: [2.0, 0.25], 1: [3.0, -2.0], 7: [1e-7], 8: []}, keep=3)
    records.raise_floors(job_id, {}, keep=3)
    assert records.floors(job_id) == {0: [2.0, 1.5, 0.5], 1: [3.0, -2.0, -2.0], 7: [1e-7]}
    exact = 0.1 + 0.2  # values come back exactly (17 significant digits)
    records.raise_floors(job_id, {7: [exact]}, keep=3)
    assert records.floors(job_id)[7] == [exact, 1e-7]
    key = records.key(job_id, "floors")
    assert 0 < db.ttl(key) <= TTL
    records.drop_partials(job_id, 2)
    assert not db.exists(key)


def test_a_chunk_done_twice_keeps_its_first_partial(store: JobStore, db: redis.Redis,
                                                     tenant: str) -> None:
    from worker.chunks import ADDED, COMPLETED, ChunkRecords

    job_id = new_job(store, tenant)[0]
    assert store.transition(job_id, "running", ("queued",))
    records = ChunkRecords(store)
    assert records.done(job_id, 0, 2, b"first run") == ADDED
    assert records.done(job_id, 0, 2, b"second run") == 0  # counted once, not stored again
    assert list(records.partials(job_id, 1)) == [b"first run"]
    assert records.done(job_id, 1, 2, b"other chunk") == COMPLETED
    assert records.done(job_id, 1, 2, b"late") == 0


def test_progress_is_the_fraction_of_chunks_done(store: JobStore, tenant: str) -> None:
    from worker.chunks import ChunkRecords

    job_id = new_job(store, tenant)[0]
    assert store.transition(job_id, "running", ("queued",))
    records = ChunkRecords(store)
    seen = []
    for chunk in (2, 0, 0, 3):  # chunk 0 twice: counted once
        records.done(job_id, chunk, 4, b"partial")
        seen.append(store.get_job(job_id)["progress"])
    assert seen == [0.25, 0.5, 0.5, 0.75]
    assert records.done_count(job_id) == 3


def test_a_job_that_ended_stores_no_partial_and_drops_those_before_once(
        store: JobStore, db: redis.Redis, tenant: str) -> None:
    from worker.chunks import ADDED, ChunkRecords

    job_id = new_job(store, tenant)[0]
    assert store.transition(job_id, "running", ("queued",))
    records = ChunkRecords(store)
    assert records.done(job_id, 0, 3, b"before the cancel") == ADDED
    records.raise_floors(job_id, {0: [1.0]}, keep=2)
    assert store.transition(job_id, "canceled", ("running",))
    assert records.done(job_id, 1, 3, b"after the cancel") == 0  # not stored, not counted
    assert records.done_count(job_id) == 1
    assert store.get_job(job_id)["progress"] == pytest.approx(1 / 3)  # as the cancel left it
    assert list(records.partials(job_id, 3)) == [b"before the cancel", None, None]
    records.raise_floors(job_id, {0: [5.0]}, keep=2)  # a chunk done just before: no floors
    assert records.floors(job_id) == {0: [1.0]}
    assert records.drop_once(job_id, 3) is True
    assert records.drop_once(job_id, 3) is False  # the other chunk messages: nothing to do
    assert list(records.partials(job_id, 3)) == [None, None, None]
    assert not db.exists(records.key(job_id, "floors"))


def test_a_dataset_record_and_its_tenant_index_expire_after_the_dataset_ttl(
        db: redis.Redis) -> None:
    from worker.dataset_records import DatasetRecords, record_key, tenant_index

    records, dataset = DatasetRecords(db, 120), "d" + uuid.uuid4().hex[:16]
    assert records.put({"id": dataset, "tenant": "t-ttl", "status": "ready"})
    assert 0 < db.ttl(record_key(dataset)) <= 120
    assert 0 < db.ttl(tenant_index("t-ttl")) <= 120
    assert records.get(dataset)["expires"] == pytest.approx(time.time() + 120, abs=5)
    assert records.put({"id": dataset, "tenant": "t-ttl", "status": "ready"}, ttl=1)
    time.sleep(1.2)
    assert records.get(dataset) is None  # expired: gone from the API, its files swept later


def test_a_masked_shutdown_leaves_the_job_running_and_is_raised(store: JobStore,
                                                                tenant: str) -> None:
    from worker import runner

    interrupted, broken = new_job(store, tenant)[0], new_job(store, tenant)[0]
    for job_id in (interrupted, broken):
        assert store.transition(job_id, "running", ("queued",))
    try:  # a SystemExit (billiard's SIGTERM) masked by TensorFlow's AssertionError
        try:
            raise SystemExit(-15)
        except SystemExit:
            raise AssertionError("Concurrent access?") from None
    except AssertionError as exc:
        with pytest.raises(SystemExit):
            runner._fail(store, {"id": interrupted}, exc)
    assert store.get_job(interrupted)["status"] == "running"  # the sweeper queues it again
    runner._fail(store, {"id": broken}, AssertionError("a real bug"))
    assert store.get_job(broken)["status"] == "failed"
    assert store.get_job(broken)["error"]["code"] == "internal_error"


@pytest.mark.parametrize("inputs", ["null", None, "[]"])
def test_a_job_without_a_list_of_inputs_ends_and_deletes_nothing(store: JobStore, db: redis.Redis,
                                                                  tenant: str,
                                                                  inputs: str | None) -> None:
    job_id, _ = new_job(store, tenant)  # (a dataset job's hash says null, or nothing)
    if inputs is None:
        db.hdel(store.job_key(job_id), "inputs")
    else:
        db.hset(store.job_key(job_id), "inputs", inputs)
    assert store.transition(job_id, "running", ("queued",))
    assert store.transition(job_id, "succeeded", ("running",))
    assert store.get_job(job_id)["status"] == "succeeded"
    assert db.exists(store.input_key(job_id, 0)) == 1  # not listed: left to its TTL


def test_a_batched_job_is_stored_whole_and_asks_for_one_message(store: JobStore,
                                                                 db: redis.Redis,
                                                                 tenant: str) -> None:
    """The one-script store: record, inputs, index (scored by the record's own ``created``),
    counter, batch queue in order, the batch-key set, one wake token, and a task message
    asked for only while the queue's marker is unset."""
    batch = f"b-{uuid.uuid4().hex}"
    queued = counted(db, "queued", "gradcam")
    made = [store.create_job(tenant, "gradcam", "shapes", "conv4", {"method": "gradcam"},
                             [b"in-%d" % i], [{"filename": f"{i}.png"}], batch=batch,
                             originals=[b"orig-%d" % i if i else None]) for i in range(3)]
    assert [(job.created, job.send) for job in made] == [(True, True), (True, False),
                                                         (True, False)]
    assert db.lrange(store.batch_queue(batch), 0, -1) == [job.id.encode() for job in made]
    assert db.sismember(f"{NS}:batch_keys", batch)
    assert db.lrange(wake.wake_key(batch), 0, -1) == [b"1"]
    assert 0 < db.ttl(store.kick_key(batch)) <= KICK_SECONDS
    for key in (store.batch_queue(batch), f"{NS}:batch_keys"):
        assert 0 < db.ttl(key) <= TTL
    for i, job in enumerate(made):
        record = store.get_job(job.id)
        assert record is not None
        assert (record["status"], record["batch_key"], record["inputs"]) == \
            ("queued", batch, [{"filename": f"{i}.png"}])
        assert db.zscore(f"{NS}:tenant:{tenant}:jobs", job.id) == record["created"]
        assert db.get(store.input_key(job.id, 0)) == b"in-%d" % i
        assert db.get(store.original_key(job.id, 0)) == (b"orig-%d" % i if i else None)
    db.delete(store.kick_key(batch))  # the pending message was taken
    assert store.create_job(tenant, "gradcam", "shapes", "conv4", {}, [b"x"], [{}],
                            batch=batch).send
    alone = store.create_job(tenant, "filters", "shapes", "conv4", {}, [], [])
    assert alone.send and not db.exists(store.batch_queue(""))
    assert counted(db, "queued", "gradcam") == queued + 4


def test_a_result_holding_nan_is_stored_as_strict_json(store: JobStore, db: redis.Redis,
                                                       tenant: str) -> None:
    """A model whose weights hold NaN scores NaN: the job's stored fields must still parse
    where NaN is no JSON (a browser's JSON.parse), with null in its place."""
    job_id, _ = new_job(store, tenant)
    assert store.transition(job_id, "running", ("queued",))
    result = {"items": [{"score": float("nan"), "probs": [0.5, float("inf")],
                         "nested": ({"a": -float("inf"), "b": 1.5},)}], "n": 3}
    assert store.finish(job_id, result, {})

    def strict(text: bytes) -> object:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text!r}"))

    stored = strict(db.hget(store.job_key(job_id), "result"))
    assert stored == {"items": [{"score": None, "probs": [0.5, None],
                                 "nested": [{"a": None, "b": 1.5}]}], "n": 3}
    assert store.get_job(job_id)["result"] == stored
