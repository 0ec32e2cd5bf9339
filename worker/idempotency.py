"""Idempotency keys: the first use of a key creates the job, every later use (with the same
request) gets that job back, and a use with a different request is refused.

The key is claimed atomically (``SET NX``) under ``idem:<tenant>:<key>`` with the job's id and
a fingerprint of the request. A request that loses the race waits (briefly) for the winner's
job to be stored and answers with it; a key whose job expired is taken over by exactly one
request (compare-and-set). After the IETF Idempotency-Key draft: the same key with another
request is an error (the API answers 422 ``idempotency_key_reused``).
"""

from __future__ import annotations

import time
from typing import Any

# What a key may be: 1 to 255 visible ASCII characters or spaces, no comma. A comma is what an
# HTTP server puts between two headers of the same name ("a, b"), so a request sending two
# keys is refused rather than taken as the key "a, b".
KEY_PATTERN = r"^[\x20-\x2b\x2d-\x7e]{1,255}$"

# A key claimed this long ago whose job is not stored was left by a job that expired or a
# request that died; younger, the request that claimed it is storing its job: wait for it.
WAIT_SECONDS = 2.0

# KEYS: the key. ARGV: the value it must still hold, the new value, TTL.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class IdempotencyKeyReused(Exception):
    """The key was used before with a different request."""


def key_name(ns: str, tenant: str, key: str) -> str:
    return f"{ns}:idem:{tenant}:{key}"


def _parse(raw: Any) -> tuple[str, str, float]:
    """``(job id, request fingerprint, time claimed)`` of a key's value."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    job_id, fingerprint, claimed = (text.split(" ") + ["", ""])[:3]
    try:
        return job_id, fingerprint, float(claimed)
    except ValueError:
        return job_id, fingerprint, 0.0


def claim(store: Any, ns: str, tenant: str, key: str, job_id: str, fingerprint: str,
          ttl: int) -> str | None:
    """Claim ``key`` for the new job ``job_id``: None when claimed (create the job), else the
    id of the job an earlier use of the key created. Raises :class:`IdempotencyKeyReused`."""
    name, value = key_name(ns, tenant, key), f"{job_id} {fingerprint} {time.time():.3f}"
    take_over = store.r.register_script(_TAKE_OVER)
    for _ in range(3):
        if store.r.set(name, value, nx=True, ex=ttl):
            return None
        while (raw := store.r.get(name)) is not None:
            earlier, earlier_print, claimed = _parse(raw)
            if earlier_print and fingerprint and earlier_print != fingerprint:
                raise IdempotencyKeyReused(key)
            if store.r.exists(store.job_key(earlier)):
                return earlier
            if time.time() - claimed > WAIT_SECONDS:  # its job expired (or its request died)
                if take_over(keys=[name], args=[raw, value, ttl]):
                    return None
                break
            time.sleep(0.01)
    raise RuntimeError(f"idempotency key {key!r} kept changing hands")


def earlier_job(store: Any, ns: str, tenant: str, key: str | None) -> str | None:
    """The id of the live job this tenant created with ``key``, if any."""
    if not key:
        return None
    raw = store.r.get(key_name(ns, tenant, key))
    if raw is None:
        return None
    job_id = _parse(raw)[0]
    return job_id if store.r.exists(store.job_key(job_id)) else None
