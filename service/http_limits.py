"""What the HTTP server would otherwise get wrong at its limits.

* **Unread bodies.** An answer given before the request body was read to its end (a 413 for an
  over-long form field, a 401 or 429 before an upload is read, ...) leaves the rest of the body
  on the connection. gunicorn reads at most 64 KiB of it and otherwise drops the connection,
  after it has told the client ``Connection: keep-alive``. :class:`FinishBody` reads the rest
  itself when it is at most ``limit`` bytes (the next request on the connection then works);
  past that, or when it cannot be read in ``DRAIN_SECONDS``, the answer says
  ``Connection: close`` and the server closes the connection after it.
* **Long request lines.** gunicorn runs with ``--limit-request-line 0`` (its limit is at most
  8190 bytes, and past it it answers an HTML 414), so the app sees long ids and answers them
  (404 problem+json); :func:`check_uri_length` answers 414 problem+json past ``MAX_URI_BYTES``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import request

from service.errors import fail

log = logging.getLogger("convscope.api")
MAX_URI_BYTES = 64 * 1024
DRAIN_SECONDS = 10.0  # longest a worker thread reads a body nobody asked for
CHUNK = 64 * 1024
StartResponse = Callable[..., Any]


def check_uri_length() -> None:
    """``before_request`` hook: 414 ``uri_too_long`` for a request line past the limit."""
    uri = request.environ.get("RAW_URI") or request.full_path
    if len(uri) > MAX_URI_BYTES:
        fail(414, "uri_too_long", f"the request URI has {len(uri)} bytes; at most "
             f"{MAX_URI_BYTES}")


def _has_body(environ: dict) -> bool:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def _read_rest(stream: Any, limit: int, sock: Any) -> bool:
    """Read ``stream`` to its end: True if it ended within ``limit`` bytes and the time."""
    deadline, seen = time.monotonic() + DRAIN_SECONDS, 0
    while seen <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if sock is not None:
            sock.settimeout(left)
        chunk = stream.read(CHUNK)
        if not chunk:
            return True
        seen += len(chunk)
    return False


class CountedInput:
    """``wsgi.input`` of a body with a ``Content-Length``, read through this: it never reads
    past the body (a development server's input is the bare socket, where reading past it
    waits for the next request), and it knows how much of the body is left."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.left = stream, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        if size and not data:
            self.left = 0  # the client ended the body early: nothing more will come
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.readline(size) if size else b""
        self.left -= len(data)
        return data

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def finish_body(environ: dict, limit: int) -> bool:
    """Whether the request body has been read to its end (reading what is left, up to
    ``limit`` bytes): if not, the connection cannot carry another request."""
    if not _has_body(environ):
        return True
    stream = environ["wsgi.input"]
    if isinstance(stream, CountedInput) and (stream.left == 0 or stream.left > limit):
        return stream.left == 0
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit() and int(length) > limit:
        return False
    sock = environ.get("gunicorn.socket")
    before = sock.gettimeout() if sock is not None else None
    try:
        return _read_rest(environ["wsgi.input"], limit, sock)
    except Exception as exc:  # the client went away or sent a broken body
        log.debug("request body not read to its end: %s", exc)
        return False
    finally:
        if sock is not None:
            try:
                sock.settimeout(before)
            except OSError:
                pass


class FinishBody:
    """WSGI middleware: before an answer starts, finish reading the request body, or mark
    the answer ``Connection: close`` (see the module docstring)."""

    def __init__(self, app: Callable[[dict, StartResponse], Iterable[bytes]],
                 limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and "wsgi.input" in environ:
            environ["wsgi.input"] = CountedInput(environ["wsgi.input"], int(length))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not finish_body(environ, self.limit):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
                # gunicorn drops hop-by-hop headers an app sets: its own answer object (the
                # owner of start_response) is told to close the connection instead.
                force_close = getattr(getattr(start_response, "__self__", None),
                                      "force_close", None)
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
