"""The API's gunicorn worker: gevent's, with a response whose head and body leave in one write.

gunicorn sends a response's status line and headers with one ``sendall`` and its body with
another. On loopback each is a trip through the kernel's TCP stack for both ends, and under
16 clients sending single-image jobs those two writes were a fifth of the API's CPU. A body
that is given whole (a JSON answer: one bytes object of the declared ``Content-Length``)
now goes out with its head; anything else (streams, chunked bodies, files, HEAD) is written
as gunicorn writes it.
"""

from __future__ import annotations

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


class OneWriteGeventWorker(GeventWorker):
    def init_process(self) -> None:
        wsgi.Response = OneWriteResponse  # the class wsgi.create() makes, in this process
        super().init_process()
