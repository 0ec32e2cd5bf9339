"""The filter-pattern cache: each filter's PNG and reached activation, kept in Redis.

A filter pattern is a pure function of the model (architecture and weights), its preprocess
mode, the layer, the channel, ``steps``, ``size``, ``seed``, the objective and its parameters
(``{"objective": "neuron", "y": 3, "x": 3}``: another objective never shares an entry) and
the ascent itself (learning rate and the engine's ``ASCENT_VERSION``, bumped when the ascent,
the parametrisation or the transforms change): the engine draws each filter's start from
``(seed, channel)`` alone, so a pattern does not depend on the other filters computed in the
same batch. (The diversity objective's images of one channel are made together: its
parameters name the channel and the fields are the images' numbers.)

Keys (``<digest>`` is :func:`weights_digest`, never the model's name, so a model re-uploaded
with other weights shares nothing with its earlier self)::

    convscope:v1:fcache:<model_id>:<sha256 of the settings>   hash: "<c>:png", "<c>:act",
                                                              "<c>:dead"
    convscope:v1:fcache:<model_id>                            set: the model's cache keys

Every key and the index expire after ``model_ttl`` (each write renews the key it writes and
the index, so the index outlives every key it names); :func:`forget_model` removes them with
the model. TensorFlow-free (the job store may call :func:`forget_model` in the API process).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import redis
from PIL import Image

from worker.redis_client import connect
from worker.settings import get_settings

NS = "convscope:v1"  # the job store's namespace (worker.store.NS; a test checks they agree)
STATS = f"{NS}:stats:filter_patterns"  # hash: "computed" (by ascent) and "cached" filters

# KEYS: the patterns' hash, the model's index, the model's record. ARGV: TTL, field, value...
# One script: the key never exists without its TTL, and nothing is written for a model
# deleted meanwhile (its record goes before its index is read and its keys deleted).
_STORE = """
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


def index_key(model_id: str) -> str:
    """The set of ``model_id``'s cache keys."""
    return f"{NS}:fcache:{model_id}"


def pattern_key(model_id: str, weights: str, layer: str, preprocess: str, steps: int,
                size: int | None, seed: int, learning_rate: float, version: int,
                objective: dict[str, Any]) -> str:
    """The hash holding every cached channel of one (model, layer, ascent settings,
    objective with its parameters)."""
    settings = [weights, layer, preprocess, steps, size, seed, learning_rate, version,
                sorted(objective.items())]
    digest = hashlib.sha256(json.dumps(settings).encode()).hexdigest()
    return f"{index_key(model_id)}:{digest}"


def _architecture(model: Any) -> list:
    """Each layer's class and configuration, in order, nested models opened, without the
    layers' names (auto-generated ones differ each time the same model is built)."""
    return [[type(layer).__name__, _architecture(layer)] if hasattr(layer, "layers") else
            [type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"}]
            for layer in model.layers]


def weights_digest(model: Any) -> str:
    """sha256 over the model's architecture (:func:`_architecture`) and every weight's shape,
    dtype and bytes, in order. ``model`` is a Keras model (duck-typed: TensorFlow-free)."""
    h = hashlib.sha256(json.dumps(_architecture(model), sort_keys=True, default=str).encode())
    for weight in model.weights:
        array = np.asarray(weight.numpy())
        h.update(json.dumps([list(array.shape), array.dtype.str]).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CachedFilter:
    """One filter's pattern: ``png`` bytes, the ``activation`` it reached, and whether the
    channel is ``dead`` (it stayed at 0)."""

    png: bytes
    activation: float
    dead: bool = False

    def pixels(self) -> np.ndarray:
        """The pattern as uint8 ``(H, W, C)`` (``C`` 1 or 3)."""
        with Image.open(io.BytesIO(self.png)) as img:
            pixels = np.asarray(img, dtype=np.uint8)
        return pixels[..., None] if pixels.ndim == 2 else pixels


class FilterCache:
    """Cached patterns in Redis (``client`` decodes nothing), each key living ``ttl`` s."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r, self.ttl = client, ttl
        self._store = client.register_script(_STORE)

    def lookup(self, key: str, filters: Iterable[int]) -> dict[int, CachedFilter]:
        """The cached ones among ``filters``, by channel (one round trip)."""
        wanted = list(dict.fromkeys(int(f) for f in filters))
        if not wanted:
            return {}
        parts = ("png", "act", "dead")
        raw = self.r.hmget(key, [f"{f}:{part}" for f in wanted for part in parts])
        found = {}
        for i, f in enumerate(wanted):
            png, act, dead = raw[3 * i:3 * i + 3]
            if isinstance(png, bytes) and act is not None and dead is not None:
                found[f] = CachedFilter(png, float(act), dead == b"1")
        return found

    def store(self, model_id: str, key: str, patterns: dict[int, CachedFilter]) -> bool:
        """Add ``patterns`` under ``key`` and ``key`` to the model's index, both with the TTL,
        while the model exists (a model deleted while its job ran leaves nothing behind);
        False if it did not. A pattern whose activation is not finite (a model with NaN or
        infinite weights) is not kept: it may depend on the filters computed beside it."""
        fields: list[bytes | str] = []
        for f, pattern in patterns.items():
            if math.isfinite(pattern.activation):
                fields += [f"{f}:png", pattern.png, f"{f}:act", repr(float(pattern.activation)),
                           f"{f}:dead", "1" if pattern.dead else "0"]
        if not fields:
            return False
        return bool(self._store(keys=[key, index_key(model_id), f"{NS}:model:{model_id}"],
                                args=[self.ttl, *fields]))

    def count(self, computed: int, cached: int) -> None:
        """Count filters made by gradient ascent and filters answered from the cache."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(STATS, "computed", computed)
        pipe.hincrby(STATS, "cached", cached)
        pipe.expire(STATS, self.ttl)
        pipe.execute()


def forget_model(client: redis.Redis, model_id: str) -> int:
    """Delete ``model_id``'s cached patterns and their index; returns the keys deleted."""
    index = index_key(model_id)
    keys: Sequence[bytes] = list(client.smembers(index))  # type: ignore[arg-type]
    return int(client.delete(index, *keys))


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """The worker process's Redis client (from the shared settings)."""
    return connect(get_settings().broker_url)


def worker_cache() -> FilterCache:
    """The cache a worker process uses: its Redis, keys living ``model_ttl``."""
    return FilterCache(redis_client(), get_settings().model_ttl)
