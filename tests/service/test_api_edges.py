"""The API's edges: numbers in query strings, lists naming a channel twice, the
Idempotency-Key header, and artifacts' ETag and Range answers (real Redis, a real worker)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import redis

from tests.service.job_http import QueueCount, assert_problem, encode, load_npy, run, submit

GOOD = encode(np.full((64, 64, 3), 90, np.uint8))


@pytest.fixture(scope="module")
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=501", "limit=%D9%A5",
                                   "limit=1_0", "limit=%201", "limit=2.0"])
def test_list_limit_out_of_range_or_not_ascii_digits(client, query: str) -> None:
    assert_problem(client.get(f"/v1/jobs?{query}"), 400, "bad_request")


def test_list_limit_is_honoured(client) -> None:
    for _ in range(3):
        assert submit(client, "activations", [GOOD], layer="conv1").status_code == 202
    assert len(client.get("/v1/jobs?limit=2").get_json()["jobs"]) == 2
    assert len(client.get("/v1/jobs?limit=%2B3").get_json()["jobs"]) == 3


@pytest.mark.parametrize("wait", ["%D9%A1", "1_0", "nan", "inf", "0x1", "1e"])
def test_wait_takes_ascii_decimals_only(client, wait: str) -> None:
    res = submit(client, "activations", [GOOD], layer="conv1")
    job_id = res.get_json()["id"]
    assert_problem(client.get(f"/v1/jobs/{job_id}?wait={wait}"), 400, "bad_request")
    assert client.get(f"/v1/jobs/{job_id}?wait=.5").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}?wait=1e-3").status_code == 200


@pytest.mark.parametrize("kind, options", [
    ("filters", {"filters": [0, 1, 0], "steps": 2, "size": 16}),
    ("activations", {"channels": [3, 3]}),
])
def test_a_channel_listed_twice_is_refused(client, r, kind: str, options: dict) -> None:
    before = QueueCount.read(r)
    body = assert_problem(submit(client, kind, [GOOD] if kind != "filters" else [],
                                 layer="conv2", options=options), 400, "invalid_options")
    assert "more than once" in body["detail"]
    assert QueueCount.read(r) == before


@pytest.mark.parametrize("key", ["a, b", "", "k\x7f", "é", "x" * 256])
def test_malformed_idempotency_key_is_refused(client, r, key: str) -> None:
    before = QueueCount.read(r)
    res = submit(client, "activations", [GOOD], layer="conv1",
                 headers={"Idempotency-Key": key})
    assert_problem(res, 400, "bad_request")
    assert QueueCount.read(r) == before


def test_a_valid_idempotency_key_still_replays(client) -> None:
    key = "script run 7; images a..b"  # spaces and punctuation: visible ASCII, no comma
    first = submit(client, "activations", [GOOD], layer="conv1",
                   headers={"Idempotency-Key": key})
    again = submit(client, "activations", [GOOD], layer="conv1",
                   headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]


def test_artifact_etag_and_ranges(client) -> None:
    job = run(client, "activations", [GOOD], layer="conv2")
    url = f"/v1/jobs/{job['id']}/artifacts/activations"
    full = client.get(url)
    data = full.data
    assert full.status_code == 200 and full.headers["Accept-Ranges"] == "bytes"
    etag = full.headers["ETag"]
    assert etag.strip('"') == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert load_npy(data).shape == (32, 32, 32)

    same = client.get(url, headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.data == b""
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == data

    head = client.get(url, headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.data == data[:10]
    assert head.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.data == data[-16:]
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"older"'})
    assert stale.status_code == 200 and stale.data == data  # If-Range not matching: all of it

    assert_problem(client.get(url, headers={"Range": f"bytes={len(data) + 5}-"}), 416,
                   "range_not_satisfiable")
    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=x"):  # not one byte range: all
        whole = client.get(url, headers={"Range": ignored})
        assert whole.status_code == 200 and whole.data == data, ignored
