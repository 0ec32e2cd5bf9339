"""The HTTP client under :class:`service.client.Client`: HTTP/1.1 over the standard library's
``http.client``, with a pool of kept-alive connections, retries of transient answers, and
multipart bodies.

It replaced ``requests``, whose import took 0.17-0.19 s of the 0.3 s a ``convscope`` command
spent before its first request on the 2-vCPU VMs (``python -c "import requests"`` against
``python -c pass``, medians of 10 starts; ``http.client`` with ``ssl`` took 0.04 s). Every
``convscope batch`` waits that long before its first job exists.

What it does as ``requests`` did for this client: proxies and CA certificates from the
environment (``service.http_env``), retries after ``Retry-After`` or a jittered exponential
backoff, and an idle kept-alive connection the server closed is replaced without counting a
retry. Failures to connect, or to read an answer, raise :class:`TransportError`, an
``OSError`` (``connect`` says which); so does an answer that should be JSON and is not.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from service.http_env import proxy_auth, proxy_for, tls_context

TRANSIENT = (429, 502, 503, 504)
USER_AGENT = "convscope-client/0.1"
# A kept-alive connection the server closed while it sat idle fails like this on its next
# request, before any answer: sent again on a new connection, not counted as a retry.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
         ConnectionAbortedError)

Fields = Mapping[str, Any] | None
# (field name, (file name or None for a plain field, bytes / str / a binary file))
Files = Sequence[tuple[str, tuple[str | None, Any]]] | Mapping[str, tuple[str | None, Any]] | None


class TransportError(OSError):
    """No answer: the connection was refused, reset or timed out (after the retries), or
    the answer could not be read. ``connect``: no connection was made."""

    def __init__(self, message: str, connect: bool = False) -> None:
        super().__init__(message)
        self.connect = connect


class _NotConnected(Exception):
    """A connection could not be made (``__cause__`` says why)."""


@dataclass(frozen=True)
class Retry:
    """How transient failures are retried: ``total`` retries in all, of which at most
    ``connect`` for a connection not made and ``read`` for an answer not read, and at most
    ``status`` for an answer in :data:`TRANSIENT`. The wait is the answer's ``Retry-After``
    when it sends one, else none before the first retry and ``backoff_factor · 2^(n-1)`` plus
    up to ``backoff_jitter`` s before the n-th, at most ``backoff_max``."""

    total: int = 4
    connect: int = 5
    read: int = 2
    status: int = 4
    backoff_factor: float = 0.5
    backoff_max: float = 10.0
    backoff_jitter: float = 0.5

    def backoff(self, consecutive: int) -> float:
        if consecutive <= 1:
            return 0.0
        wait = min(self.backoff_max, self.backoff_factor * 2 ** (consecutive - 1))
        return min(self.backoff_max, wait + random.uniform(0, self.backoff_jitter))


class Body:
    """A streamed answer's body, read as a file (``read``, ``readline``); it knows whether it
    was read to its end (``http.client`` closes the answer there), so a connection is kept
    only then. ``close()`` gives it up."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw, self.ended = raw, False

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        self.ended = self.ended or self._raw.isclosed()
        return data

    def readline(self) -> bytes:
        line = self._raw.readline()
        self.ended = self.ended or self._raw.isclosed()
        return line

    def close(self) -> None:
        self._raw.close()


class Response:
    """An answer: ``status_code``, ``headers`` (case-insensitive ``get``), and the body as
    ``content`` / ``text`` / ``json()``, or (for a streamed request) read from ``raw`` or by
    ``iter_lines()``. Use it as a context manager, or ``close()`` it, when streamed."""

    def __init__(self, method: str, url: str, answer: http.client.HTTPResponse,
                 release: Callable[[bool], None], stream: bool) -> None:
        self.method, self.url, self.raw = method, url, Body(answer)
        self.status_code, self.headers = answer.status, answer.headers
        self._release: Callable[[bool], None] | None = release
        self._content: bytes | None = None
        if not stream:
            self._read_all()

    def _read_all(self) -> bytes:
        if self._content is None:
            try:
                content = self.raw.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"the answer from {self.url} was cut: {exc}") from exc
            self._content = content
            self.close()
        return self._content

    @property
    def content(self) -> bytes:
        return self._read_all()

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; :class:`TransportError` when it is not (a proxy's error page)."""
        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise TransportError(f"the answer from {self.url} ({self.status_code}) is not "
                                 f"JSON: {self.text[:120]!r}") from exc

    def iter_lines(self) -> Iterator[bytes]:
        """The body's lines, without their ends, as they arrive."""
        while line := self.raw.readline():
            yield line.rstrip(b"\r\n")

    def close(self) -> None:
        """Give the connection back to the pool when the body was read to its end, else
        close it."""
        if self._release is not None:
            release, self._release = self._release, None
            release(self.raw.ended)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def multipart(data: Fields, files: Files) -> tuple[bytes, str]:
    """``(body, content type)`` of a ``multipart/form-data`` body: ``data``'s fields, then
    ``files`` (``(name, (filename, content))``; a ``None`` filename makes a plain field)."""
    boundary = uuid.uuid4().hex
    entries: list[tuple[str, tuple[str | None, Any]]] = [
        (name, (None, value)) for name, value in (data or {}).items()]
    entries += list(files.items() if isinstance(files, Mapping) else files or [])
    parts: list[bytes] = []
    for name, (filename, content) in entries:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
        if filename is not None:
            head += f'; filename="{_quoted(filename)}"\r\nContent-Type: application/octet-stream'
        if hasattr(content, "read"):
            content = content.read()
        body = content.encode() if isinstance(content, str) else bytes(content)
        parts.append(head.encode() + b"\r\n\r\n" + body + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _quoted(value: str) -> str:
    """A name in a ``Content-Disposition`` header, escaped as browsers do (HTML5). A file
    name that is not UTF-8 (its bytes kept by Python as surrogates) is sent with U+FFFD for
    each byte UTF-8 cannot carry."""
    text = os.fsencode(value).decode("utf-8", "replace") if isinstance(value, str) else \
        str(value)
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D") \
        .replace("\n", "%0A")


class Session:
    """Requests to one server (``base_url``), over a pool of kept-alive connections shared
    by threads; every answer is passed to each of ``hooks`` as it arrives."""

    def __init__(self, base_url: str, timeout: float = 120.0, retry: Retry | None = None,
                 pool_size: int = 32, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        self.scheme, self.host = parts.scheme, parts.hostname or ""
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout, self.retry = timeout, retry if retry is not None else Retry()
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self.hooks: list[Callable[[Response], None]] = []
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(pool_size)
        try:
            self._proxy = proxy_for(self.scheme, self.host, self.port)
        except ValueError as exc:  # a proxy this client cannot speak to
            raise TransportError(str(exc), connect=True) from exc
        self._tls: Any = None  # https: the ssl.SSLContext, made with the first connection
        if self._proxy and self.scheme == "http":
            self.headers.update(proxy_auth(self._proxy))

    def _connect(self) -> http.client.HTTPConnection:
        target = urlsplit(self._proxy) if self._proxy else None
        host = target.hostname if target and target.hostname else self.host
        port = (target.port or 80) if target else self.port
        if self.scheme != "https":
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        if self._tls is None:  # made once: loading a CA bundle takes milliseconds
            self._tls = tls_context()
        conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls)
        if target:
            conn.set_tunnel(self.host, self.port, headers=proxy_auth(self._proxy))
        return conn

    def close(self) -> None:
        """Close the kept-alive connections (those lent out close when given back)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was kept alive from an earlier request."""
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            return self._connect(), False

    def _give_back(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable:
            try:
                self._idle.put_nowait(conn)
                return
            except queue.Full:
                pass
        conn.close()

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self.prefix + quote(path, safe="/:@!$&'()*+,;=-._~%")
        if params:
            target += "?" + urlencode({k: _param(v) for k, v in params.items()})
        if self._proxy and self.scheme == "http":  # a plain proxy takes the whole URL
            target = f"http://{self.host}:{self.port}{target}"
        return target

    def _send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One exchange, up to the answer's head; a kept-alive connection found closed by
        the server is replaced once."""
        conn, reused = self._take()
        while True:
            try:
                if conn.sock is None:
                    try:
                        conn.connect()
                    except OSError as exc:
                        raise _NotConnected() from exc
                conn.request(method, target, body=body, headers=headers)
                return conn, conn.getresponse()
            except STALE:
                conn.close()
                if not reused:
                    raise
                conn, reused = self._connect(), False
            except BaseException:
                conn.close()
                raise

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                data: Fields = None, files: Files = None,
                headers: Mapping[str, str] | None = None, stream: bool = False) -> Response:
        """``method`` ``path`` (under the base URL), with ``params`` as the query and
        ``data`` / ``files`` as a multipart body; retried as :attr:`retry` says."""
        sent = {**self.headers, **(headers or {})}
        body = None
        if data is not None or files is not None:
            body, sent["Content-Type"] = multipart(data, files)
        target, url = self._target(path, params), self.prefix + path
        counts = {"connect": 0, "read": 0, "status": 0}
        while True:
            try:
                conn, raw = self._send(method, target, body, sent)
            except _NotConnected as failed:
                self._count(counts, "connect", failed.__cause__ or failed, url)
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._count(counts, "read", exc, url)
                continue
            response = Response(method, url, raw, self._releaser(conn, raw), stream)
            if response.status_code in TRANSIENT and self._retries_left(counts, "status"):
                response.close()  # read already, or (streamed) its connection closed
                counts["status"] += 1
                time.sleep(self._wait(response, counts))
                continue
            for hook in self.hooks:
                hook(response)
            return response

    def _releaser(self, conn: http.client.HTTPConnection,
                  raw: http.client.HTTPResponse) -> Callable[[bool], None]:
        def release(read_to_end: bool) -> None:
            self._give_back(conn, read_to_end and not raw.will_close)
        return release

    def _retries_left(self, counts: dict[str, int], kind: str) -> bool:
        limit = {"connect": self.retry.connect, "read": self.retry.read,
                 "status": self.retry.status}[kind]
        return sum(counts.values()) < self.retry.total and counts[kind] < limit

    def _count(self, counts: dict[str, int], kind: str, exc: BaseException, url: str) -> None:
        """Count a failed exchange as a retry of ``kind``, and wait; or raise when none is
        left."""
        if not self._retries_left(counts, kind):
            raise TransportError(f"{type(exc).__name__} for {url}: {exc}",
                                 connect=kind == "connect") from exc
        counts[kind] += 1
        time.sleep(self.retry.backoff(sum(counts.values())))

    def _wait(self, response: Response, counts: dict[str, int]) -> float:
        after = retry_after(response.headers.get("Retry-After"))
        return after if after is not None else self.retry.backoff(sum(counts.values()))


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (None without one, or for an HTTP date, which
    convscope does not send)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _param(value: Any) -> str:
    """A query value as ``requests`` wrote it (``True`` as ``True``, numbers with ``str``)."""
    return value if isinstance(value, str) else str(value)
