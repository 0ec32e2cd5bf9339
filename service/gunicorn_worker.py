"""The API's gunicorn worker: gevent's, with a response whose head and body leave in one write.

gunicorn sends a response's status line and headers with one ``sendall`` and its body with
another. On loopback each is a trip through the kernel's TCP stack for both ends, and under
16 clients sending single-image jobs those two writes were a fifth of the API's CPU. A body
that is given whole (a JSON answer: one bytes object of the declared ``Content-Length``)
now goes out with its head; anything else (streams, chunked bodies, files, HEAD) is written
as gunicorn writes it. And the answers gunicorn gives itself, to requests it cannot parse,
are problem+json (:func:`write_problem`).
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.ggevent import GeventWorker


class OneWriteResponse(wsgi.Response):
    def write(self, arg: Any) -> None:
        sent, headers_sent = vars(self)["sent"], vars(self)["headers_sent"]  # untyped there
        whole = (not headers_sent and not self.chunked and isinstance(arg, bytes)
                 and not getattr(self, "_omits_body", True) and sent == 0
                 and self.response_length == len(arg))
        if not whole:
            super().write(arg)
            return
        lines = self.default_headers() + [f"{k}: {v}\r\n" for k, v in self.headers]
        head = util.to_bytestring("".join(lines) + "\r\n", "latin-1")
        util.write(self.sock, head + arg)
        self.headers_sent = True
        self.sent = len(arg)


def write_problem(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's own error answers (a request it cannot parse: headers over its 8 KiB per
    field, a bad request line or chunk) as problem+json like every other error, not its HTML
    page. It closes the connection after them, and says so."""
    from service.errors import DEFAULT_CODES, PROBLEM, PROBLEM_TYPE  # the worker's, not
    # the master's: gunicorn's master imports this module too

    code = DEFAULT_CODES.get(status, "bad_request" if status < 500 else "not_implemented"
                             if status == 501 else "internal_error")
    body = json.dumps({"type": PROBLEM_TYPE + code, "title": reason, "status": status,
                       "detail": message or reason, "code": code}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class OneWriteGeventWorker(GeventWorker):
    def init_process(self) -> None:
        wsgi.Response = OneWriteResponse  # the class wsgi.create() makes, in this process
        util.write_error = write_problem  # what Worker.handle_error calls, in this process
        super().init_process()
