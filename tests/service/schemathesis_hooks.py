"""Schemathesis hooks for ``test_openapi_complete`` (``SCHEMATHESIS_HOOKS``): the findings
that are not violations of this API's contract, each dropped for a stated reason and nothing
else.

* ``use_after_free`` after ``DELETE /v1/jobs/{id}``: that DELETE *cancels* a job (the
  architecture's contract); the job stays readable, as ``canceled``, until its TTL.
* ``negative_data_rejection`` for a type change of a free-text multipart field (a number
  sent as ``name``): multipart has no types, the part on the wire is text, which the field
  takes. Schemathesis re-checks such bodies itself, but not when a file part is present.
* ``positive_data_acceptance`` answered 422 ``idempotency_key_reused``: schemathesis sends
  the same generated ``Idempotency-Key`` (``0``) with different bodies, and a key used again
  with another request is refused, as the spec says (the IETF Idempotency-Key draft).
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData, UseAfterFree

MUTATED = re.compile(r"violates `(?:type|anyOf)` at /properties/(?P<name>[^/\s]+)")
CONSTRAINTS = ("enum", "format", "pattern", "minLength", "maxLength")


def _free_text_field(case: Any, name: str) -> bool:
    if not (case.media_type or "").startswith("multipart/"):
        return False
    body = case.operation.get_body_for_media_type(case.media_type)
    schema = (body.resolved_schema or {}).get("properties", {}).get(name) if body else None
    return isinstance(schema, dict) and schema.get("type") == "string" and \
        not any(key in schema for key in CONSTRAINTS)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """True keeps the failure."""
    if isinstance(failure, UseAfterFree):
        if failure.free.startswith("DELETE /v1/jobs/"):
            return False
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422 and \
            b'"idempotency_key_reused"' in response.content:
        return False
    if isinstance(failure, AcceptedNegativeData):
        found = MUTATED.search(failure.message)
        if found and _free_text_field(case, found["name"]):
            return False
    return True
