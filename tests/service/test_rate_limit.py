"""Per-tenant rate limit on new jobs and uploads: 429 ``rate_limited`` with Retry-After,
nothing stored or queued for a refused request, replays and other tenants unaffected, and
the batch client waiting as told. Real Redis and worker, as for the other pipeline tests."""

from __future__ import annotations

import dataclasses
import io
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import redis

from service.auth import tenant_of
from service.ratelimit import parse_rate
from tests.service.job_http import (
    NS,
    QueueCount,
    assert_problem,
    encode,
    keras_bytes,
    poll,
    submit,
    tiny_model,
    upload,
)

IMAGE = encode(np.full((64, 64, 3), 90, np.uint8))


def keyed_client(settings, rate: str) -> tuple[object, dict, str]:
    """A test client of an app with ``rate``, and a fresh tenant (its header and id)."""
    from service.app import create_app

    key = uuid.uuid4().hex
    app = create_app(dataclasses.replace(settings, api_keys=(key,), rate_limit=rate))
    return app.test_client(), {"Authorization": f"Bearer {key}"}, tenant_of(key)


def away_from_window_end(window: int, margin: float) -> None:
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.05)


@pytest.mark.parametrize(("text", "rate"), [
    ("600/minute", (600, 60)), ("5/second", (5, 1)), ("100/hours", (100, 3600)),
    ("7/", (7, 60)), ("off", None), ("0", None), ("", None),
])
def test_parse_rate(text: str, rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["ten/minute", "5/day", "-1/second", "0/minute", "5/fortnight"])
def test_bad_rate_is_refused_at_start(settings, text: str) -> None:
    from service.app import create_app

    with pytest.raises(ValueError, match="rate limit"):
        create_app(dataclasses.replace(settings, rate_limit=text))


def test_over_the_limit_is_429_and_nothing_is_queued(settings, worker, tmp_path: Path,
                                                     ) -> None:
    client, auth, tenant = keyed_client(settings, "3/hour")
    r = redis.Redis.from_url(settings.redis_url)
    away_from_window_end(3600, 60)
    first = submit(client, "gradcam", [IMAGE], headers={**auth, "Idempotency-Key": "one"})
    assert first.status_code == 202, first.get_json()
    for _ in range(2):
        assert submit(client, "gradcam", [IMAGE], headers=auth).status_code == 202
    before = QueueCount.read(r, tenant)
    refused = submit(client, "gradcam", [IMAGE], headers=auth)
    body = assert_problem(refused, 429, "rate_limited")
    assert "3 new jobs or uploads per hour" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert QueueCount.read(r, tenant).jobs == before.jobs == 3  # nothing stored for it
    # an upload counts against the same limit, and is refused before anything is saved
    assert_problem(upload(client, keras_bytes(tiny_model(), tmp_path), headers=auth), 429,
                   "rate_limited")
    models = client.get("/v1/models", headers=auth).get_json()["models"]
    assert [m for m in models if m.get("source") == "upload"] == []
    # a replay of a job already created is answered, not counted
    replay = submit(client, "gradcam", [IMAGE], headers={**auth, "Idempotency-Key": "one"})
    assert replay.status_code == 202 and replay.get_json()["id"] == first.get_json()["id"]
    # but the key of a live job does not let uploads through (it did: 9 of 9 past 6/minute)
    same_key = {**auth, "Idempotency-Key": "one"}
    assert_problem(upload(client, keras_bytes(tiny_model(), tmp_path), headers=same_key), 429,
                   "rate_limited")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a.png", IMAGE)
    assert_problem(client.post("/v1/datasets", headers=same_key, content_type="multipart/form-data",
                               data={"file": (io.BytesIO(zipped.getvalue()), "d.zip")}),
                   429, "rate_limited")
    assert poll(client, first.get_json()["id"], headers=auth)["status"] == "succeeded"


def test_other_tenants_are_not_limited(settings, worker) -> None:
    from service.app import create_app

    keys = (uuid.uuid4().hex, uuid.uuid4().hex)
    client = create_app(dataclasses.replace(settings, api_keys=keys,
                                            rate_limit="1/hour")).test_client()
    away_from_window_end(3600, 30)
    one, two = ({"Authorization": f"Bearer {k}"} for k in keys)
    assert submit(client, "gradcam", [IMAGE], headers=one).status_code == 202
    assert_problem(submit(client, "gradcam", [IMAGE], headers=one), 429, "rate_limited")
    assert submit(client, "gradcam", [IMAGE], headers=two).status_code == 202


def test_retry_after_is_honest(settings, worker) -> None:
    client, auth, tenant = keyed_client(settings, "2/second")
    for _ in range(20):  # three requests inside one second window, whatever the clock says
        res = submit(client, "gradcam", [IMAGE], headers=auth)
        if res.status_code == 429:
            break
        assert res.status_code == 202
    else:
        pytest.fail("never limited")
    time.sleep(float(res.headers["Retry-After"]))
    assert submit(client, "gradcam", [IMAGE], headers=auth).status_code == 202
    keys = list(redis.Redis.from_url(settings.redis_url).scan_iter(f"{NS}:rate:{tenant}:*"))
    assert keys  # counted in Redis, where every API process sees it


def test_no_limit_when_off(settings, worker) -> None:
    client, auth, tenant = keyed_client(settings, "off")
    for _ in range(5):
        assert submit(client, "gradcam", [IMAGE], headers=auth).status_code == 202
    assert not list(redis.Redis.from_url(settings.redis_url).scan_iter(f"{NS}:rate:{tenant}:*"))
