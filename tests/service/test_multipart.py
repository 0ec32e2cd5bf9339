"""The one-pass form parser (service/multipart.py) against Werkzeug's own, body by body:
the same fields, files, headers and errors, whether it splits the body itself or hands it on."""

from __future__ import annotations

import io

import pytest
import requests
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from service import multipart
from service.multipart import FastFormDataParser, split_form

B = "xYzBoundary42"


def _body(*parts: str | bytes, preamble: bytes = b"", close: bool = True) -> bytes:
    out = preamble
    for part in parts:
        out += f"--{B}\r\n".encode() + (part.encode() if isinstance(part, str) else part) + \
            b"\r\n"
    return out + (f"--{B}--\r\n".encode() if close else b"")


def _parse(parser_class: type[FormDataParser], body: bytes, **limits: int) -> tuple:
    parser = parser_class(**limits)
    _, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                  {"boundary": B})
    return (list(form.items(multi=True)),
            [(k, f.filename, f.name, f.content_type, dict(f.headers), f.read())
             for k, f in files.items(multi=True)])


def _requests_body(data: dict, files: dict) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x/", data=data, files=files).prepare()
    return prepared.body, prepared.headers["Content-Type"].split("boundary=")[1]


BODIES = {
    "fields and a file": _body(
        'Content-Disposition: form-data; name="model"\r\n\r\nshapes',
        'Content-Disposition: form-data; name="options"\r\n\r\n{"steps": 8}',
        b'Content-Disposition: form-data; name="image"; filename="a b.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n--not-a-boundary\r\n\x00\xff"),
    "a UTF-8 file name and field": _body(
        'Content-Disposition: form-data; name="name"\r\n\r\nété ★',
        'Content-Disposition: form-data; name="image"; filename="étoile.png"\r\n'
        "Content-Type: image/png\r\n\r\nPNG"),
    "a latin-1 field": _body(
        b'Content-Disposition: form-data; name="n"\r\nContent-Type: text/plain; '
        b"charset=iso-8859-1\r\n\r\n\xe9t\xe9"),
    "an empty field, a repeated one, an empty file": _body(
        'Content-Disposition: form-data; name="layer"\r\n\r\n',
        'Content-Disposition: form-data; name="image"; filename="1.png"\r\n\r\none',
        'Content-Disposition: form-data; name="image"; filename=""\r\n\r\n'),
    "a preamble": _body('Content-Disposition: form-data; name="a"\r\n\r\n1',
                        preamble=b"ignore me\r\n"),
    "a folded header": _body('Content-Disposition: form-data;\r\n name="a"\r\n\r\n1'),
    "no parts": f"--{B}--\r\n".encode(),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_every_body_parses_as_werkzeug_parses_it(name: str) -> None:
    body = BODIES[name]
    assert _parse(FastFormDataParser, body) == _parse(FormDataParser, body)


def test_bodies_made_by_requests_are_split_here() -> None:
    body, boundary = _requests_body({"model": "shapes", "kind": "gradcam"},
                                    {"image": ("i.png", b"\x89PNG" + b"\r\n" * 50)})
    parts = split_form(body, boundary.encode(), None, None)
    assert parts is not None
    assert [(n, d, f) for n, _, d, f in parts] == [
        ("model", b"shapes", None), ("kind", b"gradcam", None),
        ("image", b"\x89PNG" + b"\r\n" * 50, "i.png")]


def test_what_this_parser_is_unsure_of_goes_to_werkzeug(monkeypatch) -> None:
    handed_on = []
    original = FormDataParser._parse_multipart

    def spy(self, stream, *args):  # noqa: ANN001, ANN202
        handed_on.append(stream.read())
        stream.seek(0)
        return original(self, stream, *args)

    monkeypatch.setattr(FormDataParser, "_parse_multipart", spy)
    for name in ("a preamble", "a folded header"):
        _parse(FastFormDataParser, BODIES[name])
    _parse(FastFormDataParser, BODIES["fields and a file"])
    assert handed_on == [BODIES["a preamble"], BODIES["a folded header"]]
    assert multipart.split_form(BODIES["fields and a file"], B.encode(), None, None)


def test_limits_and_broken_bodies_end_as_in_werkzeug() -> None:
    many = _body(*[f'Content-Disposition: form-data; name="f{i}"\r\n\r\nv' for i in range(5)])
    big = _body('Content-Disposition: form-data; name="f"\r\n\r\n' + "x" * 100)
    for body, limits in ((many, {"max_form_parts": 3}), (big, {"max_form_memory_size": 50})):
        for parser in (FormDataParser, FastFormDataParser):
            with pytest.raises(RequestEntityTooLarge):
                _parse(parser, body, **limits)
    unclosed = _body('Content-Disposition: form-data; name="a"\r\n\r\n1', close=False)
    nameless = _body("Content-Type: text/plain\r\n\r\n1")
    for body in (unclosed, nameless):  # Werkzeug's parser is silent: an empty form
        assert split_form(body, B.encode(), None, None) is None
        assert _parse(FastFormDataParser, body) == _parse(FormDataParser, body) == ([], [])


def test_a_part_header_that_is_not_utf8_is_a_bad_request() -> None:
    """Both parsers dropped the whole form for it (Werkzeug's silently), so the API answered
    that every field was missing; now the body is a bad request that says why."""
    from apiflask import HTTPError

    filename = (b'Content-Disposition: form-data; name="image"; filename="\xff\xfe.png"\r\n'
                b"\r\npixels")
    field_name = b'Content-Disposition: form-data; name="mo\xffdel"\r\n\r\nshapes'
    model = b'Content-Disposition: form-data; name="model"\r\n\r\nshapes'
    for part in (filename, field_name):
        assert _parse(FormDataParser, _body(model, part)) == ([], [])  # Werkzeug: silent
        for preamble in (b"", b"preamble\r\n"):  # with one, the body goes to Werkzeug's parser
            with pytest.raises(HTTPError) as refused:
                _parse(FastFormDataParser, _body(model, part, preamble=preamble))
            assert refused.value.status_code == 400
            assert "not UTF-8 (byte 0xff)" in refused.value.detail
