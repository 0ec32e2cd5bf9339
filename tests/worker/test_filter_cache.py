"""``worker.filter_cache`` against a real Redis: what the key is made of, the weights digest,
a store/lookup round trip, a TTL on every key, and removal with the model.

The tests use a database of the session's Redis that is empty when they start (every key in
it is theirs) and delete what they made at the end.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import keras
import numpy as np
import pytest
import redis

from models import render
from tests.pipeline import empty_database
from tests.worker.test_light_modules import probe
from worker import filter_cache as fc
from worker.store import NS as STORE_NS

TTL = 600  # not the default model TTL, so a key that took another TTL shows
BASE = dict(weights="w" * 64, layer="conv", preprocess="raw", steps=8, size=32, seed=0,
            learning_rate=0.05, version=2, objective={"objective": "channel"})


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    with empty_database(redis_url, "the filter cache tests") as url:
        yield redis.Redis.from_url(url)


@pytest.fixture()
def cache(client: redis.Redis) -> fc.FilterCache:
    return fc.FilterCache(client, TTL)


def _pattern(value: int, activation: float, channels: int = 3) -> fc.CachedFilter:
    pixels = np.full((4, 5, channels), value, np.uint8)
    pixels[0, 0] = 255 - value
    return fc.CachedFilter(render.to_png(pixels), activation)


def _model(client: redis.Redis) -> str:
    """A new model's id, its record stored (the cache keeps patterns only of a live model)."""
    model_id = uuid.uuid4().hex
    client.set(f"{STORE_NS}:model:{model_id}", b"{}", ex=TTL)
    return model_id


def _key(model_id: str = "m1", **change: object) -> str:
    return fc.pattern_key(model_id, **{**BASE, **change})  # type: ignore[arg-type]


def test_the_namespace_is_the_job_stores() -> None:
    assert fc.NS == STORE_NS


def test_the_module_imports_nothing_heavy() -> None:
    """The job store (API process) may call :func:`forget_model`: no TensorFlow, no engine."""
    assert probe("worker.filter_cache")["loaded"] == []


def test_the_key_names_the_model_and_hashes_the_settings() -> None:
    key = _key("abc")
    assert re.fullmatch(rf"{STORE_NS}:fcache:abc:[0-9a-f]{{64}}", key), key
    assert key.startswith(fc.index_key("abc") + ":")
    assert _key("abc") == key  # a pure function of its arguments: no job, no clock


@pytest.mark.parametrize("change", [
    dict(weights="v" * 64), dict(layer="conv2"), dict(preprocess="unit"), dict(steps=9),
    dict(size=64), dict(size=None), dict(seed=1), dict(learning_rate=0.1), dict(version=3),
    dict(objective={"objective": "negative"}), dict(objective={"objective": "class"}),
    dict(objective={"objective": "neuron", "y": 3, "x": 4}),
    dict(objective={"objective": "diversity", "n": 4, "diversity_weight": 10.0,
                    "channels": [0]}),
])  # fmt: skip
def test_every_setting_changes_the_key(change: dict) -> None:
    assert _key(**change) != _key()
    assert _key(**change).rsplit(":", 1)[0] == _key().rsplit(":", 1)[0]  # same model prefix


@pytest.mark.parametrize("change", [
    dict(y=4), dict(x=3), dict(objective="diversity"),
])  # fmt: skip
def test_every_objective_parameter_changes_the_key(change: dict) -> None:
    neuron = {"objective": "neuron", "y": 3, "x": 4}
    assert _key(objective={**neuron, **change}) != _key(objective=neuron)
    assert _key(objective=dict(reversed(neuron.items()))) == _key(objective=neuron)


def _conv_model(seed: int, activation: str = "relu") -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation=activation, name="conv")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_the_weights_digest_follows_weights_and_architecture() -> None:
    model = _conv_model(1)
    digest = fc.weights_digest(model)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert fc.weights_digest(_conv_model(1)) == digest  # rebuilt the same: same digest
    assert fc.weights_digest(_conv_model(2)) != digest  # other weights
    linear = _conv_model(1, activation="linear")  # same weights, another function
    np.testing.assert_array_equal(linear.weights[0].numpy(), model.weights[0].numpy())
    assert fc.weights_digest(linear) != digest
    kernel = model.get_layer("conv").kernel
    kernel.assign(kernel.numpy() + np.float32(1e-6))  # one ulp-sized nudge, same shape
    assert fc.weights_digest(model) != digest


def test_store_and_lookup_round_trip(cache: fc.FilterCache, client: redis.Redis) -> None:
    model_id = _model(client)
    key = _key(model_id)
    activation = float(np.float32(0.1))  # not exact in decimal: must survive as a float
    stored = {3: _pattern(10, activation), 7: _pattern(20, -2.5, channels=1),
              9: fc.CachedFilter(_pattern(0, 0.0).png, 0.0, dead=True)}
    assert cache.lookup(key, [3, 7]) == {}
    cache.store(model_id, key, stored)
    found = cache.lookup(key, [7, 4, 3, 3, 9])
    assert found == stored  # 4 was never stored; 3 asked twice is found once
    assert found[9].dead and not found[3].dead
    assert found[3].activation == activation
    grey = found[7].pixels()
    assert grey.shape == (4, 5, 1) and grey[0, 0, 0] == 235 and grey[1, 1, 0] == 20
    assert found[3].pixels().shape == (4, 5, 3)
    assert cache.lookup(_key(model_id, seed=1), [3]) == {}


def test_every_key_has_the_ttl(cache: fc.FilterCache, client: redis.Redis) -> None:
    model_id = _model(client)
    keys = [_key(model_id, seed=s) for s in (0, 1)]
    for key in keys:
        cache.store(model_id, key, {0: _pattern(1, 1.0)})
    made = list(client.scan_iter(f"{fc.index_key(model_id)}*"))
    assert sorted(made) == sorted(k.encode() for k in [*keys, fc.index_key(model_id)])
    for key in made:
        assert 0 < client.ttl(key) <= TTL, key
    client.expire(keys[0], 5)
    cache.store(model_id, keys[0], {1: _pattern(2, 2.0)})  # a write renews the key it writes
    assert client.ttl(keys[0]) > 5


def test_forget_model_removes_its_keys_and_index_only(cache: fc.FilterCache,
                                                      client: redis.Redis) -> None:
    gone, kept = _model(client), _model(client)
    for model_id in (gone, kept):
        for seed in (0, 1):
            cache.store(model_id, _key(model_id, seed=seed), {0: _pattern(seed, 1.0)})
    assert fc.forget_model(client, gone) == 3  # two pattern keys and the index
    assert list(client.scan_iter(f"{fc.index_key(gone)}*")) == []
    assert len(list(client.scan_iter(f"{fc.index_key(kept)}*"))) == 3
    assert cache.lookup(_key(kept), [0])
    assert fc.forget_model(client, gone) == 0
    assert fc.forget_model(client, kept) == 3


def test_nothing_is_kept_for_a_deleted_model_or_a_pattern_not_finite(
        cache: fc.FilterCache, client: redis.Redis) -> None:
    """A filters job that ends after its model was deleted (its record gone, its keys
    forgotten) leaves no keys behind; a NaN or infinite activation is not kept."""
    model_id = _model(client)
    key = _key(model_id)
    assert cache.store(model_id, key, {0: _pattern(1, 1.0), 1: _pattern(2, float("nan")),
                                       2: _pattern(3, float("-inf"))})
    assert set(cache.lookup(key, [0, 1, 2])) == {0}
    client.delete(f"{STORE_NS}:model:{model_id}")  # what delete_model does first
    assert fc.forget_model(client, model_id) == 2
    assert not cache.store(model_id, key, {0: _pattern(1, 1.0)})
    assert list(client.scan_iter(f"{fc.index_key(model_id)}*")) == []
    assert not cache.store(_model(client), key, {1: _pattern(2, float("nan"))})


def test_count_adds_to_the_stats_hash(cache: fc.FilterCache, client: redis.Redis) -> None:
    before = {k: int(v) for k, v in client.hgetall(fc.STATS).items()}
    cache.count(computed=5, cached=2)
    cache.count(computed=0, cached=3)
    after = {k: int(v) for k, v in client.hgetall(fc.STATS).items()}
    assert after[b"computed"] - before.get(b"computed", 0) == 5
    assert after[b"cached"] - before.get(b"cached", 0) == 5
