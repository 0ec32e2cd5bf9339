"""Tenants: with ``CONVSCOPE_API_KEYS`` set, every ``/v1`` call needs ``Authorization: Bearer
<key>`` and each key is its own tenant; unset, the service is open (tenant ``public``)."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app, g, request

from service.errors import fail

PUBLIC = "public"


def tenant_of(key: str) -> str:
    """A stable tenant id for an API key (the key itself is never stored)."""
    return "t" + hashlib.sha256(key.encode()).hexdigest()[:16]


def require_tenant() -> None:
    """``before_request`` hook of the /v1 blueprints: sets ``g.tenant`` or answers 401."""
    keys = current_app.config["CONVSCOPE"].api_keys
    if not keys:
        g.tenant = PUBLIC
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for key in keys:
            if hmac.compare_digest(token.strip().encode(), key.encode()):
                g.tenant = tenant_of(key)
                return
    fail(401, "unauthorized", "send a valid API key as 'Authorization: Bearer <key>'",
         headers={"WWW-Authenticate": 'Bearer realm="convscope"'})
