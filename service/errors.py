"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``."""

from __future__ import annotations

from typing import Any, NoReturn

from apiflask import APIFlask, HTTPError

PROBLEM_TYPE = "https://convscope.dev/problems/"
DEFAULT_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
                 500: "internal_error", 503: "unavailable"}


def fail(status: int, code: str, detail: str, title: str | None = None,
         headers: dict[str, str] | None = None) -> NoReturn:
    """Abort the request with a problem response."""
    raise HTTPError(status, title or code.replace("_", " ").capitalize(), detail=detail,
                    headers=headers, extra_data={"code": code})


def _summary(detail: Any) -> str:
    if isinstance(detail, dict):  # marshmallow's {location: {field: [messages]}}
        parts = []
        for fields in detail.values():
            items = fields.items() if isinstance(fields, dict) else [("", fields)]
            parts += [f"{name}: {'; '.join(map(str, msgs))}" for name, msgs in items]
        return ", ".join(parts) or "invalid request"
    return str(detail) if detail else ""


def init_app(app: APIFlask) -> None:
    @app.error_processor
    def problem(error: HTTPError) -> tuple[dict, int, dict]:
        extra = dict(error.extra_data or {})
        code = extra.pop("code", None) or DEFAULT_CODES.get(error.status_code, "error")
        body = {"type": PROBLEM_TYPE + code, "title": error.message, "status": error.status_code,
                "detail": _summary(error.detail) or error.message, "code": code, **extra}
        if isinstance(error.detail, dict) and error.detail:
            body["errors"] = error.detail
        headers = {**dict(error.headers or {}), "Content-Type": "application/problem+json"}
        return body, error.status_code, headers
