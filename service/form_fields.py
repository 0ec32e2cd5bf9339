"""What a view with form input takes: a body sent as another media type than a form
(``multipart/form-data``) is refused with 415; a form field or query parameter the API reads
as one value (``model``, ``name``, ``wait``, ...) sent twice is refused with 400, instead of
the first value being used silently (``image`` takes a list and may repeat).

Runs after each blueprint's own hooks (the tenant check and the rate limit count a request
before its body is read), for the views whose apiflask input schemas say what they take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from apiflask import APIBlueprint, APIFlask
from flask import current_app, request
from marshmallow import Schema
from marshmallow.fields import List

from service.errors import fail

FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


@cache  # a view's schemas live as long as the app: one entry each
def _single_valued(schema: Schema | type[Schema]) -> tuple[str, ...]:
    """The names of the fields of ``schema`` that take one value (worked out once per schema:
    making a schema instance for it cost 30 µs a request)."""
    fields = (schema() if isinstance(schema, type) else schema).fields
    return tuple(field.data_key or name for name, field in fields.items()
                 if not isinstance(field, List))


def _inputs(spec: dict[str, Any]) -> Iterator[tuple[str, Any, Callable[[str], int]]]:
    """``(where, schema, how many values a name has there)`` for each input of a view."""
    body = spec.get("body")
    if body is not None and request.mimetype in FORMS:
        yield "form", body, lambda key: (len(request.form.getlist(key))
                                         + len(request.files.getlist(key)))
    for schema, location in spec.get("args") or []:
        if location == "query":
            yield "query", schema, lambda key: len(request.args.getlist(key))


def refuse_repeated_fields() -> None:
    """``before_request`` hook: 415 for a body that is not a form where a form is taken; 400
    ``bad_request`` for a single-valued field given twice."""
    view = current_app.view_functions.get(request.endpoint or "")
    spec = getattr(view, "_spec", None) or {}
    if spec.get("body") is not None and request.mimetype and request.mimetype not in FORMS:
        fail(415, "unsupported_media_type", f"send the fields as multipart/form-data, not "
             f"{request.mimetype}")
    for where, schema, count in _inputs(spec):
        for key in _single_valued(schema):
            if (n := count(key)) > 1:
                fail(400, "bad_request", f"{where} field {key!r} is given {n} times; it "
                     "takes one value")


def init_app(app: APIFlask) -> None:
    """Hook every registered API blueprint (call after registering them)."""
    for name, blueprint in app.blueprints.items():
        if isinstance(blueprint, APIBlueprint):
            app.before_request_funcs.setdefault(name, []).append(refuse_repeated_fields)
