"""HTTP/1.1 over a plain socket, for the tests that need what a client library hides: one
keep-alive connection reused after an error, the ``Connection`` header, a closed socket,
request lines and multipart parts no client would build."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

BOUNDARY = "convscope-test-boundary"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def multipart(parts: list[tuple[str, bytes]]) -> bytes:
    """A multipart body from ``(Content-Disposition value, content)`` pairs."""
    out = b""
    for disposition, content in parts:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                + content + b"\r\n")
    return out + f"--{BOUNDARY}--\r\n".encode()


def field(name: str, value: str | bytes) -> tuple[str, bytes]:
    return f'form-data; name="{name}"', value.encode() if isinstance(value, str) else value


class Connection:
    """One keep-alive connection to ``url``."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
             declared_length: int | None = None) -> None:
        """Send a request; ``declared_length`` claims another Content-Length than sent."""
        lines = [f"{method} {path} HTTP/1.1", "Host: test"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or declared_length is not None:
            length = len(body) if declared_length is None else declared_length
            lines.append(f"Content-Length: {length}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def post_form(self, path: str, parts: list[tuple[str, bytes]],
                  headers: dict | None = None) -> Answer:
        content_type = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        self.send("POST", path, multipart(parts), {**content_type, **(headers or {})})
        return self.read()

    def get(self, path: str, headers: dict | None = None) -> Answer:
        self.send("GET", path, headers=headers)
        return self.read()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def read(self) -> Answer:
        """One answer (with a Content-Length body; the tests' answers all have one)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self, wait: float = 5.0) -> bool:
        """Whether the server closes its side within ``wait`` seconds (nothing else may come)."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
