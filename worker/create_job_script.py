"""Storing a new job in one Redis command: a Lua script, run by ``EVALSHA``.

A job is many writes: its input arrays, its record, the tenant's index, a counter, and for a
job that can share a model call its batch queue, the queue's wake token and the queue's
marker. As a MULTI pipeline of 18 commands, redis-py's packing and reply parsing took 170 µs
of the API's CPU per job; as one script call, 70 µs (measured side by side here, Redis' own
CPU the same). The script is atomic, as the transaction was.
"""

from __future__ import annotations

from typing import NamedTuple

# KEYS: job hash, tenant index, stats hash, then (a batched job only) batch queue, batch-key
# set, wake list, the queue's marker; then the keys of the input images (model-sized arrays
# and originals).
# ARGV: ttl, now, index cutoff (scores: strings, as sent), job id, stats field, number of
# record fields, number of input images, batch key ('' for none), marker seconds, token seconds,
# stats seconds, then the record's (field, JSON value) pairs, then the input images.
# Returns 1 when a task message must be sent (no batch, or the marker was unset), else 0.
CREATE_JOB = """
local ttl = tonumber(ARGV[1])
local nfields, ninputs = tonumber(ARGV[6]), tonumber(ARGV[7])
local batched = ARGV[8] ~= ''
local record = {}
for i = 1, 2 * nfields do record[i] = ARGV[11 + i] end
local first_input = batched and 8 or 4
for i = 0, ninputs - 1 do
  redis.call('SET', KEYS[first_input + i], ARGV[12 + 2 * nfields + i], 'EX', ttl)
end
redis.call('HSET', KEYS[1], unpack(record))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[11]))
if not batched then return 1 end
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('SADD', KEYS[5], ARGV[8])
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('RPUSH', KEYS[6], '1')
redis.call('LTRIM', KEYS[6], -1, -1)
redis.call('EXPIRE', KEYS[6], tonumber(ARGV[10]))
if redis.call('SET', KEYS[7], '1', 'NX', 'EX', tonumber(ARGV[9])) then return 1 end
return 0
"""


class CreateCall(NamedTuple):
    """The keys and arguments of one :data:`CREATE_JOB` call."""

    keys: list[str]
    args: list[bytes | str | int]


def create_call(job_key: str, index: str, stats: str, batch_keys: list[str],
                data: list[tuple[str, bytes]], ttl: int, now: float, job_id: str,
                stats_field: str, record: dict[str, str], batch: str,
                seconds: tuple[int, int, int]) -> CreateCall:
    """A :data:`CREATE_JOB` call. ``batch_keys``: the batch queue, batch-key set, wake list
    and marker (empty for a job without ``batch``); ``data``: (key, bytes) of each input
    image; ``seconds``: the marker's, the token's and the stats' expiry."""
    args: list[bytes | str | int] = [ttl, repr(now), repr(now - ttl), job_id, stats_field,
                                     len(record), len(data), batch, *seconds]
    for field, value in record.items():
        args += [field, value]
    args += [value for _, value in data]
    return CreateCall([job_key, index, stats, *batch_keys, *(key for key, _ in data)], args)
