"""The Redis job store: job records, artifacts, per-tenant indexes, idempotency keys and
model metadata. Every key is versioned (``convscope:v1:...``) and expires after a TTL.

A job record is a Redis hash whose values are JSON. Status moves
``queued → running → succeeded | failed | canceled``; transitions are checked atomically
(a Lua script), so a cancel racing a finishing worker leaves one consistent answer.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, NamedTuple

import redis

from worker import idempotency, wake
from worker.contract import ACTIVE, KEY_PREFIX
from worker.create_job_script import CREATE_JOB, create_call
from worker.model_records import ModelRecords
from worker.redis_client import connect

NS = KEY_PREFIX
EVENTS = f"{NS}:events:"  # + job id: the job's change announcements (pub/sub)
RUNNING = f"{NS}:running"  # sorted set: the jobs claimed and not ended (score: claim time)
BATCH_KEYS = f"{NS}:batch_keys"  # the batch keys that have had jobs queued (for the sweeper)
KICK_SECONDS = 5  # a batch key's pending-message marker lapses after this long
# Counters (stats hashes) and the running set are refreshed on every write and expire when
# nothing has been written for this long: no key convscope writes lives forever.
STATS_TTL = 90 * 86400
# Lua, for a script whose KEYS[1] is the hash of a job that has just ended: delete its input
# images (model-sized arrays and originals). Nothing reads them once the job has ended, and
# they were 29 % of what a 224² Grad-CAM job kept in Redis for its TTL. The names are
# :meth:`JobStore.input_key` and :meth:`JobStore.original_key`.
DROP_INPUTS = """
local inputs = cjson.decode(redis.call('HGET', KEYS[1], 'inputs') or 'null')
if type(inputs) == 'table' then
  for i = 0, #inputs - 1 do
    redis.call('DEL', KEYS[1] .. ':input:' .. i, KEYS[1] .. ':original:' .. i)
  end
end
"""
# KEYS: job hash, stats hash, event channel, running set. ARGV: new status, n, n (field, JSON
# value) pairs set with it, then the statuses it may move from. Counts the move and publishes
# it; a job that ends leaves the running set, and its input images go (DROP_INPUTS).
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
  redis.call('EXPIRE', KEYS[2], STATS_TTL)
  redis.call('PUBLISH', KEYS[3], ARGV[1])
  if ARGV[1] ~= 'running' and ARGV[1] ~= 'queued' then
    redis.call('ZREM', KEYS[4], string.match(KEYS[1], '[^:]+$'))
    DROP_INPUTS
  end
  return 1
end end
return 0
""".replace("STATS_TTL", str(STATS_TTL)).replace("DROP_INPUTS", DROP_INPUTS)
# KEYS: job hash. ARGV: field, JSON value pairs. Nothing for a job that is gone.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
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


def finite_json(value: Any) -> str:
    """``value`` as JSON, with NaN and ±Infinity (a model whose weights hold NaN scores NaN) as
    null: Python's ``json`` writes them as bare ``NaN``, which no strict parser (a browser's
    ``JSON.parse``) reads."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class JobStore(ModelRecords):
    """Jobs, artifacts and model metadata in Redis (``client`` decodes nothing: bytes in/out)."""

    def __init__(self, client: redis.Redis, ttl: int = 24 * 3600, model_ttl: int = 30 * 86400):
        self.r = client
        self.ttl = ttl
        self.model_ttl = model_ttl
        self._transition = self.r.register_script(_TRANSITION)
        self._update = self.r.register_script(_UPDATE)
        self._create = self.r.register_script(CREATE_JOB)

    @classmethod
    def from_url(cls, url: str, ttl: int = 24 * 3600, model_ttl: int = 30 * 86400) -> JobStore:
        return cls(connect(url), ttl, model_ttl)

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
        return idempotency.earlier_job(self, NS, tenant, idempotency_key)

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, tenant: str, kind: str, model: str, layer: str | None, options: dict,
                   inputs: list[bytes], input_info: list[dict],
                   idempotency_key: str | None = None,
                   originals: list[bytes | None] | None = None,
                   batch: str | None = None, fingerprint: str = "",
                   job_id: str | None = None) -> NewJob:
        """Store a queued job and its input arrays (model-sized, and the originals where they
        differ, for overlays); returns a :class:`NewJob`.

        With an idempotency key already used by this tenant, returns the earlier job's id
        and ``created=False`` (nothing new is stored); with another request ``fingerprint``
        than the first use's, raises ``IdempotencyKeyReused``. A job with a ``batch`` key
        joins that key's queue, and ``send`` says whether it must be sent a task message:
        only when no message for the queue is pending (the key's marker, set here, is unset),
        so a stream of jobs that can be computed together costs one message per batch.
        ``job_id``: the new job's id, when the caller chose it (a fresh UUID4 hex). Every
        write is one script call (:mod:`worker.create_job_script`).
        """
        job_id = job_id or uuid.uuid4().hex
        if idempotency_key:
            earlier = idempotency.claim(self, NS, tenant, idempotency_key, job_id,
                                        fingerprint, self.ttl)
            if earlier is not None:
                return NewJob(earlier, False, False)
        now = time.time()
        record = {"id": job_id, "tenant": tenant, "kind": kind, "model": model, "layer": layer,
                  "options": options, "status": "queued", "progress": 0.0, "created": now,
                  "started": None, "finished": None, "error": None, "result": None,
                  "artifacts": {}, "inputs": input_info, "batch_key": batch}
        data = [(self.input_key(job_id, i), array) for i, array in enumerate(inputs)]
        data += [(self.original_key(job_id, i), original)
                 for i, original in enumerate(originals or []) if original is not None]
        # a job that can share a model call joins its queue, with a token for a worker
        # serving the queue (it claims the job at once); the queue's marker is set unless a
        # message is pending, and the script's answer says whether one must be sent
        queue = [self.batch_queue(batch), BATCH_KEYS, wake.wake_key(batch),
                 self.kick_key(batch)] if batch else []
        call = create_call(self.job_key(job_id), f"{NS}:tenant:{tenant}:jobs",
                           f"{NS}:stats:jobs", queue, data, self.ttl, now, job_id,
                           f"{kind}|queued", {k: json.dumps(v) for k, v in record.items()},
                           batch or "", (KICK_SECONDS, wake.TOKEN_SECONDS, STATS_TTL))
        send = self._create(keys=call.keys, args=call.args)
        return NewJob(job_id, True, send == 1)

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
        """Set fields of a job that still exists (an expired job is not written again)."""
        if fields:
            self._update(keys=[self.job_key(job_id)],
                         args=[x for k, v in fields.items() for x in (k, finite_json(v))])

    def transition(self, job_id: str, status: str, allowed_from: tuple[str, ...],
                   pipe: redis.client.Pipeline | None = None, **fields: Any) -> bool:
        """Set ``status`` (and ``fields``, with the start or finish time) only if the job's
        current status is one of ``allowed_from``; one atomic step that also counts the move
        and announces it. With ``pipe``, the step is queued there (returns True)."""
        stamp = "started" if status == "running" else "finished"
        fields = {stamp: time.time(), **fields}
        pairs = [x for k, v in fields.items() for x in (k, finite_json(v))]
        keys = [self.job_key(job_id), f"{NS}:stats:jobs", self.events_channel(job_id), RUNNING]
        args: list[str | int] = [status, len(fields), *pairs, *allowed_from]
        if pipe is not None:  # EVAL, not the script's EVALSHA: a pipeline holding scripts
            pipe.eval(_TRANSITION, len(keys), *keys, *args)  # first asks SCRIPT EXISTS
            return True
        return self._transition(keys=keys, args=args) == 1

    def finish(self, job_id: str, result: dict, artifacts: dict[str, tuple[bytes, str]],
               **fields: Any) -> bool:
        """Store a running job's artifacts and result (and ``fields``) and mark it succeeded,
        in one round trip; False (nothing kept but the artifact bytes, which expire) if it
        was canceled meanwhile."""
        return self.finish_many([(job_id, result, artifacts, fields)])[0]

    def finish_many(self, done: list[tuple[str, dict, dict[str, tuple[bytes, str]], dict]],
                    computed: str | None = None) -> list[bool]:
        """:meth:`finish` for several jobs ``(id, result, artifacts, fields)``, in one round
        trip; with ``computed`` (their kind), also counts them as one computation."""
        pipe = self.r.pipeline(transaction=False)
        if computed:
            self._count_batch(pipe, computed, len(done))
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
        pipe.expire(f"{NS}:stats:duration_sum", STATS_TTL)
        pipe.expire(f"{NS}:stats:duration_count", STATS_TTL)
        pipe.execute()

    @staticmethod
    def _count_batch(pipe: redis.client.Pipeline, kind: str, jobs: int) -> None:
        """Count one computation of ``kind`` that served ``jobs`` jobs."""
        pipe.hincrby(f"{NS}:stats:batch_runs", kind, 1)
        pipe.hincrby(f"{NS}:stats:batch_jobs", kind, jobs)
        pipe.expire(f"{NS}:stats:batch_runs", STATS_TTL)
        pipe.expire(f"{NS}:stats:batch_jobs", STATS_TTL)

    def set_progress(self, job_ids: str | list[str], progress: float) -> None:
        """Set one job's (or several jobs') progress, in one round trip; an expired job is
        not written again."""
        pipe = self.r.pipeline(transaction=False)
        value = json.dumps(round(min(max(progress, 0.0), 1.0), 4))
        for job_id in [job_ids] if isinstance(job_ids, str) else job_ids:
            pipe.eval(_PROGRESS, 2, self.job_key(job_id), self.events_channel(job_id), value)
        pipe.execute()

    def is_canceled(self, job_id: str) -> bool:
        raw = self.r.hget(self.job_key(job_id), "status")
        return raw is None or json.loads(raw) == "canceled"

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it had already ended."""
        return self.transition(job_id, "canceled", ACTIVE)

    def tenant_jobs(self, tenant: str, limit: int = 50) -> list[dict]:
        ids = self.r.zrevrange(f"{NS}:tenant:{tenant}:jobs", 0, limit - 1)
        return [j for j in self.get_jobs([_text(i) for i in ids]) if j is not None]

    # -- inputs and artifacts -------------------------------------------------------------
    def get_input(self, job_id: str, index: int) -> bytes | None:
        return self.r.get(self.input_key(job_id, index))  # type: ignore[return-value]

    def get_job_inputs(self, jobs: list[dict]) -> list[tuple[list[bytes | None],
                                                           list[bytes | None]]]:
        """Per job, its input arrays and its stored originals (None where the job stored
        none for that image, or it expired), for several jobs in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job in jobs:
            for i, info in enumerate(job.get("inputs") or []):
                pipe.get(self.input_key(job["id"], i))
                if info.get("original_stored"):
                    pipe.get(self.original_key(job["id"], i))
        values = iter(pipe.execute())
        out = []
        for job in jobs:
            arrays, originals = [], []
            for info in job.get("inputs") or []:
                arrays.append(next(values))
                originals.append(next(values) if info.get("original_stored") else None)
            out.append((arrays, originals))
        return out

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

    def get_artifacts(self, job_id: str, names: list[str]) -> list[bytes | None]:
        """Many artifacts in one round trip, in the order of ``names`` (None: not stored)."""
        if not names:
            return []
        return self.r.mget([self.artifact_key(job_id, n) for n in names])  # type: ignore[return-value]

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
