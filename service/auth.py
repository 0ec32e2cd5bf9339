"""Tenants: with ``CONVSCOPE_API_KEYS`` set, every ``/v1`` call needs ``Authorization: Bearer
<key>`` and each key is its own tenant; unset, the service is open (tenant ``public``).

``/metrics`` shows every tenant's counters together, so no tenant key opens it: with
``CONVSCOPE_METRICS_KEY`` set it needs that operator key (``Authorization: Bearer <key>`` or
``X-API-Key: <key>``); without one it is open only while the whole service is (no API keys),
and answers 403 otherwise."""

from __future__ import annotations

import hashlib
import hmac
import os

from flask import Flask, current_app, g, request

from service.errors import fail

PUBLIC = "public"
METRICS_KEY = "CONVSCOPE_METRICS_KEY"  # the environment variable, and the app.config key
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="convscope"'}


def tenant_of(key: str) -> str:
    """A stable tenant id for an API key (the key itself is never stored)."""
    return "t" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _presented() -> list[str]:
    """The keys this request carries: ``Authorization: Bearer <key>`` and ``X-API-Key``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    keys = [token.strip()] if scheme.lower() == "bearer" else []
    return [k for k in (*keys, request.headers.get("X-API-Key", "").strip()) if k]


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


def require_tenant() -> None:
    """``before_request`` hook of the /v1 blueprints: sets ``g.tenant`` or answers 401."""
    keys = current_app.config["CONVSCOPE"].api_keys
    if not keys:
        g.tenant = PUBLIC
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        for key in keys:
            if _same(token.strip(), key):
                g.tenant = tenant_of(key)
                return
    fail(401, "unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
         headers=CHALLENGE)


def init_app(app: Flask) -> None:
    """Read the operator key once: a ``metrics_key`` setting, else ``CONVSCOPE_METRICS_KEY``."""
    settings = app.config["CONVSCOPE"]
    app.config.setdefault(METRICS_KEY, getattr(settings, "metrics_key", "")
                          or os.environ.get(METRICS_KEY, "").strip())


def require_operator() -> None:
    """Let the request through to operator-only data (``/metrics``), or answer 401 / 403."""
    key = current_app.config.get(METRICS_KEY) or ""
    if not key:
        if current_app.config["CONVSCOPE"].api_keys:
            fail(403, "forbidden", "/metrics shows every tenant's counters: set "
                 f"{METRICS_KEY} on the server and scrape with that operator key")
        return
    if not any(_same(given, key) for given in _presented()):
        fail(401, "unauthorized", "/metrics needs the operator key "
             "('Authorization: Bearer <key>' or 'X-API-Key: <key>')", headers=CHALLENGE)
