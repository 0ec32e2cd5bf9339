"""Who computes a job: claims and leases, so jobs can be computed together and still be safe
to re-run.

A worker *claims* a queued job before computing it: the status becomes ``running``, the job
enters the running set, and a *lease* (``lease:<id>``, a short TTL the owner keeps renewing
while it computes) names the owner. Only queued jobs are claimed, so a job is never computed
twice while its owner lives. When the owner dies (its process killed, its host gone, Redis
lost its connection), the lease lapses and :mod:`worker.sweeper` queues the job again,
counting the attempt. A canceled job is never claimed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from worker.store import EVENTS, NS, RUNNING, STATS_TTL, JobStore

LEASE_SECONDS = 10  # a dead owner's jobs are taken over this long after it stopped renewing
RENEW_SECONDS = 3.0
RENEW_TIMEOUT = 2.0  # seconds a renewal may wait on Redis (well inside a lease)

# KEYS: job hash, stats hash, event channel, lease, batch queue (or the job hash), running
# set. ARGV: owner, lease seconds, start time (JSON), job id, now.
_CLAIM_ONE = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return -1 end
local status = cjson.decode(raw)
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', '"running"', 'started', ARGV[3])
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2])
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[4])
  local kind = cjson.decode(redis.call('HGET', KEYS[1], 'kind') or 'null')
  redis.call('HINCRBY', KEYS[2], tostring(kind) .. '|running', 1)
  redis.call('EXPIRE', KEYS[2], STATS_TTL)
  redis.call('EXPIRE', KEYS[6], STATS_TTL)
  redis.call('PUBLISH', KEYS[3], 'running')
  if KEYS[5] ~= KEYS[1] then redis.call('LREM', KEYS[5], 0, ARGV[4]) end
  return 1
end
if status == 'running' then return 2 end
return 0
"""

# KEYS: the batch queue, the stats hash, the running set. ARGV: owner, lease seconds, start
# time (JSON), most jobs, key prefix, event channel prefix, most images, most pixels, now,
# "1" when the batch has no job yet. A job that would pass a cap goes back to the head of the
# queue for the next batch, but the first job of a batch is taken whatever its size (it
# would not fit any other batch either).
_CLAIM_QUEUED = """
local got = {}
local images = 0
local pixels = 0
while #got < tonumber(ARGV[4]) do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local key = ARGV[5] .. 'job:' .. id
  local raw = redis.call('HGET', key, 'status')
  local inputs = cjson.decode(redis.call('HGET', key, 'inputs') or '[]')
  local n, p = #inputs, 0
  for _, info in ipairs(inputs) do
    local size = info['resized_size'] or {0, 0}
    p = p + size[1] * size[2]
  end
  local over = images + n > tonumber(ARGV[7]) or pixels + p > tonumber(ARGV[8])
  if ARGV[10] == '1' and #got == 0 then over = false end  -- a batch takes at least one job
  if raw and cjson.decode(raw) == 'queued' and over then
    redis.call('LPUSH', KEYS[1], id)
    redis.call('EXPIRE', KEYS[1], STATS_TTL)
    break
  end
  if raw and cjson.decode(raw) == 'queued' then
    images = images + n
    pixels = pixels + p
    redis.call('HSET', key, 'status', '"running"', 'started', ARGV[3])
    redis.call('SET', ARGV[5] .. 'lease:' .. id, ARGV[1], 'EX', ARGV[2])
    redis.call('ZADD', KEYS[3], ARGV[9], id)
    local kind = cjson.decode(redis.call('HGET', key, 'kind') or 'null')
    redis.call('HINCRBY', KEYS[2], tostring(kind) .. '|running', 1)
    redis.call('EXPIRE', KEYS[2], STATS_TTL)
    redis.call('EXPIRE', KEYS[3], STATS_TTL)
    redis.call('PUBLISH', ARGV[6] .. id, 'running')
    table.insert(got, id)
  end
end
return got
"""


class Claims:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.owner = uuid.uuid4().hex
        ttl = str(STATS_TTL)
        self._claim_one = store.r.register_script(_CLAIM_ONE.replace("STATS_TTL", ttl))
        self._claim_queued = store.r.register_script(_CLAIM_QUEUED.replace("STATS_TTL", ttl))
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # job id -> blocks holding it
        self._renewer: threading.Thread | None = None

    def claim(self, job: dict) -> int:
        """1: claimed (it was queued); 2: running (held by a worker, or, if its lease lapsed,
        waiting for the sweeper to queue it again); 0: ended; -1: gone."""
        job_id, s = job["id"], self.store
        queue = s.batch_queue(job["batch_key"]) if job.get("batch_key") else s.job_key(job_id)
        keys = [s.job_key(job_id), f"{NS}:stats:jobs", s.events_channel(job_id),
                s.lease_key(job_id), queue, RUNNING]
        now = time.time()
        return int(self._claim_one(keys=keys, args=[self.owner, LEASE_SECONDS,
                                                    json.dumps(now), job_id, now]))

    def claim_companions(self, batch_key: str, most: int, images: int,
                         pixels: int, first: bool = False) -> list[str]:
        """Claim up to ``most`` queued jobs with at most ``images`` images and ``pixels``
        input pixels in all, in queue order, waiting under ``batch_key`` (canceled ones and
        ones already taken are skipped). With ``first`` (the batch has no job yet), the
        first job is taken even when it alone passes the caps."""
        if most <= 0 or (not first and (images <= 0 or pixels <= 0)):
            return []
        got = self._claim_queued(
            keys=[self.store.batch_queue(batch_key), f"{NS}:stats:jobs", RUNNING],
            args=[self.owner, LEASE_SECONDS, json.dumps(time.time()), most, f"{NS}:", EVENTS,
                  images, pixels, time.time(), "1" if first else "0"])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in got]

    def leased(self, job_id: str) -> bool:
        return bool(self.store.r.exists(self.store.lease_key(job_id)))

    @contextmanager
    def held(self, job_ids: list[str]) -> Iterator[None]:
        """Renew the leases of ``job_ids`` while the block computes; release each after,
        when no other block of this process holds it.

        One renewal thread per process serves every block (started with the first): a thread
        started and stopped per batch cost the one-job-at-a-time path a context switch or two
        before each computation."""
        released: list[str] = []
        try:
            with self._lock:
                for job_id in job_ids:
                    self._held[job_id] = self._held.get(job_id, 0) + 1
                if self._renewer is None or not self._renewer.is_alive():
                    self._renewer = threading.Thread(target=self._renew_forever, daemon=True,
                                                     name="lease-renewal")
                    self._renewer.start()
            yield
        finally:
            with self._lock:
                for job_id in job_ids:
                    left = self._held.pop(job_id, 0) - 1
                    if left > 0:
                        self._held[job_id] = left
                    else:
                        released.append(job_id)
            if released:
                self.store.r.delete(*[self.store.lease_key(j) for j in released])

    def _renew_forever(self) -> None:
        """Every :data:`RENEW_SECONDS`, renew the leases of the jobs held then (a lease only
        if it still names this owner's job: ``XX``, never bringing a released one back). On a
        client of its own with a socket timeout: a renewal stuck on a half-open connection
        would otherwise stop every renewal of the process."""
        pool = self.store.r.connection_pool
        r = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "socket_timeout": RENEW_TIMEOUT,
               "socket_connect_timeout": RENEW_TIMEOUT}))
        while True:
            time.sleep(RENEW_SECONDS)
            with self._lock:
                job_ids = list(self._held)
            if not job_ids:
                continue
            pipe = r.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.set(self.store.lease_key(job_id), self.owner, xx=True, ex=LEASE_SECONDS)
            try:
                pipe.execute()
            except Exception:  # Redis blinked: the next renewal tries again
                pass
