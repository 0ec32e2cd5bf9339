"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``.

Losing Redis (the job store and the broker) is not a bug in the request: while it is
unreachable, restarting or still loading its data, every request that needs it is answered
503 ``store_unavailable`` with ``Retry-After``, and the next request after it is back simply
works again (redis-py and kombu reconnect by themselves)."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import redis
from apiflask import APIFlask, HTTPError
from gunicorn.http.errors import ParseException
from kombu.exceptions import OperationalError

PROBLEM = "application/problem+json"
PROBLEM_TYPE = "https://convscope.dev/problems/"
DEFAULT_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 414: "uri_too_long", 415: "unsupported_media_type",
                 416: "range_not_satisfiable", 422: "invalid_request",
                 429: "rate_limited", 431: "headers_too_large", 500: "internal_error",
                 503: "unavailable"}
# Redis down, restarting or loading its data (BusyLoadingError is a ConnectionError), and
# the broker refusing a message for the same reason.
STORE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OperationalError)
UNNAMED = "(part without a name)"
LOCATIONS = {"form_and_files": "form", "files": "form"}
STORE_RETRY_AFTER = 5  # seconds a client should wait before it tries again
log = logging.getLogger("convscope.api")


def fail(status: int, code: str, detail: str, title: str | None = None,
         headers: dict[str, str] | None = None) -> NoReturn:
    """Abort the request with a problem response."""
    raise HTTPError(status, title or code.replace("_", " ").capitalize(), detail=detail,
                    headers=headers, extra_data={"code": code})


def store_unavailable(exc: BaseException) -> HTTPError:
    """The 503 a request gets while Redis cannot be reached."""
    what = "is loading its data" if isinstance(exc, redis.BusyLoadingError) else \
        "cannot be reached"
    return HTTPError(503, "Store unavailable", headers={"Retry-After": str(STORE_RETRY_AFTER)},
                     detail=f"the job store (Redis) {what}; retry in {STORE_RETRY_AFTER} s",
                     extra_data={"code": "store_unavailable"})


def _string_keys(detail: Any) -> Any:
    """``detail`` with every mapping key a string: a multipart part without ``name=`` shows up
    in marshmallow's errors under the key None, which JSON (with sorted keys) cannot write."""
    if isinstance(detail, dict):
        return {UNNAMED if key is None else str(key): _string_keys(value)
                for key, value in detail.items()}
    return detail


def _locations(detail: Any) -> Any:
    """apiflask's input locations as clients know them (``form_and_files`` is ``form``)."""
    if isinstance(detail, dict):
        return {LOCATIONS.get(key, key): value for key, value in detail.items()}
    return detail


def _summary(detail: Any) -> str:
    if isinstance(detail, dict):  # marshmallow's {location: {field: [messages]}}
        parts = []
        for fields in detail.values():
            items = fields.items() if isinstance(fields, dict) else [("", fields)]
            parts += [f"{name}: {'; '.join(map(str, msgs))}" for name, msgs in items]
        return ", ".join(parts)
    return str(detail) if detail else ""


def problem_body(error: HTTPError) -> tuple[dict, int, dict]:
    """The problem+json answer for ``error`` (apiflask's error processor)."""
    error.detail = _locations(_string_keys(error.detail))
    extra = dict(error.extra_data or {})
    code = extra.pop("code", None) or DEFAULT_CODES.get(error.status_code, "error")
    body = {"type": PROBLEM_TYPE + code, "title": error.message, "status": error.status_code,
            "detail": _summary(error.detail) or error.message, "code": code, **extra}
    if isinstance(error.detail, dict) and error.detail:
        body["errors"] = error.detail
    headers = {**dict(error.headers or {}), "Content-Type": PROBLEM}
    return body, error.status_code, headers


def init_app(app: APIFlask) -> None:
    app.error_processor(problem_body)

    for error in STORE_ERRORS:
        app.register_error_handler(error, _redis_down)
    app.register_error_handler(ParseException, _bad_body)


def _redis_down(exc: Exception) -> tuple[dict, int, dict]:
    log.warning("answering 503: Redis is unavailable (%s: %s)", type(exc).__name__, exc)
    return problem_body(store_unavailable(exc))


def _bad_body(exc: Exception) -> tuple[dict, int, dict]:
    """gunicorn found the body malformed as the app read it (a chunk size that is not hex, a
    chunk without its terminator): the client's fault, 400, not a 500."""
    detail = f"the request body is malformed: {type(exc).__name__} {exc}"
    return problem_body(HTTPError(400, "Bad request", detail=detail,
                                  extra_data={"code": "bad_request"}))
