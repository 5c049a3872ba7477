"""The lean HTTP/1.1 exchange answers byte for byte as Hypercorn's own stream does.

``edge.ingress.h11_exchange`` replaces Hypercorn's ``HTTPStream`` (and its task group's
queue, the protocol's event dispatch and the server's write lock) for every plain HTTP/1.1
request, and ``edge.ingress.keep_alive`` its idle task. Being a fast path in place of a
library, it is held to the library: the same app is served twice in one process, once by
stock Hypercorn and once with edge's classes, and hypothesis sends both the same raw
bytes (pipelined requests, Content-Length and chunked bodies, split at random points,
HEAD, 204 and 304, apps that return without answering, raise before or after their
head). The responses must be identical but for the ``date`` header's value.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import hypercorn.asyncio.run
import hypercorn.protocol
import pytest
from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h11 import H11Protocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.ingress.h11_continue import GuardedH11Protocol
from edge.ingress.keep_alive import EdgeTCPServer


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echo what the request looked like; the path picks how the app misbehaves."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path == "/raise":
        raise RuntimeError("before the head")
    if path == "/silent":
        return
    echo = json.dumps(
        {
            "method": scope["method"],
            "path": path,
            "raw_path": scope["raw_path"].decode("latin1"),
            "query": scope["query_string"].decode("latin1"),
            "version": scope["http_version"],
            "scheme": scope["scheme"],
            "headers": [[k.decode("latin1"), v.decode("latin1")] for k, v in scope["headers"]],
            "body": len(body),
            "sha": hashlib.sha256(body).hexdigest()[:16],
        }
    ).encode()
    chunks = int(query.get("chunks", "1"))
    headers = [(b"content-type", b"application/json"), (b"x-echo", b"  padded  ")]
    if query.get("length") == "1":
        headers.append((b"content-length", str(len(echo)).encode()))
    await send(
        {
            "type": "http.response.start",
            "status": int(query.get("status", "200")),
            "headers": headers,
        }
    )
    if path == "/raise-after":
        raise RuntimeError("after the head")
    step = max(1, len(echo) // chunks)
    parts = [echo[i : i + step] for i in range(0, len(echo), step)] or [b""]
    for index, part in enumerate(parts):
        await send(
            {"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1}
        )


class _Servers:
    """Two Hypercorn servers of ``app`` on one loop in a thread: stock, and edge's."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks = []
        for name in ("stock", "edge"):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.ports[name] = int(sock.getsockname()[1])
            config = HypercornConfig()
            config.bind = [f"fd://{sock.detach()}"]
            config.errorlog = None
            config.accesslog = None
            config.graceful_timeout = 1
            config.keep_alive_timeout = 2
            tasks.append(asyncio.create_task(serve(app, config, shutdown_trigger=self._stop.wait)))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        self._ready.set()
        await asyncio.gather(*tasks)

    def edge_port(self, port: int) -> bool:
        return port == self.ports.get("edge")

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        stop = self._stop
        assert stop is not None
        self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[_Servers]:
    running = _Servers()

    # One process, both flavours: each connection gets its classes by the port it came in on.
    built: set[str] = set()

    def protocol(*args: Any) -> Any:
        # ProtocolWrapper passes (app, config, context, task_group, state, ssl, client,
        # server, send): the server's address says which flavour this connection gets
        cls = GuardedH11Protocol if running.edge_port(args[7][1]) else H11Protocol
        built.add(cls.__name__)
        return cls(*args)

    def tcp_server(*args: Any) -> Any:
        writer = args[6]
        cls = (
            EdgeTCPServer if running.edge_port(writer.get_extra_info("sockname")[1]) else TCPServer
        )
        built.add(cls.__name__)
        return cls(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hypercorn.protocol, "H11Protocol", protocol)
        patch.setattr(hypercorn.asyncio.run, "TCPServer", tcp_server)
        running.start()
        try:
            yield running
        finally:
            running.stop()
    # both flavours really served (a mix-up would compare edge with itself)
    assert built >= {"H11Protocol", "GuardedH11Protocol", "TCPServer", "EdgeTCPServer"}


def exchange(port: int, pieces: list[bytes], timeout: float = 5.0) -> bytes:
    """Send ``pieces`` (pausing between them) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # the server closed first (an error answer): read what it said
                break
            time.sleep(0.002)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            received += data
        return received


_DATE = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)


def comparable(raw: bytes) -> bytes:
    return _DATE.sub(b"\r\ndate: -", raw)


_PATHS = ["/echo", "/a%20b/c", "/silent", "/raise", "/raise-after", "/x/%2Fy"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE"]))
    path = draw(st.sampled_from(_PATHS))
    query = "&".join(
        [
            f"status={draw(st.sampled_from([200, 201, 204, 304, 404, 500]))}",
            f"chunks={draw(st.integers(1, 4))}",
            f"length={draw(st.sampled_from([0, 1]))}",
        ]
    )
    body = draw(st.binary(max_size=3000))
    headers = ["Host: example.test", f"X-Custom: {draw(st.sampled_from(['a', ' b ', 'c,d']))}"]
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if framing == "none" or (not body and framing == "chunked"):
        body = b""
    if framing == "length" and (body or method in {"POST", "PUT"}):
        headers.append(f"Content-Length: {len(body)}")
        encoded = body
    elif framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        cut = draw(st.integers(0, len(body)))
        encoded = (
            b"".join(
                f"{len(part):x}\r\n".encode() + part + b"\r\n"
                for part in (body[:cut], body[cut:])
                if part
            )
            + b"0\r\n\r\n"
        )
    else:
        encoded = b""
    head = f"{method} {path}?{query} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return head.encode() + encoded


@st.composite
def conversations(draw: st.DrawFn) -> list[bytes]:
    """Pipelined requests, the last asking to close, the bytes split at random points."""
    wire = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    wire += b"GET /echo?status=200 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    cuts = sorted(draw(st.lists(st.integers(1, len(wire) - 1), max_size=3, unique=True)))
    return [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=conversations())
def test_edge_answers_as_hypercorn_does(servers: _Servers, pieces: list[bytes]) -> None:
    stock = exchange(servers.ports["stock"], pieces)
    ours = exchange(servers.ports["edge"], pieces)
    assert stock, "stock Hypercorn answered nothing"
    assert comparable(ours) == comparable(stock)


def test_malformed_requests_get_hypercorns_answer(servers: _Servers) -> None:
    for wire in [
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\n bad fold\r\n\r\n",
    ]:
        assert comparable(exchange(servers.ports["edge"], [wire], 1.0)) == comparable(
            exchange(servers.ports["stock"], [wire], 1.0)
        ), wire


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(servers: _Servers) -> None:
    with socket.create_connection(("127.0.0.1", servers.ports["edge"]), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        start = time.monotonic()
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        waited = time.monotonic() - start
    assert received.startswith(b"HTTP/1.1 200")
    assert 1.5 < waited < 6  # keep_alive_timeout is 2 s


def test_a_request_ends_the_idle_period(servers: _Servers) -> None:
    with socket.create_connection(("127.0.0.1", servers.ports["edge"]), timeout=10) as sock:
        for _ in range(3):  # 3 x 1.2 s: longer than one timeout, never idle for one
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(1.2)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


async def test_shutdown_closes_idle_connections_at_once() -> None:
    """A worker that stops closes its idle keep-alive connections then, not at their timeout."""
    from edge.ingress import h11_continue, keep_alive

    h11_continue.install()
    keep_alive.install()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.errorlog = None
    config.accesslog = None
    config.keep_alive_timeout = 60
    config.graceful_timeout = 30
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 5  # not graceful_timeout's 30 s
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(reader.read(), 5)  # the rest of the body, then the close
    assert reader.at_eof()
    writer.close()
