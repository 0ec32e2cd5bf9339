"""The Redis job store: job records, artifacts, per-tenant indexes, idempotency keys and
model metadata. Every key is versioned (``convscope:v1:...``) and expires after a TTL.

A job record is a Redis hash whose values are JSON. Status moves
``queued → running → succeeded | failed | canceled``; transitions are checked atomically
(a Lua script), so a cancel racing a finishing worker leaves one consistent answer.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, NamedTuple

import redis

from worker.contract import ACTIVE
from worker.filter_cache import forget_model as forget_patterns

NS = "convscope:v1"
EVENTS = f"{NS}:events:"  # + job id: the job's change announcements (pub/sub)
RUNNING = f"{NS}:running"  # sorted set: the jobs claimed and not ended (score: claim time)
BATCH_KEYS = f"{NS}:batch_keys"  # the batch keys that have had jobs queued (for the sweeper)
KICK_SECONDS = 5  # a batch key's pending-message marker lapses after this long
# KEYS: job hash, stats hash, event channel, running set. ARGV: new status, n, n (field, JSON
# value) pairs set with it, then the statuses it may move from. Counts the move and publishes
# it; a job that ends leaves the running set.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
current = cjson.decode(current)
local n = tonumber(ARGV[2])
for i = 3 + 2 * n, #ARGV do if ARGV[i] == current then
  redis.call('HSET', KEYS[1], 'status', cjson.encode(ARGV[1]))
  for j = 0, n - 1 do redis.call('HSET', KEYS[1], ARGV[3 + 2 * j], ARGV[4 + 2 * j]) end
  local kind = cjson.decode(redis.call('HGET', KEYS[1], 'kind') or 'null')
  redis.call('HINCRBY', KEYS[2], tostring(kind) .. '|' .. ARGV[1], 1)
  redis.call('PUBLISH', KEYS[3], ARGV[1])
  if ARGV[1] ~= 'running' and ARGV[1] ~= 'queued' then
    redis.call('ZREM', KEYS[4], string.match(KEYS[1], '[^:]+$'))
  end
  return 1
end end
return 0
"""


class NewJob(NamedTuple):
    """What :meth:`JobStore.create_job` did: the job's id, whether it is new (not an earlier
    job found by its idempotency key), and whether the caller must send it a task message
    (False when it joined a batch queue whose message is already on its way)."""

    id: str
    created: bool
    send: bool

# KEYS: job hash, event channel. ARGV: progress (JSON). Nothing for a job that is gone.
_PROGRESS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
redis.call('PUBLISH', KEYS[2], 'progress')
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class JobStore:
    """Jobs, artifacts and model metadata in Redis (``client`` decodes nothing: bytes in/out)."""

    def __init__(self, client: redis.Redis, ttl: int = 24 * 3600, model_ttl: int = 30 * 86400):
        self.r = client
        self.ttl = ttl
        self.model_ttl = model_ttl
        self._transition = self.r.register_script(_TRANSITION)
        self._progress = self.r.register_script(_PROGRESS)

    @classmethod
    def from_url(cls, url: str, ttl: int = 24 * 3600, model_ttl: int = 30 * 86400) -> JobStore:
        return cls(redis.Redis.from_url(url), ttl, model_ttl)

    # -- keys ---------------------------------------------------------------------------
    @staticmethod
    def job_key(job_id: str) -> str:
        return f"{NS}:job:{job_id}"

    @staticmethod
    def artifact_key(job_id: str, name: str) -> str:
        return f"{NS}:job:{job_id}:artifact:{name}"

    @staticmethod
    def input_key(job_id: str, index: int) -> str:
        return f"{NS}:job:{job_id}:input:{index}"

    @staticmethod
    def original_key(job_id: str, index: int) -> str:
        return f"{NS}:job:{job_id}:original:{index}"

    # -- rate limits ----------------------------------------------------------------------
    def count_request(self, tenant: str, bucket: str, window: int) -> tuple[int, int]:
        """Count one request in the tenant's current fixed window of ``window`` seconds.

        Returns ``(requests so far in this window, seconds until the window ends)``.
        """
        seconds, micros = self.r.time()  # Redis's clock: the same for every API host
        now = seconds + micros / 1e6
        start = int(now // window) * window
        key = f"{NS}:rate:{tenant}:{bucket}:{start}"
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = pipe.execute()
        return int(count), max(1, int(start + window - now + 0.999))

    def idempotent_job(self, tenant: str, idempotency_key: str | None) -> str | None:
        """The id of the live job this tenant created with this key, if any."""
        if not idempotency_key:
            return None
        earlier = self.r.get(f"{NS}:idem:{tenant}:{idempotency_key}")
        if earlier and self.r.exists(self.job_key(_text(earlier))):
            return _text(earlier)
        return None

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, tenant: str, kind: str, model: str, layer: str | None, options: dict,
                   inputs: list[bytes], input_info: list[dict],
                   idempotency_key: str | None = None,
                   originals: list[bytes | None] | None = None,
                   batch: str | None = None) -> NewJob:
        """Store a queued job and its input arrays (model-sized, and the originals where they
        differ, for overlays); returns ``(id, created)``.

        With an idempotency key already used by this tenant, returns the earlier job's id
        and ``created=False`` (nothing new is stored). A job with a ``batch`` key joins that
        key's queue, and ``send`` says whether it must be sent a task message: only when no
        message for the queue is pending (the key's marker, set here, is unset), so a stream
        of jobs that can be computed together costs one message per batch, not one per job.
        """
        job_id = uuid.uuid4().hex
        if idempotency_key:
            idem = f"{NS}:idem:{tenant}:{idempotency_key}"
            if not self.r.set(idem, job_id, nx=True, ex=self.ttl):
                earlier = self.idempotent_job(tenant, idempotency_key)
                if earlier is not None:
                    return NewJob(earlier, False, False)
                self.r.set(idem, job_id, ex=self.ttl)
        now = time.time()
        record = {"id": job_id, "tenant": tenant, "kind": kind, "model": model, "layer": layer,
                  "options": options, "status": "queued", "progress": 0.0, "created": now,
                  "started": None, "finished": None, "error": None, "result": None,
                  "artifacts": {}, "inputs": input_info, "batch_key": batch}
        pipe = self.r.pipeline()
        for i, data in enumerate(inputs):
            pipe.set(self.input_key(job_id, i), data, ex=self.ttl)
        for i, original in enumerate(originals or []):
            if original is not None:
                pipe.set(self.original_key(job_id, i), original, ex=self.ttl)
        pipe.hset(self.job_key(job_id), mapping={k: json.dumps(v) for k, v in record.items()})
        pipe.expire(self.job_key(job_id), self.ttl)
        index = f"{NS}:tenant:{tenant}:jobs"
        pipe.zadd(index, {job_id: now})
        pipe.zremrangebyscore(index, "-inf", now - self.ttl)
        pipe.expire(index, self.ttl)
        pipe.hincrby(f"{NS}:stats:jobs", f"{kind}|queued", 1)
        if batch:  # jobs that can share a model call wait in one list
            pipe.rpush(self.batch_queue(batch), job_id)
            pipe.expire(self.batch_queue(batch), self.ttl)
            pipe.sadd(BATCH_KEYS, batch)
            pipe.expire(BATCH_KEYS, self.ttl)
            pipe.set(self.kick_key(batch), b"1", nx=True, ex=KICK_SECONDS)
        done = pipe.execute()
        return NewJob(job_id, True, not batch or bool(done[-1]))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.get_jobs([job_id])[0]

    def get_jobs(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        """Several jobs (None where one is gone), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.job_key(job_id))
        return [{_text(k): json.loads(v) for k, v in raw.items()} if raw else None
                for raw in pipe.execute()]

    @staticmethod
    def batch_queue(key: str) -> str:
        return f"{NS}:batchq:{key}"

    @staticmethod
    def kick_key(batch: str) -> str:
        """Set while a task message for the batch queue ``batch`` is pending."""
        return f"{NS}:kick:{batch}"

    @staticmethod
    def lease_key(job_id: str) -> str:
        return f"{NS}:lease:{job_id}"

    @staticmethod
    def events_channel(job_id: str) -> str:
        """Where every change of the job's status or progress is announced (the message is
        a hint: the job hash stays the one source of truth)."""
        return f"{EVENTS}{job_id}"

    def update(self, job_id: str, **fields: Any) -> None:
        if fields:
            self.r.hset(self.job_key(job_id), mapping={k: json.dumps(v) for k, v in fields.items()})

    def transition(self, job_id: str, status: str, allowed_from: tuple[str, ...],
                   pipe: redis.client.Pipeline | None = None, **fields: Any) -> bool:
        """Set ``status`` (and ``fields``, with the start or finish time) only if the job's
        current status is one of ``allowed_from``; one atomic step that also counts the move
        and announces it. With ``pipe``, the step is queued there (returns True)."""
        stamp = "started" if status == "running" else "finished"
        fields = {stamp: time.time(), **fields}
        pairs = [x for k, v in fields.items() for x in (k, json.dumps(v))]
        keys = [self.job_key(job_id), f"{NS}:stats:jobs", self.events_channel(job_id), RUNNING]
        args: list[str | int] = [status, len(fields), *pairs, *allowed_from]
        if pipe is not None:
            self._transition(keys=keys, args=args, client=pipe)
            return True
        return self._transition(keys=keys, args=args) == 1

    def finish(self, job_id: str, result: dict, artifacts: dict[str, tuple[bytes, str]],
               **fields: Any) -> bool:
        """Store a running job's artifacts and result (and ``fields``) and mark it succeeded,
        in one round trip; False (nothing kept but the artifact bytes, which expire) if it
        was canceled meanwhile."""
        return self.finish_many([(job_id, result, artifacts, fields)])[0]

    def finish_many(self, done: list[tuple[str, dict, dict[str, tuple[bytes, str]], dict]]
                    ) -> list[bool]:
        """:meth:`finish` for several jobs ``(id, result, artifacts, fields)``, in one round
        trip."""
        pipe = self.r.pipeline(transaction=False)
        marks = []
        for job_id, result, artifacts, fields in done:
            for name, (data, _) in artifacts.items():
                pipe.set(self.artifact_key(job_id, name), data, ex=self.ttl)
            self.transition(job_id, "succeeded", ("running",), pipe=pipe, result=result,
                            progress=1.0, artifacts={n: c for n, (_, c) in artifacts.items()},
                            **fields)
            marks.append(len(pipe) - 1)
        out = pipe.execute()
        return [out[i] == 1 for i in marks]

    def record_duration(self, kind: str, seconds: float, jobs: int = 1) -> None:
        """Count ``jobs`` jobs of ``kind`` that took ``seconds`` in all."""
        pipe = self.r.pipeline()
        pipe.hincrbyfloat(f"{NS}:stats:duration_sum", kind, seconds)
        pipe.hincrby(f"{NS}:stats:duration_count", kind, jobs)
        pipe.execute()

    def count_batch(self, kind: str, jobs: int) -> None:
        """Count one computation of ``kind`` that served ``jobs`` jobs."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(f"{NS}:stats:batch_runs", kind, 1)
        pipe.hincrby(f"{NS}:stats:batch_jobs", kind, jobs)
        pipe.execute()

    def set_progress(self, job_ids: str | list[str], progress: float) -> None:
        """Set one job's (or several jobs') progress, in one round trip; an expired job is
        not written again."""
        pipe = self.r.pipeline(transaction=False)
        value = json.dumps(round(min(max(progress, 0.0), 1.0), 4))
        for job_id in [job_ids] if isinstance(job_ids, str) else job_ids:
            self._progress(keys=[self.job_key(job_id), self.events_channel(job_id)],
                           args=[value], client=pipe)
        pipe.execute()

    def is_canceled(self, job_id: str) -> bool:
        raw = self.r.hget(self.job_key(job_id), "status")
        return raw is None or json.loads(raw) == "canceled"

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it had already ended."""
        return self.transition(job_id, "canceled", ACTIVE)

    def tenant_jobs(self, tenant: str, limit: int = 50) -> list[dict]:
        ids = self.r.zrevrange(f"{NS}:tenant:{tenant}:jobs", 0, limit - 1)
        jobs = [self.get_job(_text(i)) for i in ids]
        return [j for j in jobs if j is not None]

    # -- inputs and artifacts -------------------------------------------------------------
    def get_input(self, job_id: str, index: int) -> bytes | None:
        return self.r.get(self.input_key(job_id, index))  # type: ignore[return-value]

    def get_inputs(self, job_id: str, count: int) -> list[bytes | None]:
        """Input arrays ``0 .. count-1`` of a job, in one round trip."""
        if not count:
            return []
        return self.r.mget([self.input_key(job_id, i) for i in range(count)])  # type: ignore[return-value]

    def get_original(self, job_id: str, index: int) -> bytes | None:
        return self.r.get(self.original_key(job_id, index))  # type: ignore[return-value]

    def put_artifacts(self, job_id: str, items: dict[str, tuple[bytes, str]]) -> None:
        """Store many artifacts in one round trip: ``{name: (bytes, content_type)}``."""
        pipe = self.r.pipeline()
        for name, (data, _) in items.items():
            pipe.set(self.artifact_key(job_id, name), data, ex=self.ttl)
        pipe.execute()
        job = self.get_job(job_id) or {}
        artifacts = dict(job.get("artifacts") or {})
        artifacts.update({name: ctype for name, (_, ctype) in items.items()})
        self.update(job_id, artifacts=artifacts)

    def get_artifact(self, job_id: str, name: str) -> bytes | None:
        return self.r.get(self.artifact_key(job_id, name))  # type: ignore[return-value]

    # -- models ---------------------------------------------------------------------------
    def put_model(self, model_id: str, record: dict, ttl: int | None = None) -> None:
        """Store a model's record (``ttl`` default: ``model_ttl``); an upload is indexed
        under its tenant (its name, when given, by :meth:`reserve_model_name`)."""
        ttl = ttl or self.model_ttl
        pipe = self.r.pipeline()
        pipe.set(f"{NS}:model:{model_id}", json.dumps(record), ex=ttl)
        tenant = record.get("tenant")
        if tenant is not None:
            pipe.sadd(f"{NS}:tenant:{tenant}:models", model_id)
            pipe.expire(f"{NS}:tenant:{tenant}:models", self.model_ttl)
        pipe.execute()

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

    def claim(self, name: str, seconds: int) -> bool:
        """A short-lived lock (e.g. "someone is describing model X")."""
        return bool(self.r.set(f"{NS}:lock:{name}", b"1", nx=True, ex=seconds))

    # -- workers and stats ----------------------------------------------------------------
    def heartbeat(self, worker: str, ttl: int = 15) -> None:
        self.r.set(f"{NS}:worker:{worker}", str(time.time()), ex=ttl)

    def live_workers(self) -> list[str]:
        prefix = f"{NS}:worker:"
        return [_text(k)[len(prefix):] for k in self.r.scan_iter(prefix + "*")]

    def stats(self) -> dict[str, dict[str, float]]:
        def read(key: str) -> dict[str, float]:
            return {_text(k): float(v) for k, v in self.r.hgetall(f"{NS}:stats:{key}").items()}
        return {"jobs": read("jobs"), "duration_sum": read("duration_sum"),
                "duration_count": read("duration_count")}
