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
import gc
import hashlib
import json
import socket
import time
import types
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypercorn.asyncio import serve
from hypercorn_pair import HypercornPair, comparable, exchange, serve_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from listening import loopback_hypercorn

from edge.ingress import h11_continue
from edge.ingress.asgi import call_unless_disconnected
from edge.ingress.h2_resets import EdgeHypercornConfig
from edge.ingress.h11_exchange import H11Exchange

OUTCOMES: dict[tuple[int, str], Any] = {}  # (server port, path): what the app saw


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echo what the request looked like; the path picks how the app misbehaves."""
    if scope["type"] != "http":
        return
    if scope["path"] in _WATCHING:
        await _WATCHING[scope["path"]](scope, receive, send)
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
    if path == "/late-body":  # the head alone first (written at the end of the turn)
        await asyncio.sleep(0.01)
    if path == "/raise-after":
        raise RuntimeError("after the head")
    step = max(1, len(echo) // chunks)
    parts = [echo[i : i + step] for i in range(0, len(echo), step)] or [b""]
    for index, part in enumerate(parts):
        await send(
            {"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1}
        )


async def _unread(scope: Any, receive: Any, send: Any) -> None:
    """A unary call that waits on its upstream without reading the request body."""

    async def upstream(call: Any) -> str:
        await asyncio.sleep(3)
        return "reply"

    answered = await call_unless_disconnected(upstream, None, receive, None, scope)
    OUTCOMES[scope["server"][1], scope["path"]] = "ran" if answered else "cancelled"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


async def _two_readers(scope: Any, receive: Any, send: Any) -> None:
    """Two tasks in ``receive`` at once (a watcher and a body reader, say)."""
    seen: dict[str, list[str]] = {"a": [], "b": []}

    async def read(tag: str) -> None:
        while True:
            message = await receive()
            seen[tag].append(message["type"])
            if message["type"] == "http.disconnect":
                return

    readers = [asyncio.create_task(read("a")), asyncio.create_task(read("b"))]
    _, stranded = await asyncio.wait(readers, timeout=2)
    for reader in stranded:
        reader.cancel()
    OUTCOMES[scope["server"][1], scope["path"]] = (seen, len(stranded))


_WATCHING = {"/unread": _unread, "/two-readers": _two_readers}


class CountingExchange(H11Exchange):
    """The exchange, counted: proof that the edge server really took the exchange path."""

    __slots__ = ()
    made = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        CountingExchange.made += 1


@pytest.fixture(scope="module")
def servers() -> Iterator[HypercornPair]:
    yield from serve_pair(app, patches=[(h11_continue, "H11Exchange", CountingExchange)])


_PATHS = ["/echo", "/a%20b/c", "/silent", "/raise", "/raise-after", "/x/%2Fy", "/late-body"]


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
    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))  # 1.0: no keep-alive
    if version == "1.0" and framing == "chunked":
        headers = [h for h in headers if not h.startswith("Transfer-Encoding")]
        headers.append(f"Content-Length: {len(body)}")
        encoded = body
    head = f"{method} {path}?{query} HTTP/{version}\r\n" + "\r\n".join(headers) + "\r\n\r\n"
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
def test_edge_answers_as_hypercorn_does(servers: HypercornPair, pieces: list[bytes]) -> None:
    made = CountingExchange.made
    stock = exchange(servers.ports["stock"], pieces)
    ours = exchange(servers.ports["edge"], pieces)
    assert stock, "stock Hypercorn answered nothing"
    assert comparable(ours) == comparable(stock)
    assert CountingExchange.made > made  # edge's answer came from an exchange


def test_malformed_requests_get_hypercorns_answer(servers: HypercornPair) -> None:
    for wire in [
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\n bad fold\r\n\r\n",
        # a good chunk, then a chunk extension too long, in one read: h11's own status (431)
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3;"
        + b"a" * 20000,
    ]:
        assert comparable(exchange(servers.ports["edge"], [wire], 1.0)) == comparable(
            exchange(servers.ports["stock"], [wire], 1.0)
        ), wire


def test_upgrades_to_http2_get_hypercorns_answer(servers: HypercornPair) -> None:
    """edge skips Hypercorn's check for an h2c upgrade and the HTTP/2 preface when the
    head has no Upgrade field and the method is not PRI; with either, the check is made."""
    settings_field = b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    for wire in [
        b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        + b"Upgrade: h2c\r\n"
        + settings_field
        + b"\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: H2C\r\n\r\n",
        # with a body, Hypercorn answers in HTTP/1.1
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        + b"Content-Length: 2\r\n\r\nhi",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]:
        stock = _opening(exchange(servers.ports["stock"], [wire], 1.0))
        assert stock, wire
        assert _opening(exchange(servers.ports["edge"], [wire], 1.0)) == stock, wire


def _opening(answer: bytes) -> bytes:
    """An answer up to where HTTP/2 begins and the header of its first frame (the rest is
    HPACK, whose encoded Date differs), or the whole of an HTTP/1.1 answer."""
    if answer.startswith(b"HTTP/1.1 101 "):
        end = answer.index(b"\r\n\r\n") + 4
        return comparable(answer[:end]) + answer[end : end + 9]
    return comparable(answer) if answer.startswith(b"HTTP/") else answer[:9]


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(servers: HypercornPair) -> None:
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
    assert 2.5 < waited < 9  # keep_alive_timeout is 3 s


def test_a_request_ends_the_idle_period(servers: HypercornPair) -> None:
    with socket.create_connection(("127.0.0.1", servers.ports["edge"]), timeout=10) as sock:
        for _ in range(4):  # 4 x 1.2 s: longer than one timeout, never idle for one
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
    config, port = loopback_hypercorn(graceful_timeout=30)
    config.keep_alive_timeout = 60
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


def _outcome(port: int, path: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (port, path) in OUTCOMES:
            return OUTCOMES.pop((port, path))
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("flavour", ["stock", "edge"])
def test_a_client_that_leaves_with_its_body_unread_cancels_the_call(
    servers: HypercornPair, flavour: str
) -> None:
    """More body chunks than the app's queue holds, none read: the connection must go on
    reading (and dropping them) to see the client leave, and cancel the upstream call."""
    port = servers.ports[flavour]
    chunks = b"".join(b"1\r\nx\r\n" for _ in range(15))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /unread HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
        )
        time.sleep(0.3)
    assert _outcome(port, "/unread", 2.5) == "cancelled"


def test_every_reader_hears_the_disconnect(servers: HypercornPair) -> None:
    port = servers.ports["edge"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /two-readers HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.1)
        sock.sendall(b"12345")
        time.sleep(0.1)
    seen, stranded = _outcome(port, "/two-readers", 4)
    assert stranded == 0
    assert seen["a"][-1] == seen["b"][-1] == "http.disconnect"
    assert sorted(seen["a"] + seen["b"]).count("http.request") == 1


def test_a_finished_exchange_is_freed_without_the_cycle_collector(servers: HypercornPair) -> None:
    """Under ``edge serve`` the heap is frozen and full collections are rare: an exchange
    that only the cyclic collector could free would pile up."""
    request = b"GET /echo?length=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", servers.ports["edge"]), timeout=5) as sock:
        sock.sendall(request)
        sock.recv(65536)
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                sock.sendall(request)
                sock.recv(65536)
            time.sleep(0.2)
            alive = sum(1 for o in gc.get_objects() if isinstance(o, H11Exchange))
        finally:
            gc.enable()
    assert alive <= 1  # at most the one in progress


def test_server_headers_are_made_once_a_second_and_handed_out_as_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_000_000.2]
    clock = types.SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic)
    monkeypatch.setattr("edge.ingress.h2_resets.time", clock)  # the cache's second
    monkeypatch.setattr("hypercorn.config.time", clock.time)  # the date Hypercorn formats
    config = EdgeHypercornConfig()
    first = config.response_headers("h11")
    first.append((b"x-mine", b"1"))  # a caller adds its own
    again = config.response_headers("h11")
    assert (b"x-mine", b"1") not in again
    assert dict(again)[b"date"] == dict(first)[b"date"]
    now[0] += 1.0
    later = dict(config.response_headers("h11"))[b"date"]
    assert later != dict(again)[b"date"]
    assert dict(config.response_headers("h2"))[b"server"] == b"hypercorn-h2"
