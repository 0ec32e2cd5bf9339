"""Per-tenant rate limit on requests that create work (new jobs, model uploads).

``CONVSCOPE_RATE_LIMIT`` is ``N/second``, ``N/minute`` or ``N/hour`` (or ``off``). Requests
are counted in Redis in fixed windows shared by every API process. Past the limit the API
answers 429 ``rate_limited`` with ``Retry-After``. Nothing is stored or queued for that
request, so the client can send it again after the wait.
"""

from __future__ import annotations

from flask import g, request

from service.backend import backend
from service.errors import fail

WINDOWS = {"second": 1, "minute": 60, "hour": 3600}
BUCKET = "writes"


def parse_rate(text: str) -> tuple[int, int] | None:
    """``"600/minute"`` -> ``(600, 60)``; ``"off"``, ``"0"`` or empty -> None (no limit)."""
    text = text.strip().lower()
    if text in ("", "off", "0", "none"):
        return None
    count, _, unit = text.partition("/")
    unit = unit.rstrip("s") or "minute"
    if not count.strip().isdigit() or unit not in WINDOWS or int(count) < 1:
        raise ValueError(f"rate limit {text!r}: expected N/second, N/minute or N/hour, or off")
    return int(count), WINDOWS[unit]


def check_rate() -> None:
    """Count this request for ``g.tenant``; answer 429 if it is over the limit."""
    rate = parse_rate(backend().settings.rate_limit)
    if rate is None:
        return
    limit, window = rate
    count, reset = backend().store.count_request(g.tenant, BUCKET, window)
    if count > limit:
        unit = {v: k for k, v in WINDOWS.items()}[window]
        fail(429, "rate_limited",
             f"more than {limit} new jobs or uploads per {unit}; retry in {reset} s",
             headers={"Retry-After": str(reset), "RateLimit-Limit": str(limit),
                      "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)})


def limit_writes() -> None:
    """``before_request`` hook (after the tenant's) of the uploads: count each POST before
    its body is read."""
    if request.method == "POST":
        check_rate()


def limit_job_writes() -> None:
    """``before_request`` hook of the jobs: :func:`limit_writes`, except that a job replayed
    with an ``Idempotency-Key`` this tenant already used is not counted: the API answers it
    with the job it created before. (Only here: the key of a live job made an upload, which
    has no replay, uncounted too.)"""
    if request.method != "POST":
        return
    if backend().store.idempotent_job(g.tenant, request.headers.get("Idempotency-Key")):
        return
    check_rate()
