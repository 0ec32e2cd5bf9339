"""Who computes a job: claims and leases, so jobs can be computed together and still be safe
to re-run.

A worker *claims* a job before computing it: the status becomes ``running`` and a *lease*
(``lease:<id>``, a short TTL the owner keeps renewing while it computes) names the owner. A
job's own Celery task (acknowledged late) that finds the job leased by someone else waits for
the job to end, or for the lease to lapse (its owner died) and then takes the job over. So a
job gathered into another job's batch is never computed twice while its owner lives, and is
re-run by its own task when the owner dies mid-batch. A canceled job is never claimed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from worker.store import EVENTS, NS, JobStore

LEASE_SECONDS = 10  # a dead owner's jobs are taken over this long after it stopped renewing
RENEW_SECONDS = 3.0

_CLAIM_ONE = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return -1 end
local status = cjson.decode(raw)
if status == 'queued' or (status == 'running' and redis.call('EXISTS', KEYS[4]) == 0) then
  redis.call('HSET', KEYS[1], 'status', '"running"', 'started', ARGV[3])
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2])
  local kind = cjson.decode(redis.call('HGET', KEYS[1], 'kind') or 'null')
  redis.call('HINCRBY', KEYS[2], tostring(kind) .. '|running', 1)
  redis.call('PUBLISH', KEYS[3], 'running')
  if KEYS[5] ~= KEYS[1] then redis.call('LREM', KEYS[5], 0, ARGV[4]) end
  return 1
end
if status == 'running' then return 2 end
return 0
"""

# KEYS: the batch queue, the stats hash. ARGV: owner, lease seconds, start time (JSON), most
# jobs, key prefix, event channel prefix, most images, most pixels. A job that would pass a
# cap goes back to the head of the queue for the next batch.
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
  if raw and cjson.decode(raw) == 'queued' and over then
    redis.call('LPUSH', KEYS[1], id)
    break
  end
  if raw and cjson.decode(raw) == 'queued' then
    images = images + n
    pixels = pixels + p
    redis.call('HSET', key, 'status', '"running"', 'started', ARGV[3])
    redis.call('SET', ARGV[5] .. 'lease:' .. id, ARGV[1], 'EX', ARGV[2])
    local kind = cjson.decode(redis.call('HGET', key, 'kind') or 'null')
    redis.call('HINCRBY', KEYS[2], tostring(kind) .. '|running', 1)
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
        self._claim_one = store.r.register_script(_CLAIM_ONE)
        self._claim_queued = store.r.register_script(_CLAIM_QUEUED)

    def claim(self, job: dict) -> int:
        """1: claimed (queued, or running with a lapsed lease); 2: leased by a live owner;
        0: ended; -1: gone."""
        job_id, s = job["id"], self.store
        queue = s.batch_queue(job["batch_key"]) if job.get("batch_key") else s.job_key(job_id)
        keys = [s.job_key(job_id), f"{NS}:stats:jobs", s.events_channel(job_id),
                s.lease_key(job_id), queue]
        return int(self._claim_one(keys=keys, args=[self.owner, LEASE_SECONDS,
                                                    json.dumps(time.time()), job_id]))

    def claim_companions(self, batch_key: str, most: int, images: int,
                         pixels: int) -> list[str]:
        """Claim up to ``most`` queued jobs with at most ``images`` images and ``pixels``
        input pixels in all, in queue order, waiting under ``batch_key`` (canceled ones and
        ones already taken are skipped)."""
        if most <= 0 or images <= 0 or pixels <= 0:
            return []
        got = self._claim_queued(
            keys=[self.store.batch_queue(batch_key), f"{NS}:stats:jobs"],
            args=[self.owner, LEASE_SECONDS, json.dumps(time.time()), most, f"{NS}:", EVENTS,
                  images, pixels])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in got]

    def leased(self, job_id: str) -> bool:
        return bool(self.store.r.exists(self.store.lease_key(job_id)))

    @contextmanager
    def held(self, job_ids: list[str]) -> Iterator[None]:
        """Renew the leases of ``job_ids`` while the block computes; release them after."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(RENEW_SECONDS):
                pipe = self.store.r.pipeline(transaction=False)
                for job_id in job_ids:
                    pipe.set(self.store.lease_key(job_id), self.owner, xx=True, ex=LEASE_SECONDS)
                try:
                    pipe.execute()
                except Exception:  # Redis blinked: the next renewal tries again
                    pass

        thread = threading.Thread(target=renew, daemon=True, name="lease-renewal")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self.store.r.delete(*[self.store.lease_key(j) for j in job_ids])
