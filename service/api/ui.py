"""The browser UI: static files served at ``/`` (built on the public HTTP contract only)."""

from __future__ import annotations

from pathlib import Path

from apiflask import APIBlueprint
from flask import send_from_directory

STATIC = Path(__file__).resolve().parent.parent / "static"
bp = APIBlueprint("ui", __name__, tag="ui", enable_openapi=False)


@bp.get("/")
def index():
    return send_from_directory(STATIC, "index.html")


@bp.get("/ui/<path:name>")
def asset(name: str):
    return send_from_directory(STATIC, name)
