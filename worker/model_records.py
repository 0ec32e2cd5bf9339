"""Model records in Redis: a model's description (status, input shape, classes, layer
table), its tenant's index and names. Part of :class:`worker.store.JobStore`."""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.filter_cache import forget_model as forget_patterns

NS = "convscope:v1"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ModelRecords:
    r: redis.Redis
    model_ttl: int

    def put_model(self, model_id: str, record: dict, ttl: int | None = None,
                  replace_only: bool = False) -> bool:
        """Store a model's record (``ttl`` default: ``model_ttl``); an upload is indexed
        under its tenant (its name, when given, by :meth:`reserve_model_name`). With
        ``replace_only``, only over a record that still exists (a model deleted while a
        worker validated it stays deleted); returns whether it was written."""
        ttl = ttl or self.model_ttl
        if not self.r.set(f"{NS}:model:{model_id}", json.dumps(record), ex=ttl,
                          xx=replace_only):
            return False
        tenant = record.get("tenant")
        if tenant is not None:
            pipe = self.r.pipeline()
            pipe.sadd(f"{NS}:tenant:{tenant}:models", model_id)
            pipe.expire(f"{NS}:tenant:{tenant}:models", self.model_ttl)
            pipe.execute()
        return True

    def reserve_model_name(self, tenant: str, name: str, model_id: str) -> str | None:
        """Give ``name`` to ``model_id`` among the tenant's uploads. Returns None when done,
        or the id of the live model that already has the name (a refused or expired holder
        loses it)."""
        key = f"{NS}:tenant:{tenant}:model_names"
        if not self.r.hsetnx(key, name, model_id):
            holder = _text(self.r.hget(key, name) or b"")
            record = self.get_model(holder) if holder else None
            if record is not None and record.get("status") != "refused":
                return holder
            self.r.hset(key, name, model_id)
        self.r.expire(key, self.model_ttl)
        return None

    def get_model(self, model_id: str) -> dict | None:
        raw = self.r.get(f"{NS}:model:{model_id}")
        return json.loads(raw) if raw else None

    def forget_model(self, model_id: str) -> None:
        """Drop a built-in model's stored description (it is described again on next use)."""
        self.r.delete(f"{NS}:model:{model_id}", f"{NS}:lock:describe:{model_id}")

    def model_by_name(self, tenant: str, name: str) -> str | None:
        """The id of this tenant's upload called ``name``, if any."""
        raw = self.r.hget(f"{NS}:tenant:{tenant}:model_names", name)
        return _text(raw) if raw else None

    def delete_model(self, model_id: str, tenant: str) -> None:
        """Remove an upload's record, indexes and cached filter patterns."""
        record = self.get_model(model_id) or {}
        self.r.delete(f"{NS}:model:{model_id}")
        forget_patterns(self.r, model_id)
        self.forget_tenant_model(tenant, model_id, record.get("name"))

    def forget_tenant_model(self, tenant: str, model_id: str, name: str | None = None) -> None:
        """Drop a deleted or expired upload from the tenant's indexes."""
        self.r.srem(f"{NS}:tenant:{tenant}:models", model_id)
        names = f"{NS}:tenant:{tenant}:model_names"
        for key, value in self.r.hgetall(names).items():
            if _text(value) == model_id and (name is None or _text(key) == name):
                self.r.hdel(names, key)

    def tenant_models(self, tenant: str) -> list[str]:
        return sorted(_text(m) for m in self.r.smembers(f"{NS}:tenant:{tenant}:models"))
