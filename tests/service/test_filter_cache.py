"""The filter-pattern cache end to end: HTTP → real Celery worker → Redis.

An identical filters job is answered from the cache without gradient ascent, an overlapping
one computes only the filters it adds, other weights share nothing, the cache's keys carry the
model TTL and go with ``forget_model``. How many filters went through gradient ascent is read
from the worker's counter (``convscope:v1:stats:filter_patterns``, field ``computed``); this
module's jobs run one at a time, so its differences are theirs. Each test asks for its own
``seed``, so no test finds what another one cached.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.service.job_http import artifacts, decode_png, keras_bytes, run, upload
from worker import filter_cache as fc

OPTIONS = {"steps": 6, "size": 32, "seed": 4}
LAYER = "conv"


def _model(seed: int):
    """16×16 RGB: conv (16 filters, same) → GAP → Dense(3); weights drawn from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))


@pytest.fixture(scope="module")
def models(app, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Two uploads of one architecture with different weights: ``{seed: model id}``."""
    client, tmp = app.test_client(), tmp_path_factory.mktemp("fcache")
    ids = {}
    for seed in (1, 2):
        res = upload(client, keras_bytes(_model(seed), Path(tmp)),
                     name=f"fcache-{seed}-{uuid.uuid4().hex[:8]}")
        assert res.status_code == 201, res.get_json()
        ids[seed] = res.get_json()["id"]
    return ids


@pytest.fixture()
def r(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def _computed(r: redis.Redis) -> int:
    return int(r.hget(fc.STATS, "computed") or 0)


def _filters(client, r: redis.Redis, model: str, filters: list[int], **options: int):
    """Run one filters job; returns ``(job, artifacts, filters computed by ascent)``."""
    before = _computed(r)
    job = run(client, "filters", model=model, layer=LAYER,
              options={**OPTIONS, **options, "filters": filters})
    assert [f["index"] for f in job["result"]["filters"]] == filters
    return job, artifacts(client, job), _computed(r) - before


def _cached(job: dict) -> list[bool]:
    return [f["cached"] for f in job["result"]["filters"]]


def test_an_identical_job_is_answered_from_the_cache(client, r, models) -> None:
    model = models[1]
    first, first_files, computed = _filters(client, r, model, list(range(8)))
    assert computed == 8 and _cached(first) == [False] * 8
    again, again_files, computed = _filters(client, r, model, list(range(8)))
    assert computed == 0  # no gradient ascent at all
    assert _cached(again) == [True] * 8
    assert again_files == first_files  # every filter's PNG and the grid, byte for byte
    strip = [{k: v for k, v in f.items() if k != "cached"} for f in first["result"]["filters"]]
    assert [{k: v for k, v in f.items() if k != "cached"}
            for f in again["result"]["filters"]] == strip  # the same activations
    assert again["result"]["steps"] == OPTIONS["steps"]
    other_seed, _, computed = _filters(client, r, model, list(range(8)), seed=5)
    assert computed == 8 and _cached(other_seed) == [False] * 8


def test_an_overlapping_job_computes_only_the_new_filters(client, r, models) -> None:
    model = models[1]
    low, low_files, computed = _filters(client, r, model, list(range(8)), seed=11)
    assert computed == 8
    both, files, computed = _filters(client, r, model, list(range(16)), seed=11)
    assert computed == 8
    assert _cached(both) == [True] * 8 + [False] * 8
    for f in range(8):
        assert files[f"filter_{f}"] == low_files[f"filter_{f}"]
        assert both["result"]["filters"][f]["activation"] == \
            low["result"]["filters"][f]["activation"]
    # The grid shows all sixteen, cached and new, in the order asked.
    grid = decode_png(files["grid"])
    assert grid.shape[0] > 32 and grid.shape[1] > 4 * 32
    # A job asking in another order, for a mix, computes nothing and reports the same.
    mixed, mixed_files, computed = _filters(client, r, model, [12, 3, 9], seed=11)
    assert computed == 0 and _cached(mixed) == [True] * 3
    for f in (12, 3, 9):
        assert mixed_files[f"filter_{f}"] == files[f"filter_{f}"]


def test_cached_patterns_equal_the_engine_computing_the_whole_batch(client, r,
                                                                    models) -> None:
    """Filters 0–7 came from an earlier job (or the cache) and 8–15 were computed apart:
    together they are what the engine gives for 0–15 as one batch."""
    from models.filters import AscentOptions, FilterVisualizer

    _filters(client, r, models[1], list(range(8)), seed=12)
    job, files, computed = _filters(client, r, models[1], list(range(16)), seed=12)
    assert computed == 8
    options = AscentOptions(**{**OPTIONS, "seed": 12})
    engine = FilterVisualizer(_model(1), LAYER).run(list(range(16)), options)
    for f in range(16):  # another process: allow one level of float round-off
        got = decode_png(files[f"filter_{f}"]).astype(int)
        assert np.abs(got - engine.images[f].astype(int)).max() <= 1, f
    np.testing.assert_allclose([x["activation"] for x in job["result"]["filters"]],
                               engine.activation, rtol=1e-4, atol=1e-5)


def test_other_weights_share_nothing(client, r, models) -> None:
    _, first_files, computed = _filters(client, r, models[1], list(range(8)), seed=13)
    assert computed == 8
    other, other_files, computed = _filters(client, r, models[2], list(range(8)), seed=13)
    assert computed == 8 and _cached(other) == [False] * 8
    assert other_files["filter_0"] != first_files["filter_0"]


def test_cache_keys_carry_the_model_ttl_and_go_with_the_model(client, r, models,
                                                              settings) -> None:
    model = models[2]
    _filters(client, r, model, [0, 1], seed=14)
    keys = list(r.scan_iter(f"{fc.index_key(model)}*"))
    assert fc.index_key(model).encode() in keys and len(keys) >= 2
    for key in keys:
        assert 0 < r.ttl(key) <= settings.model_ttl, key
    assert fc.forget_model(r, model) == len(keys)
    assert list(r.scan_iter(f"{fc.index_key(model)}*")) == []
    again, _, computed = _filters(client, r, model, [0, 1], seed=14)
    assert computed == 2 and _cached(again) == [False, False]


def test_deleting_the_model_removes_its_cache(client, r, tmp_path) -> None:
    name = f"fcache-del-{uuid.uuid4().hex[:8]}"
    res = upload(client, keras_bytes(_model(3), tmp_path), name=name)
    model = res.get_json()["id"]
    _filters(client, r, model, [0], seed=15)
    assert list(r.scan_iter(f"{fc.index_key(model)}*"))
    assert client.delete(f"/v1/models/{model}").status_code == 204
    assert list(r.scan_iter(f"{fc.index_key(model)}*")) == []


def test_no_size_and_the_models_own_size_share_patterns(client, r, models) -> None:
    """``size`` left out means the model's input side (16 here): a job naming that side is
    answered from the first one's patterns."""
    model = models[2]
    first, first_files, computed = _filters(client, r, model, [5, 6], size=None, seed=21)
    assert computed == 2 and _cached(first) == [False, False]
    named, named_files, computed = _filters(client, r, model, [5, 6], size=16, seed=21)
    assert computed == 0 and _cached(named) == [True, True]
    assert named_files == first_files
