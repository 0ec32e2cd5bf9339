"""``multipart/form-data`` bodies parsed in one pass over bytes already in memory.

Werkzeug's parser is built for bodies of any size: it streams, and compiles regular
expressions for each request's boundary. Our bodies are capped (``MAX_CONTENT_LENGTH``), and
under 16 clients sending single-image jobs that parser was about 16 % of the API's CPU, over
half of it compiling patterns. Here a well-formed body is split on its delimiter instead. Any
body this parser is not sure about (a preamble, folded headers, no closing delimiter, more
parts or larger fields than Werkzeug allows) goes to Werkzeug's parser with the same bytes,
so its answers, errors included, stay Werkzeug's.
"""

from __future__ import annotations

import io
from typing import Any

from apiflask import HTTPError
from flask import Request
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.http import parse_options_header

CRLF = b"\r\n"
_CHARSETS = MultiPartParser()  # its get_part_charset: a part's declared charset, or UTF-8


def _headers(block: bytes) -> Headers | None:
    """A part's header lines, as Werkzeug reads them; None for folded (continued) lines."""
    headers = []
    for line in block.split(CRLF):
        if line[:1] in (b" ", b"\t"):
            return None
        line = line.strip(b" \t")
        if line:
            name, _, value = _text(line).partition(":")
            headers.append((name.strip(" \t"), value.strip(" \t")))
    return Headers(headers)


def _text(line: bytes) -> str:
    """A header line as text; one that is not UTF-8 makes the body a bad request (Werkzeug's
    parser, like this one before, dropped the whole form for it: every field then "missing")."""
    try:
        return line.decode()
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from exc


def _not_utf8(exc: UnicodeDecodeError) -> HTTPError:
    """400 ``bad_request`` saying so (a Werkzeug exception's description is not shown)."""
    return HTTPError(400, "Bad request", extra_data={"code": "bad_request"},
                     detail=f"a part's headers are not UTF-8 (byte "
                            f"{exc.object[exc.start]:#04x}); send names and file names as UTF-8")


def split_form(body: bytes, boundary: bytes, max_parts: int | None,
               max_field: int | None) -> list[tuple[str, Headers, bytes, str | None]] | None:
    """``(name, headers, data, filename)`` per part of a well-formed body, or None when the
    body should be left to Werkzeug."""
    dash = b"--" + boundary
    if not boundary or not body.startswith(dash):
        return None
    pieces = body[len(dash):].split(CRLF + dash)
    if not pieces[-1].startswith(b"--") or (max_parts is not None and
                                             len(pieces) - 1 > max_parts):
        return None
    parts = []
    for piece in pieces[:-1]:
        end = piece.find(CRLF + CRLF)
        if not piece.startswith(CRLF) or end < 0:
            return None
        headers = _headers(piece[2:end])
        if headers is None or "content-disposition" not in headers:
            return None
        _, extra = parse_options_header(headers["content-disposition"])
        name, filename, data = extra.get("name"), extra.get("filename"), piece[end + 4:]
        if name is None or (filename is None and max_field is not None and
                            len(data) > max_field):
            return None
        parts.append((name, headers, data, filename))
    return parts


class FastFormDataParser(FormDataParser):
    def _parse_multipart(self, stream: Any, mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        body = stream.read()
        limit = self.max_content_length
        if content_length is None and limit is not None and len(body) >= limit \
                and stream.read(1):  # a chunked body is read up to the limit, not past it
            raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
        boundary = options.get("boundary", "").encode("ascii")
        parts = split_form(body, boundary, self.max_form_parts, self.max_form_memory_size)
        if parts is None:
            try:
                return super()._parse_multipart(io.BytesIO(body), mimetype, content_length,
                                                options)
            except UnicodeDecodeError as exc:  # Werkzeug's parser: the same bad request
                raise _not_utf8(exc) from exc
        fields, files = [], []
        for name, headers, data, filename in parts:
            if filename is None:
                charset = _CHARSETS.get_part_charset(headers)
                fields.append((name, data.decode(charset, "replace")))
            else:
                files.append((name, FileStorage(io.BytesIO(data), filename, name,
                                                headers=headers)))
        return stream, self.cls(fields), self.cls(files)


class FormRequest(Request):
    """Flask's request with :class:`FastFormDataParser` for form bodies."""

    form_data_parser_class = FastFormDataParser
