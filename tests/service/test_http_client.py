"""The client's HTTP transport (``service.http_client``) against servers on 127.0.0.1: a
werkzeug app for what a server parses (multipart, query, proxies), and a scripted socket
server for connections (kept alive, closed while idle, cut answers, retries)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, request
from werkzeug.serving import WSGIRequestHandler, make_server

from service.client import ApiError, Client
from service.http_client import Retry, Session, TransportError
from service.http_env import proxy_for


class Http11(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn answers


@pytest.fixture()
def echo() -> Iterator[tuple[str, list[dict]]]:
    """An app echoing what it parsed, and the client port of each request."""
    app = Flask("echo")
    seen: list[dict] = []

    @app.route("/<path:path>", methods=["GET", "POST", "DELETE"])
    def anything(path: str):
        seen.append({"port": request.environ.get("REMOTE_PORT"), "target": request.full_path})
        files = {k: [(f.filename, f.read().decode("latin-1")) for f in request.files.getlist(k)]
                 for k in request.files}
        return {"path": "/" + path, "args": request.args.to_dict(flat=False),
                "form": request.form.to_dict(flat=False), "files": files,
                "auth": request.headers.get("Authorization"), "method": request.method,
                "uri": request.environ.get("REQUEST_URI"),
                "proxy_auth": request.headers.get("Proxy-Authorization")}

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Http11)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_multipart_fields_files_and_query_arrive_as_sent(echo) -> None:
    url, _ = echo
    session = Session(url + "/base", headers={"Authorization": "Bearer k"})
    body = session.request("POST", "/v1/x", params={"wait": 2.5, "all": True},
                           data={"model": "shapes", "options": '{"a": "é"}'},
                           files=[("image", ('we"ird\nname é.png', b"\x89PNG\0\xff")),
                                  ("image", ("b.png", b"second"))]).json()
    assert body["path"] == "/base/v1/x" and body["method"] == "POST"
    assert body["args"] == {"wait": ["2.5"], "all": ["True"]}
    assert body["form"] == {"model": ["shapes"], "options": ['{"a": "é"}']}
    names = [name for name, _ in body["files"]["image"]]
    assert names[1] == "b.png" and "é.png" in names[0] and "\n" not in names[0]
    assert [data for _, data in body["files"]["image"]] == ["\x89PNG\0\xff", "second"]
    assert body["auth"] == "Bearer k"
    plain = session.request("POST", "/v1/y", files={"path": (None, "/data/set")}).json()
    assert plain["form"] == {"path": ["/data/set"]} and plain["files"] == {}


def test_environment_proxy_and_no_proxy(echo, monkeypatch) -> None:
    url, seen = echo  # the echo app plays the proxy: it answers with the target it was sent
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.test")
    assert proxy_for("http", "api.example.test", 80) == url
    assert proxy_for("http", "localhost", 80) is None
    assert proxy_for("http", "a.internal.test", 80) is None
    assert proxy_for("https", "api.example.test", 443) is None  # no https_proxy set
    body = Session("http://api.example.test:8000").request("GET", "/v1/jobs",
                                                          params={"limit": 5}).json()
    assert body["uri"] == "http://api.example.test:8000/v1/jobs?limit=5"  # absolute form
    assert body["proxy_auth"] is None
    monkeypatch.setenv("HTTP_PROXY", url.replace("http://", "http://me:s%40cret@"))
    body = Session("http://api.example.test:8000").request("GET", "/v1/jobs").json()
    assert body["proxy_auth"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
    monkeypatch.setenv("HTTP_PROXY", url.removeprefix("http://"))  # no scheme: http
    assert Session("http://api.example.test:8000").request("GET", "/x").status_code == 200


class Scripted:
    """A socket server answering each request with the next of ``script``: bytes to send
    (then keep the connection), or a callable given the socket (to close it, cut an answer,
    or say nothing)."""

    def __init__(self, script: list[bytes | Callable[[socket.socket], None]]) -> None:
        self.script, self.connections, self.requests = script, 0, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while self.script:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests += 1
                step = self.script.pop(0)
                if callable(step):
                    step(conn)
                    return
                conn.sendall(step)


def answer(status: int, body: dict, **headers: str) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n" \
           f"Content-Length: {len(data)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + data


def close(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def test_connections_are_kept_alive_and_streams_read_line_by_line() -> None:
    ok = answer(200, {"ok": True})
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n7\r\nline 0\n\r\nE\r\nline 1\r\nline 2\r\n0\r\n\r\n")
    server = Scripted([ok, ok, chunked, ok])
    session = Session(server.url)
    assert [session.request("GET", "/").json() for _ in range(2)] == [{"ok": True}] * 2
    with session.request("GET", "/events", stream=True) as resp:
        assert list(resp.iter_lines()) == [b"line 0", b"line 1", b"line 2"]
    assert session.request("GET", "/").status_code == 200
    assert server.connections == 1 and server.requests == 4


def test_an_idle_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    ok = answer(200, {"ok": True})
    server = Scripted([ok, close, ok])
    session = Session(server.url, retry=Retry(total=0))  # no retry allowed at all
    assert session.request("GET", "/one").json() == {"ok": True}
    assert session.request("POST", "/two", data={"a": "b"}).json() == {"ok": True}
    assert server.connections == 2 and server.requests == 3


def test_a_fresh_connection_closed_without_an_answer_is_a_counted_retry() -> None:
    server = Scripted([close, close, answer(200, {"ok": 1})])
    assert Session(server.url, retry=Retry(total=2, read=2)).request("GET", "/").json() == \
        {"ok": 1}
    server = Scripted([close, close, answer(200, {"ok": 1})])
    with pytest.raises(TransportError):
        Session(server.url, retry=Retry(total=1, read=1)).request("GET", "/")
    assert server.requests == 2


def test_transient_status_waits_for_retry_after_and_is_bounded() -> None:
    busy = answer(503, {"code": "store_unavailable", "detail": "x"}, Retry_After="0")
    server = Scripted([busy, busy, answer(202, {"id": "j"})])
    assert Session(server.url).request("POST", "/v1/jobs", data={}).status_code == 202
    assert server.connections == 1  # the answers were read: the connection stayed usable
    server = Scripted([busy] * 5)
    last = Session(server.url, retry=Retry(total=2)).request("GET", "/")
    assert last.status_code == 503 and server.requests == 3


def test_a_cut_answer_and_a_refused_connection_are_api_errors() -> None:
    def cut(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\"")
        close(conn)

    server = Scripted([cut])
    with pytest.raises(ApiError) as caught:
        Client(server.url, retry=Retry(total=0)).job("j")
    assert caught.value.status == 503 and caught.value.code == "unreachable"
    port = server.listener.getsockname()[1]
    server.listener.close()  # nothing listens there now
    with pytest.raises(ApiError) as caught:
        Client(f"http://127.0.0.1:{port}", retry=Retry(total=1, connect=1)).job("j")
    assert caught.value.code == "unreachable"


def test_a_read_timeout_is_not_taken_for_an_unreachable_server() -> None:
    server = Scripted([lambda conn: conn.recv(1)])  # reads, never answers
    with pytest.raises(TransportError) as caught:  # an OSError, not an ApiError
        Client(server.url, timeout=0.3, retry=Retry(total=0)).job("j")
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_a_connect_timeout_is_an_unreachable_server() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)  # never accepts
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):  # the accept queue full: later connections' SYNs are dropped
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        queued.append(sock)
    try:
        with pytest.raises(ApiError) as caught:
            Client(f"http://127.0.0.1:{port}", timeout=0.3, retry=Retry(total=0)).models()
        assert caught.value.code == "unreachable"
        assert isinstance(caught.value.__cause__, TransportError)
        assert caught.value.__cause__.connect
    finally:
        for sock in queued:
            sock.close()
        listener.close()


def test_a_redirect_is_an_error_naming_the_new_address() -> None:
    moved = b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://api.example.test/v1/jobs" \
            b"\r\nContent-Length: 0\r\n\r\n"
    server = Scripted([moved])
    with pytest.raises(ApiError) as caught:
        Client(server.url).submit(model="shapes", kind="filters")
    assert caught.value.status == 308 and caught.value.code == "redirected"
    assert "https://api.example.test/v1/jobs" in caught.value.detail
    assert server.requests == 1  # not followed: a POST would have lost its body


def test_an_answer_that_is_not_json_is_a_transport_error() -> None:
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\r\n" \
           b"<html>hi</html>"
    server = Scripted([page])
    with pytest.raises(TransportError, match="not JSON"):  # an OSError: callers catch it
        Client(server.url).job("j")


def test_a_stream_given_up_early_does_not_return_its_connection() -> None:
    long = answer(200, {"data": "x" * 5000})
    server = Scripted([long, answer(200, {"ok": 2})])
    session = Session(server.url, retry=Retry(total=0))
    with session.request("GET", "/big", stream=True) as resp:
        assert resp.raw.read(100)
        resp.raw.close()  # as a file reader might: the rest of the body is never read
    assert session.request("GET", "/next").json() == {"ok": 2}
    assert server.connections == 2  # a new connection, not one holding the unread body


def test_no_proxy_networks_ports_and_case(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://upper.test:1")
    monkeypatch.setenv("http_proxy", "lower.test:2")  # lower case wins; no scheme: http
    monkeypatch.setenv("no_proxy", "10.0.0.0/8, api.test:8000, .corp.test")
    assert proxy_for("http", "example.test", 80) == "http://lower.test:2"
    assert proxy_for("http", "10.1.2.3", 8000) is None
    assert proxy_for("http", "11.1.2.3", 8000) == "http://lower.test:2"
    assert proxy_for("http", "api.test", 8000) is None
    assert proxy_for("http", "api.test", 9000) == "http://lower.test:2"
    assert proxy_for("http", "x.corp.test", 80) is None
    assert proxy_for("http", "notcorp.test", 80) == "http://lower.test:2"
    monkeypatch.setenv("http_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(TransportError, match="only http:// proxies"):
        Client("http://example.test:8000")


def _unclosed(action: Callable[[], None]) -> list[str]:
    """The ResourceWarnings of sockets left open by ``action``."""
    import gc
    import warnings

    gc.collect()  # what earlier tests left behind is not counted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        action()
        gc.collect()
    return [str(w.message) for w in caught if "unclosed" in str(w.message)]


def test_ready_closes_its_connection(echo) -> None:
    url, _ = echo
    assert not _unclosed(lambda: [Client(url).ready() for _ in range(3)])
    server = Scripted([answer(200, {"ok": 1})])  # keeps the connection alive
    assert not _unclosed(lambda: Client(server.url).ready())
    server = Scripted([answer(200, {"ok": 1})])
    assert _unclosed(lambda: Session(server.url).request("GET", "/"))  # the check sees one
