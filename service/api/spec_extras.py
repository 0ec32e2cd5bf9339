"""The parts of the OpenAPI document the view decorators cannot say, added in one place by an
apiflask spec processor: every status code and content type the API answers with.

* Every error is ``application/problem+json`` (schema ``Problem``: ``type``, ``title``,
  ``status``, ``detail``, ``code``), with the codes each operation can give: 400 for bad
  input, 401 without a valid key (when ``CONVSCOPE_API_KEYS`` is set), 404, 409, 413, 415,
  422, 429 (``Retry-After``) on the POSTs, and 503 (``Retry-After``) on every operation that
  needs Redis (``store_unavailable``) or a model a worker is still preparing.
* Success answers carry their real status and media type: 201/202 + ``Location`` on
  uploads and submissions, DELETE's 200/202 and 204, Prometheus text on ``/metrics``,
  ``text/event-stream``, artifacts as ``image/png`` / ``application/x-npy`` / ``text/csv``,
  the tar bundle.
* Security follows the server's configuration: bearer keys on ``/v1`` when API keys are set,
  the operator key on ``/metrics`` (see :mod:`service.auth`).
"""

from __future__ import annotations

import copy
from typing import Any

from apiflask import APIFlask

from service.auth import METRICS_KEY
from service.errors import PROBLEM
from worker.idempotency import KEY_PATTERN

Operation = dict[str, Any]
JSON = "application/json"
BINARY = {"type": "string", "format": "binary"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem with a stable `code`",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object",
                   "description": "messages by input location (`form`, `query`) and field"},
    },
}
READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "redis", "workers"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "redis": {"type": "string", "enum": ["ok", "unreachable"]},
        "workers": {"type": "integer", "minimum": 0},
        "reason": {"type": "string", "description": "why it is not ready"},
    },
}
SSE_EVENT: dict[str, Any] = {  # one event of the stream
    "type": "object",
    "required": ["event", "data"],
    "properties": {"event": {"type": "string", "enum": ["status"]},
                   "data": {"type": "string", "description": "the job as JSON"}},
}
ERROR_TEXT = {
    400: "Bad input (`bad_request`, `invalid_options`, `invalid_image`, `unknown_layer`, ...)",
    401: "No valid API key (`unauthorized`)",
    403: "Not allowed (`forbidden`)",
    404: "No such resource for this caller (`not_found`, `unknown_model`)",
    409: "Conflict (`model_refused`, `model_name_taken`)",
    413: "Body, image or model file too large (`payload_too_large`, `image_too_large`)",
    414: "Request URI too long (`uri_too_long`)",
    415: "The body is not `multipart/form-data` (`unsupported_media_type`)",
    416: "The `Range` asks for bytes past the artifact's end (`range_not_satisfiable`)",
    422: "The uploaded model was refused by a worker (`unsafe_model`, `invalid_model`), or "
         "an `Idempotency-Key` was used before with a different request "
         "(`idempotency_key_reused`), or a model's name could not address it (`invalid_name`)",
    429: "Too many new jobs or uploads (`rate_limited`); wait `Retry-After` seconds",
    503: "Redis unreachable (`store_unavailable`) or the model is still being prepared "
         "(`model_not_ready`); retry after `Retry-After` seconds",
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "required": True,
               "schema": {"type": "integer", "minimum": 0}}
ETAG = {"description": "the artifact's digest (artifacts never change)", "required": True,
        "schema": {"type": "string"}}
ARTIFACT_TYPES = ("image/png", "application/x-npy", "text/csv")
LOCATION = {"description": "the new resource", "required": True, "schema": {"type": "string"}}
TENANT_FREE = ("/v1/contract",)  # /v1 paths that need no API key
REDIS_FREE = {("get", "/healthz"), ("get", "/v1/contract")}


def _json(description: str, schema: dict | None = None) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema or {}}}}


def _media(description: str, *types: str, schema: dict | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {t: {"schema": schema or {"type": "string"}} for t in types}}


def _with_headers(response: dict[str, Any], **headers: dict) -> dict[str, Any]:
    return {**response, "headers": {name.replace("_", "-"): h for name, h in headers.items()}}


# (method, path) -> success responses, and the error statuses the operation can answer
# besides the common ones (401 and 503, added where they apply).
SUCCESS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("get", "/readyz"): {"200": _json("Ready: Redis answers, a worker is alive",
                                      READINESS_SCHEMA)},
    ("get", "/metrics"): {"200": _media("Prometheus text format (version 0.0.4)",
                                        "text/plain")},
    ("post", "/v1/jobs"): {
        "202": _with_headers(_json("Queued (or, with `?wait`, still running): the job"),
                             Location=LOCATION),
        "200": _with_headers(_json("With `?wait=S`: the job, ended within S seconds"),
                             Location=LOCATION)},
    ("delete", "/v1/jobs/{job_id}"): {
        "200": _json("The job had already ended: unchanged"),
        "202": _json("Cancel requested: the job as it is now")},
    ("get", "/v1/jobs/{job_id}/events"): {"200": _media(
        "Server-Sent Events: one `status` event per change of status or progress (data: the "
        "job as GET returns it), ending after the job ends", "text/event-stream",
        schema=SSE_EVENT)},
    ("get", "/v1/jobs/{job_id}/artifacts/{name}"): {
        "200": _with_headers(_media(
            "The artifact's bytes: a picture, an array, or (a `quality` job's `quality_csv`) "
            "a table", *ARTIFACT_TYPES, schema=BINARY), ETag=ETAG),
        "206": _with_headers(_media("The part of the artifact the `Range` header asked for",
                                    *ARTIFACT_TYPES, schema=BINARY),
                             Content_Range={"schema": {"type": "string"}, "required": True},
                             ETag=ETAG),
        "304": _with_headers({"description": "Unchanged since the `ETag` given in "
                                             "`If-None-Match`"}, ETag=ETAG)},
    ("post", "/v1/models"): {
        "201": _with_headers(_json("The model, validated and ready"), Location=LOCATION),
        "202": _with_headers(_json("The model, still being validated"), Location=LOCATION)},
    ("delete", "/v1/models/{model_id}"): {"204": {"description": "Removed"}},
}


def _ref(method: str, path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _links(param: str, *targets: tuple[str, str, str]) -> dict[str, Any]:
    return {name: {"operationRef": _ref(method, path),
                   "parameters": {param: "$response.body#/id"}}
            for name, method, path in targets}


JOB_LINKS = _links("job_id", ("GetJob", "get", "/v1/jobs/{job_id}"),
                   ("JobEvents", "get", "/v1/jobs/{job_id}/events"),
                   ("JobBundle", "get", "/v1/jobs/{job_id}/artifacts.tar"),
                   ("CancelJob", "delete", "/v1/jobs/{job_id}"))
MODEL_LINKS = _links("model_id", ("GetModel", "get", "/v1/models/{model_id}"),
                     ("ModelLayers", "get", "/v1/models/{model_id}/layers"),
                     ("DeleteModel", "delete", "/v1/models/{model_id}"))
LINKS = {("post", "/v1/jobs"): JOB_LINKS, ("post", "/v1/models"): MODEL_LINKS}
BODY_EXAMPLES = {("post", "/v1/jobs"): {  # a job that works on the built-in model
    "model": "shapes", "kind": "filters", "layer": "conv2",
    "options": '{"filters": [0, 1], "steps": 4, "size": 16}'}}
ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/metrics"): (401, 403),
    ("get", "/v1/jobs"): (400,),
    ("post", "/v1/jobs"): (400, 404, 409, 413, 415, 422, 429),
    ("get", "/v1/jobs/{job_id}"): (400, 404),
    ("delete", "/v1/jobs/{job_id}"): (404,),
    ("get", "/v1/jobs/{job_id}/events"): (404,),
    ("get", "/v1/jobs/{job_id}/artifacts/{name}"): (404, 416),
    ("get", "/v1/jobs/{job_id}/artifacts.tar"): (404,),
    ("get", "/v1/models"): (400,),
    ("post", "/v1/models"): (400, 409, 413, 415, 422, 429),
    ("get", "/v1/models/{model_id}"): (400, 404),
    ("delete", "/v1/models/{model_id}"): (403, 404),
    ("get", "/v1/models/{model_id}/layers"): (400, 404, 409),
}


# Request headers an operation reads, besides the auth schemes'.
HEADERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("post", "/v1/jobs"): [{
        "name": "Idempotency-Key", "in": "header", "required": False,
        "description": "A retried POST with the same key and request gets the first one's job "
                       "back (422 `idempotency_key_reused` with another request)",
        "schema": {"type": "string", "pattern": KEY_PATTERN}}],
    ("get", "/v1/jobs/{job_id}/artifacts/{name}"): [
        {"name": "Range", "in": "header", "required": False,
         "description": "`bytes=a-b`: that part of the artifact (206)",
         "schema": {"type": "string"}},
        {"name": "If-None-Match", "in": "header", "required": False,
         "description": "the `ETag` of an earlier answer: 304 while the artifact is unchanged",
         "schema": {"type": "string"}}],
}


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_TEXT.get(status, "Error"),
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                    "required": True}}
    return response


class SpecExtras:
    """The spec processor: what one server (its keys, its settings) answers."""

    def __init__(self, app: APIFlask) -> None:
        self.app = app

    @property
    def keyed(self) -> bool:
        return bool(self.app.config["CONVSCOPE"].api_keys)

    @property
    def metrics_key(self) -> bool:
        return bool(self.app.config.get(METRICS_KEY))

    def __call__(self, spec: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(spec, str):  # SPEC_FORMAT yaml: nothing to add to text
            return spec
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)
        for name in ("ValidationError", "HTTPError"):  # apiflask's, replaced by Problem
            schemas.pop(name, None)
        schemes = components.setdefault("securitySchemes", {})
        schemes["operatorKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "responses" in operation:
                    self.operation(method, path, operation)
        return spec

    def operation(self, method: str, path: str, operation: Operation) -> None:
        responses = operation["responses"]
        success = SUCCESS.get((method, path))
        if success is not None:
            for status in [s for s in responses if s.startswith("2")]:
                del responses[status]
            responses.update(copy.deepcopy(success))
        self.body(method, path, operation)
        operation.setdefault("parameters", []).extend(copy.deepcopy(HEADERS.get((method, path),
                                                                              [])))
        errors = set(ERRORS.get((method, path), ()))
        errors |= {int(s) for s in responses if s[0] in "45"}
        if method == "post" and path.startswith("/v1/"):  # forms: bodies, sizes, rate limit
            errors |= {400, 413, 415, 429}
        if (method, path) not in REDIS_FREE:
            errors.add(503)
        if path.startswith("/v1/") and path not in TENANT_FREE and self.keyed:
            errors.add(401)
            operation["security"] = [{"bearer": []}]
        if path == "/metrics":
            self.metrics(operation, errors)
        for status in sorted(errors):
            responses[str(status)] = _problem(status)
        if path == "/readyz":
            responses["503"] = _with_headers(
                _json("Not ready: `reason` says why (Redis unreachable, no live worker)",
                      READINESS_SCHEMA), Retry_After=RETRY_AFTER)
        operation["responses"] = dict(sorted(responses.items()))

    @staticmethod
    def body(method: str, path: str, operation: Operation) -> None:
        """A POST's form is required; links from what it creates; a working example."""
        request_body = operation.get("requestBody")
        if request_body is not None:
            request_body["required"] = True
            example = BODY_EXAMPLES.get((method, path))
            for media in request_body.get("content", {}).values():
                if example is not None:
                    media["example"] = example
        for status, response in operation["responses"].items():
            if status in ("200", "201", "202") and (method, path) in LINKS:
                response["links"] = copy.deepcopy(LINKS[(method, path)])

    def metrics(self, operation: Operation, errors: set[int]) -> None:
        """``/metrics``: the operator key when one is set; 403 with tenants and no key."""
        if self.metrics_key:
            errors.discard(403)
            operation["security"] = [{"bearer": []}, {"operatorKey": []}]
        elif self.keyed:
            errors.discard(401)
            operation["responses"].pop("200", None)
        else:
            errors -= {401, 403}


def init_app(app: APIFlask) -> None:
    app.spec_processor(SpecExtras(app))
