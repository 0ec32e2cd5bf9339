"""Leases on a real Redis (an empty database): a held job's lease is renewed past its
lifetime by the process's one renewal thread and released when the last block holding it
ends; a released lease is never brought back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.pipeline import empty_database
from worker import claims as claims_module
from worker.claims import Claims
from worker.store import JobStore


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    monkeypatch.setattr(claims_module, "LEASE_SECONDS", 1)
    monkeypatch.setattr(claims_module, "RENEW_SECONDS", 0.05)
    with empty_database(redis_url, "the lease tests") as url:
        yield JobStore.from_url(url, ttl=600)


def claimed(store: JobStore, claims: Claims) -> str:
    job = store.create_job("public", "gradcam", "shapes", "conv4", {}, [b"x"], [{}])
    assert claims.claim(store.get_job(job.id)) == 1
    return job.id


def renewers() -> int:
    return sum(t.name == "lease-renewal" and t.is_alive() for t in threading.enumerate())


def test_a_held_lease_outlives_its_ttl_and_is_released_after(store: JobStore) -> None:
    claims = Claims(store)
    first, second = claimed(store, claims), claimed(store, claims)
    before = renewers()
    with claims.held([first]):
        with claims.held([second]):
            time.sleep(1.6)  # past the 1 s lease: only renewals keep it
            assert store.r.get(store.lease_key(first)) == claims.owner.encode()
            assert store.r.get(store.lease_key(second)) == claims.owner.encode()
        assert not store.r.exists(store.lease_key(second))  # released with its block
        time.sleep(0.3)  # renewals go on for the job still held, not for the released one
        assert store.r.exists(store.lease_key(first))
        assert not store.r.exists(store.lease_key(second))
    assert not store.r.exists(store.lease_key(first))
    assert renewers() - before == 1  # one thread for every block of this process


def test_an_unheld_lease_lapses(store: JobStore) -> None:
    claims = Claims(store)
    job_id = claimed(store, claims)
    with claims.held([claimed(store, claims)]):  # the renewal thread runs meanwhile
        time.sleep(1.5)
    assert not store.r.exists(store.lease_key(job_id))  # claimed, never held: not renewed


def test_a_job_held_twice_keeps_its_lease_until_the_last_block_ends(store: JobStore) -> None:
    claims = Claims(store)
    job_id = claimed(store, claims)
    with claims.held([job_id]):
        with claims.held([job_id]):
            pass
        time.sleep(1.3)  # past the lease: renewed, as the outer block still holds it
        assert store.r.get(store.lease_key(job_id)) == claims.owner.encode()
    assert not store.r.exists(store.lease_key(job_id))
