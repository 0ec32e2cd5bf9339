"""One blueprint per resource."""

from __future__ import annotations

from flask import current_app

from service.app import Backend


def backend() -> Backend:
    return current_app.extensions["convscope"]
