"""Hostile input the API used to answer with 500 or with gunicorn's HTML: deeply nested or
huge-number ``options``, multipart parts without a name, 10 KB ids, fields given twice; and
what happens to the keep-alive connection after an early 4xx. Against the real gunicorn
(``api_url``: the launcher's command line) over a plain socket, so the ``Connection`` header
and a reused or closed connection are seen as a client sees them."""

from __future__ import annotations

import pytest

from service.options import (
    MAX_INT_DIGITS,
    MAX_OPTIONS_CHARS,
    MAX_OPTIONS_DEPTH,
    OptionError,
    parse_options,
)
from tests.pipeline import worker_env
from tests.service.raw_http import BOUNDARY, Answer, Connection, field, multipart
from worker.settings import Settings

PROBLEM = "application/problem+json"


def assert_problem(answer: Answer, status: int, code: str) -> dict:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == PROBLEM, answer.headers
    body = answer.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["title"] and body["detail"]
    return body


def job_form(options: bytes) -> list[tuple[str, bytes]]:
    return [field("model", "shapes"), field("kind", "filters"), field("layer", "conv2"),
            field("options", options)]


@pytest.mark.parametrize(("options", "fragment"), [
    (b"[" * 30_000 + b"]" * 30_000, f"deeper than {MAX_OPTIONS_DEPTH}"),
    (b'{"filters": [' * 20 + b"0" + b"]}" * 20, f"deeper than {MAX_OPTIONS_DEPTH}"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "5000 digits"),
    (b'{"seed": -' + b"1" * 4400 + b"}", "4401 digits"),
    (b'{"steps": NaN}', "NaN"),
    (b'{"steps": -Infinity}', "Infinity"),
    (b'{"size": 1e999}', "1e999"),
    # an unterminated string of escaped quotes: the nesting scan took 6 s for 32 KB, in the
    # API's event loop (every request of the process waited); 160 KB had gunicorn kill it
    (b'"' + b'\\"' * 30_000, "not valid JSON"),
    (b" " * 70_000 + b"{}", f"{MAX_OPTIONS_CHARS}"),
], ids=["deep_array", "deep_object", "huge_int", "huge_negative_int", "nan", "infinity",
        "overflowing_float", "escaped_quotes", "too_long"])
def test_hostile_options_are_400_on_a_connection_that_lives_on(api_url: str, options: bytes,
                                                               fragment: str) -> None:
    with Connection(api_url) as conn:
        body = assert_problem(conn.post_form("/v1/jobs", job_form(options)), 400,
                              "invalid_options")
        assert fragment in body["detail"]
        assert conn.get("/healthz").status == 200  # the same connection


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/datasets"])
def test_a_chunked_body_over_the_limit_is_413(api_url: str, settings, path: str) -> None:
    """A body without a Content-Length (``Transfer-Encoding: chunked``) is read up to the
    limit: past it, 413, not a form cut at the limit and refused for what it then lacks."""
    limit = Settings.from_env(worker_env(settings)).max_content_length
    body = multipart([field("model", "shapes"), field("kind", "gradcam"),
                      ('form-data; name="image"; filename="i.png"', b"\0" * limit),
                      ('form-data; name="file"; filename="d.zip"', b"PK")])
    with Connection(api_url) as conn:
        conn.send("POST", path, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Transfer-Encoding": "chunked"})
        try:
            for start in range(0, len(body), 2**20):
                piece = body[start:start + 2**20]
                conn.sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the body ended, and closed
        assert_problem(conn.read(), 413, "payload_too_large")


@pytest.mark.parametrize(("path", "parts"), [
    ("/v1/jobs", [("form-data", b"no name"), field("model", "shapes"),
                  field("kind", "filters")]),
    ("/v1/jobs", [('form-data; filename="a.png"', b"no name"), field("kind", "filters")]),
    ("/v1/models", [('form-data; filename="m.keras"', b"PK no name"), field("name", "x")]),
    ("/v1/models", [("attachment", b"no name")]),
], ids=["jobs_field", "jobs_file_missing_model", "models_file", "models_attachment"])
def test_a_part_without_a_name_is_400(api_url: str, path: str, parts: list) -> None:
    with Connection(api_url) as conn:
        body = assert_problem(conn.post_form(path, parts), 400, "bad_request")
        assert "(part without a name)" in body["detail"]
        assert "(part without a name)" in body["errors"]["form"]


@pytest.mark.parametrize("path", [
    "/v1/jobs/" + "a" * 10_000, "/v1/jobs/" + "a" * 10_000 + "/artifacts/grid",
    "/v1/jobs/" + "a" * 10_000 + "/artifacts.tar", "/v1/models/" + "m" * 10_000,
    "/v1/models/" + "m" * 10_000 + "/layers",
])
def test_a_10kb_id_is_a_problem_404(api_url: str, path: str) -> None:
    with Connection(api_url) as conn:
        answer = conn.get(path)
        assert answer.status == 404 and answer.headers["content-type"] == PROBLEM, \
            (answer.status, answer.headers, answer.body[:200])
        assert answer.json()["code"] in ("not_found", "unknown_model")
        assert conn.get("/healthz").status == 200


def test_an_overlong_uri_is_a_problem_414(api_url: str) -> None:
    with Connection(api_url) as conn:
        body = assert_problem(conn.get("/v1/jobs/" + "a" * 70_000), 414, "uri_too_long")
        assert "at most" in body["detail"]


def test_requests_gunicorn_cannot_parse_are_problem_json(api_url: str) -> None:
    """A header past gunicorn's 8 KiB per field (answered by gunicorn before the app sees the
    request) and a chunk size that is not hex (found as the app reads the body): 4xx
    problem+json like any other error, not an HTML page or a 500."""
    with Connection(api_url) as conn:
        body = assert_problem(conn.get("/healthz", headers={"Idempotency-Key": "k" * 9000}),
                              431, "headers_too_large")
        assert "Idempotency-Key" in body["detail"] or "header" in body["detail"].lower()
    with Connection(api_url) as conn:
        conn.send("POST", "/v1/jobs", headers={"Transfer-Encoding": "chunked",
                                               "Content-Type": "multipart/form-data; b=x"})
        conn.sock.sendall(b"zz\r\nabc\r\n0\r\n\r\n")
        assert_problem(conn.read(), 400, "bad_request")


def test_an_oversized_form_field_is_413_and_the_connection_is_kept(api_url: str) -> None:
    """A 2 MB ``options`` passes the body limit but not the form-field limit: the answer
    comes before the body was read, says keep-alive, and the connection really is kept."""
    with Connection(api_url) as conn:
        answer = conn.post_form("/v1/jobs", job_form(b" " * 2 * 2**20))
        assert_problem(answer, 413, "payload_too_large")
        assert answer.headers.get("connection", "keep-alive") == "keep-alive"
        assert conn.get("/healthz").status == 200
        assert conn.get("/healthz").status == 200


def test_a_body_over_the_limit_is_413_with_connection_close(api_url: str, settings) -> None:
    """A declared body larger than the API takes is not read through: the answer says
    ``Connection: close`` and the server closes."""
    limit = Settings.from_env(worker_env(settings)).max_content_length  # the server's
    with Connection(api_url) as conn:
        conn.send("POST", "/v1/jobs", b"--x\r\n" * 200, declared_length=limit + 1,
                  headers={"Content-Type": "multipart/form-data; boundary=x"})
        answer = conn.read()
        assert_problem(answer, 413, "payload_too_large")
        assert answer.headers["connection"] == "close"
        assert conn.closed_by_server()


@pytest.mark.parametrize(("path", "parts"), [
    ("/v1/jobs", [field("model", "shapes"), field("model", "cifar10"),
                  field("kind", "filters")]),
    ("/v1/models", [('form-data; name="file"; filename="m.keras"', b"PK"),
                    field("name", "a"), field("name", "b")]),
], ids=["jobs_model", "models_name"])
def test_a_single_valued_field_given_twice_is_400(api_url: str, path: str, parts) -> None:
    with Connection(api_url) as conn:
        body = assert_problem(conn.post_form(path, parts), 400, "bad_request")
        assert "given 2 times" in body["detail"]


def test_a_query_parameter_given_twice_is_400(api_url: str) -> None:
    with Connection(api_url) as conn:
        body = assert_problem(conn.get("/v1/jobs?limit=1&limit=2"), 400, "bad_request")
        assert "'limit'" in body["detail"]


@pytest.mark.parametrize("raw", [
    '{"method": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # brackets inside strings
    '{"method": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}',
    '{"filters": [0, 1], "seed": ' + "9" * MAX_INT_DIGITS + "}",
    '{"class_index": [[1]], "size": 1.5e3}',
])
def test_options_within_the_limits_parse(raw: str) -> None:
    assert isinstance(parse_options(raw), dict)


def test_the_nesting_scan_agrees_with_the_parsed_depth() -> None:
    """Random JSON with brackets, quotes and backslashes inside its strings: the scan's depth
    equals the depth of what ``json.loads`` makes of it."""
    import json
    import random

    from service.options import _nesting

    def depth(value: object) -> int:
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        return 0

    rng = random.Random(0)

    def make(level: int) -> object:
        roll = rng.random()
        if level > 6 or roll < 0.3:
            return rng.choice(['a[b', 'q"]{', "\\", 'x\\"[', 3, None, "}}", "é]"])
        if roll < 0.65:
            return [make(level + 1) for _ in range(rng.randint(0, 3))]
        return {f'k{i}[\\"': make(level + 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = make(0)
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert _nesting(text) == depth(value), text


def test_nesting_just_past_the_limit_is_refused() -> None:
    parse_options('{"a": ' + "[" * (MAX_OPTIONS_DEPTH - 1) + "]" * (MAX_OPTIONS_DEPTH - 1) + "}")
    with pytest.raises(OptionError, match="deeper"):
        parse_options('{"a": ' + "[" * MAX_OPTIONS_DEPTH + "]" * MAX_OPTIONS_DEPTH + "}")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models"])
def test_a_body_that_is_not_a_form_is_415(api_url: str, path: str) -> None:
    with Connection(api_url) as conn:
        conn.send("POST", path, b'{"model": "shapes", "kind": "filters"}',
                  {"Content-Type": "application/json"})
        body = assert_problem(conn.read(), 415, "unsupported_media_type")
        assert "multipart/form-data" in body["detail"]
        assert conn.get("/healthz").status == 200


def test_a_part_header_that_is_not_utf8_is_400_saying_so(api_url: str) -> None:
    """The form was dropped whole, and the answer said model and kind were missing."""
    body = multipart([field("model", "shapes"), field("kind", "gradcam")])
    body = body[:-len(f"--{BOUNDARY}--\r\n")]  # the closing delimiter goes after the file
    body += (f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition: form-data; name="image"; '
             b'filename="\xff\xfe.png"\r\n\r\nnot a png\r\n' + f"--{BOUNDARY}--\r\n".encode())
    with Connection(api_url) as conn:
        conn.send("POST", "/v1/jobs", body,
                  {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        problem = assert_problem(conn.read(), 400, "bad_request")
        assert "not UTF-8" in problem["detail"] and "Missing data" not in problem["detail"]
        assert conn.get("/healthz").status == 200
