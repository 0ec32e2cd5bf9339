"""Dataset records in Redis: a dataset's metadata (status, counts, labels, what was skipped)
and its tenant's index, each with a TTL. The images are on disk (:mod:`worker.datasets`)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

NS = "convscope:v1"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record_key(dataset_id: str) -> str:
    return f"{NS}:dataset:{dataset_id}"


def tenant_index(tenant: str) -> str:
    """The set of a tenant's dataset ids."""
    return f"{NS}:tenant:{tenant}:datasets"


class DatasetRecords:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r, self.ttl = client, ttl

    def put(self, record: dict, ttl: int | None = None, replace_only: bool = False) -> bool:
        """Store ``record`` for ``ttl`` seconds (default: the dataset TTL; its ``expires`` is
        set to match) and index it under its tenant. With ``replace_only``, only over a record
        that still exists (a dataset deleted while a worker read it stays deleted)."""
        ttl = ttl or self.ttl
        record = {**record, "expires": int(time.time()) + ttl}
        if not self.r.set(record_key(record["id"]), json.dumps(record), ex=ttl,
                          xx=replace_only):
            return False
        pipe = self.r.pipeline()
        pipe.sadd(tenant_index(record["tenant"]), record["id"])
        pipe.expire(tenant_index(record["tenant"]), self.ttl)
        pipe.execute()
        return True

    def get(self, dataset_id: str) -> dict | None:
        raw = self.r.get(record_key(dataset_id))
        return json.loads(raw) if raw else None

    def delete(self, dataset_id: str, tenant: str) -> None:
        self.r.delete(record_key(dataset_id))
        self.forget(tenant, dataset_id)

    def forget(self, tenant: str, dataset_id: str) -> None:
        """Drop a deleted or expired dataset from its tenant's index."""
        self.r.srem(tenant_index(tenant), dataset_id)

    def tenant_datasets(self, tenant: str) -> list[str]:
        return sorted(_text(d) for d in self.r.smembers(tenant_index(tenant)))
