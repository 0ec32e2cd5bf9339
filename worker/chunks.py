"""The chunks of a dataset job in Redis: who computes each, which are done, their partials.

A dataset job of ``n`` chunks has ``n + 1`` *units*: chunks ``0 .. n-1`` and the merge
(unit ``n``). A worker claims a unit atomically (:meth:`ChunkRecords.claim`): only while the
job is ``running``, only a chunk not done yet, and only when nobody holds its lease
(``lease:<job>:<unit>``, kept alive by :meth:`worker.claims.Claims.held` as for jobs). A
claimed unit is in the ``chunks:running`` sorted set until it is done. A chunk is done when
its partial is stored and its index joins the job's done set, in one step
(:meth:`ChunkRecords.done`): a chunk computed twice (its first worker was presumed dead) is
counted once, and exactly one call sees the set complete; that caller runs the merge.

A unit whose lease lapsed (its worker was killed) is found by :mod:`worker.sweeper`
(:meth:`ChunkRecords.lapsed`) and sent again; a unit lost :data:`MAX_UNIT_ATTEMPTS` times fails
the job with ``worker_lost``. Keys expire with the job (the result TTL); the partials, the
large ones, are deleted as soon as the merge has stored the job's result
(:meth:`ChunkRecords.drop_partials`). TensorFlow-free.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from worker.store import NS, JobStore, _text

COMPLETED, ADDED = 1, 2  # ChunkRecords.done: this call completed the set / counted the chunk
RUNNING_UNITS = f"{NS}:chunks:running"  # sorted set of "<job>:<unit>" (score: claim time)
MAX_UNIT_ATTEMPTS = 3

# KEYS: job hash, done set, unit lease, running units, runs counter. ARGV: unit, owner, lease
# seconds, member, now, ttl. 1: claimed; 0: job not running or unit done; 2: held elsewhere.
_CLAIM = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw or cjson.decode(raw) ~= 'running' then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[3]) then return 2 end
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], ARGV[6])
return 1
"""

# KEYS: partial, done set, running units, job hash, event channel. ARGV: chunk, member,
# chunks, ttl, partial. 1 when this call completed the set, 2 when it added the chunk but the
# set is not complete, 0 when the chunk was done before (its partial is then not stored: the
# first run's stays, and a second run read floors that hold the first run's values) or the
# job no longer runs (canceled or failed: nothing of it is stored, nothing merges).
_DONE = """
local raw = redis.call('HGET', KEYS[4], 'status')
if not raw or cjson.decode(raw) ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 0
end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then  -- the first run's partial stays: a second run may have been pruned by it
  redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[4])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[2])
local done = redis.call('SCARD', KEYS[2])
if added == 1 then
  redis.call('HSET', KEYS[4], 'progress', tostring(done / tonumber(ARGV[3])))
  redis.call('PUBLISH', KEYS[5], 'progress')
end
if added == 1 and done == tonumber(ARGV[3]) then return 1 end
if added == 1 then return 2 end
return 0
"""

# KEYS: running units, unit lease, job hash, done set, attempts hash. ARGV: member, unit,
# ttl. -1: nothing to do (owner alive: 0); else the unit's lapses so far (send it again).
_LAPSED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local raw = redis.call('HGET', KEYS[3], 'status')
if not raw or cjson.decode(raw) ~= 'running' then return -1 end
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then return -1 end
local attempts = redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
redis.call('EXPIRE', KEYS[5], ARGV[3])
return attempts
"""


# KEYS: floors hash, job hash. ARGV: ttl, keep, then (field, values) pairs, values a
# comma-separated list of numbers. Each field keeps the ``keep`` largest values it was ever
# given (a done chunk's top values join those of the chunks done before it); nothing once the
# job no longer runs (its floors may have been dropped already).
_RAISE = """
local raw = redis.call('HGET', KEYS[2], 'status')
if not raw or cjson.decode(raw) ~= 'running' then return 0 end
local keep = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local values = {}
  for v in string.gmatch((redis.call('HGET', KEYS[1], ARGV[i]) or '') .. ',' .. ARGV[i + 1],
                         '[^,]+') do
    table.insert(values, tonumber(v))
  end
  table.sort(values, function(a, b) return a > b end)
  local kept = {}
  for j = 1, math.min(keep, #values) do kept[j] = string.format('%.17g', values[j]) end
  redis.call('HSET', KEYS[1], ARGV[i], table.concat(kept, ','))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def member(job_id: str, unit: int) -> str:
    return f"{job_id}:{unit}"


class ChunkRecords:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._claim = store.r.register_script(_CLAIM)
        self._done = store.r.register_script(_DONE)
        self._lapsed = store.r.register_script(_LAPSED)
        self._raise = store.r.register_script(_RAISE)

    @staticmethod
    def key(job_id: str, what: str) -> str:
        """``done`` (set), ``runs`` (units claimed, counter), ``attempts`` (hash),
        ``floors`` (hash), ``dropped`` (flag) or ``partial:<i>``."""
        return f"{NS}:chunks:{job_id}:{what}"

    def claim(self, job_id: str, unit: int, owner: str, lease_seconds: int) -> int:
        """1: claimed; 0: the job is not running or the chunk is done; 2: held elsewhere."""
        s = self.store
        keys = [s.job_key(job_id), self.key(job_id, "done"),
                s.lease_key(member(job_id, unit)), RUNNING_UNITS, self.key(job_id, "runs")]
        return int(self._claim(keys=keys, args=[unit, owner, lease_seconds,
                                                member(job_id, unit), time.time(), s.ttl]))

    def done(self, job_id: str, chunk: int, chunks: int, partial: str | bytes) -> int:
        """Store chunk ``chunk``'s partial (JSON, or the kind's own bytes) and count it
        done, with progress: :data:`COMPLETED` for the one call that completed the set of
        ``chunks``, :data:`ADDED` when this call counted the chunk, else 0 (it was done)."""
        s = self.store
        keys = [self.key(job_id, f"partial:{chunk}"), self.key(job_id, "done"), RUNNING_UNITS,
                s.job_key(job_id), s.events_channel(job_id)]
        return int(self._done(keys=keys, args=[chunk, member(job_id, chunk), chunks, s.ttl,
                                               partial]))

    def release(self, job_id: str, unit: int) -> None:
        """The unit is no longer computed here (ended, failed or given up): out of the
        running set (its lease goes when :meth:`Claims.held` ends)."""
        self.store.r.zrem(RUNNING_UNITS, member(job_id, unit))

    def done_count(self, job_id: str) -> int:
        return int(self.store.r.scard(self.key(job_id, "done")))

    def runs(self, job_id: str) -> int:
        """How many times a unit of the job was claimed (chunks computed, merges started)."""
        return int(self.store.r.get(self.key(job_id, "runs")) or 0)

    def partials(self, job_id: str, chunks: int) -> Iterator[bytes | None]:
        """The stored partials, one at a time (None where one is missing)."""
        for i in range(chunks):
            yield self.store.r.get(self.key(job_id, f"partial:{i}"))  # type: ignore[misc]

    def floors(self, job_id: str) -> dict[int, list[float]]:
        """The largest values the done chunks reported so far, per row, largest first
        (``top_examples``: per channel, the scores of the done chunks' top lists)."""
        raw = self.store.r.hgetall(self.key(job_id, "floors"))
        return {int(k): [float(v) for v in _text(text).split(",") if v]
                for k, text in raw.items()}

    def raise_floors(self, job_id: str, values: dict[int, list[float]], keep: int) -> None:
        """Add a done chunk's ``values`` per row to the job's, keeping the ``keep`` largest
        of each row (one atomic step). Call once per chunk (when :meth:`done` said
        :data:`ADDED`): values are of distinct images only if no chunk reports twice."""
        pairs = [x for row, vals in values.items() if vals
                 for x in (row, ",".join(repr(float(v)) for v in vals))]
        if pairs:
            self._raise(keys=[self.key(job_id, "floors"), self.store.job_key(job_id)],
                        args=[self.store.ttl, keep, *pairs])

    def drop_partials(self, job_id: str, chunks: int) -> None:
        """Delete the job's stored partials and floors (after its merge succeeded: nothing
        reads them again). ``UNLINK``: Redis frees their memory off its main thread."""
        keys = [self.key(job_id, f"partial:{i}") for i in range(chunks)]
        keys.append(self.key(job_id, "floors"))
        for start in range(0, len(keys), 1000):
            self.store.r.unlink(*keys[start:start + 1000])

    def drop_once(self, job_id: str, chunks: int) -> bool:
        """:meth:`drop_partials` for a job that ended without its merge (canceled, failed),
        by the first caller only (every chunk message left for the job comes here); True
        for that caller. Chunks still computing store nothing once the job ended."""
        if not self.store.r.set(self.key(job_id, "dropped"), b"1", nx=True, ex=self.store.ttl):
            return False
        self.drop_partials(job_id, chunks)
        return True

    def lapsed(self, limit: int = 500) -> Iterator[tuple[str, int, int]]:
        """``(job id, unit, lapses)`` for each claimed unit whose lease lapsed while its job
        runs and it is not done (each reported once: it leaves the running set)."""
        s = self.store
        for raw in s.r.zrange(RUNNING_UNITS, 0, limit - 1):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            job_id, _, unit = text.rpartition(":")
            keys = [RUNNING_UNITS, s.lease_key(text), s.job_key(job_id),
                    self.key(job_id, "done"), self.key(job_id, "attempts")]
            attempts = int(self._lapsed(keys=keys, args=[text, unit, s.ttl]))
            if attempts > 0:
                yield job_id, int(unit), attempts
