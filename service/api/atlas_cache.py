"""Where a layer atlas's parts are computed: per (tenant, model, layer, dataset), the
``top_examples`` job over the dataset and, per channel, the ``filters`` job holding its
pattern. The pictures stay the jobs' artifacts; this only names the jobs.

Keys (TensorFlow-free, Redis only)::

    convscope:v1:atlas:<tenant>:<sha256 of [model, layer, dataset]>   hash: "top", "f:<c>"
    convscope:v1:atlas-of:dataset:<id>, convscope:v1:atlas-of:model:<id>   sets of those keys

The model is named by its id: an upload re-sent with other weights gets a new id (and the
worker's filter-pattern cache keys its pictures by the weights' digest). An entry lives as
long as the jobs it names (the result TTL) and never past its dataset; deleting the dataset
or the model deletes its entries (:func:`forget`).
"""

from __future__ import annotations

import hashlib
import json

import redis

NS = "convscope:v1"
TOP = "top"


def atlas_key(tenant: str, model_id: str, layer: str, dataset_id: str) -> str:
    digest = hashlib.sha256(json.dumps([model_id, layer, dataset_id]).encode()).hexdigest()
    return f"{NS}:atlas:{tenant}:{digest[:32]}"


def index_key(what: str, ident: str) -> str:
    """The set of atlas keys of one dataset (``what="dataset"``) or model (``"model"``)."""
    return f"{NS}:atlas-of:{what}:{ident}"


def pattern_field(channel: int) -> str:
    return f"f:{channel}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AtlasCache:
    """The atlas entries of one (tenant, model, layer, dataset): field → job id."""

    def __init__(self, client: redis.Redis, key: str, model_id: str, dataset_id: str) -> None:
        self.r, self.key = client, key
        self.indexes = (index_key("model", model_id), index_key("dataset", dataset_id))

    def jobs(self, fields: list[str]) -> dict[str, str]:
        """The job ids stored under ``fields`` (those present)."""
        raw = self.r.hmget(self.key, fields) if fields else []
        return {f: _text(v) for f, v in zip(fields, raw, strict=True) if v is not None}

    def put(self, entries: dict[str, str], ttl: int) -> None:
        """Name the jobs of ``entries`` (field → job id); the entry and its indexes live
        ``ttl`` seconds from now (each write renews them)."""
        if not entries:
            return
        ttl = max(1, int(ttl))
        pipe = self.r.pipeline()
        pipe.hset(self.key, mapping=entries)  # type: ignore[arg-type]
        pipe.expire(self.key, ttl)
        for index in self.indexes:
            pipe.sadd(index, self.key)
            pipe.expire(index, ttl)
        pipe.execute()


def forget(client: redis.Redis, what: str, ident: str) -> int:
    """Delete every atlas entry of a dataset or model (``what``: ``"dataset"``, ``"model"``);
    returns how many keys went."""
    index = index_key(what, ident)
    keys = [_text(k) for k in client.smembers(index)]
    return int(client.delete(index, *keys))
