"""edge's WebSocket stream answers byte for byte as Hypercorn's own does, and pings alike.

``edge.ingress.ws_exchange.EdgeWSStream`` replaces the queue, the task-group wrappers
and the ping task of Hypercorn's ``WSStream`` for every HTTP/1.1 upgrade. Held to the
library as the HTTP/1.1 exchange is (``tests/hypercorn_pair.py``): one app served by
stock Hypercorn and with edge's classes, both sent the same raw bytes (handshakes good
and bad, with and without subprotocols and permessage-deflate, after a plain request on
the same connection; then text and binary messages, fragmented, pings, bad frames,
messages over the size limit, closes, all split at random points), by apps that accept,
refuse, answer the handshake with a response of their own, raise, or return. The bytes
back (but for ``date``) and what the app saw must be the same. Pings are off there
(Hypercorn's default): the worker's one ping timer is tested on its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn_pair import (
    HypercornPair,
    comparable,
    exchange,
    read_answer,
    send_pieces,
    serve_pair,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection

from edge.ingress import h11_continue, ws_exchange
from edge.ingress.ws_exchange import EdgeWSStream

SEEN: dict[tuple[int, str], list[Any]] = {}  # (server port, socket id): what the app saw
EXTENSIONS: dict[int, list[str]] = {}  # server port: the scope's extensions


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echo each message; the path picks how the handshake goes."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
        return
    if scope["type"] != "websocket":
        return
    query = scope["query_string"].decode()
    seen = SEEN.setdefault((scope["server"][1], query), [])
    seen.append(["scope", scope["path"], scope["subprotocols"], scope["http_version"]])
    seen.append(await receive())
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-body":
        start = {"type": "websocket.http.response.start", "status": 401, "headers": []}
        await send({**start, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"!"})
        return
    if path == "/extensions":  # what the connection offers the app, recorded by itself
        EXTENSIONS[scope["server"][1]] = sorted(scope["extensions"])
        await send({"type": "websocket.close"})
        return
    if path == "/raise":
        raise RuntimeError("before the accept")
    if path == "/silent":
        return
    offered = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[-1] if offered else None,
            "headers": [(b"x-accepted", b"yes")],
        }
    )
    if path == "/raise-after":
        raise RuntimeError("after the accept")
    if path == "/return-after":
        return
    while True:
        message = await receive()
        seen.append(message)
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close-me":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
        elif text is not None:
            await send({"type": "websocket.send", "text": text.upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


class CountingStream(EdgeWSStream):
    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountingStream.made += 1


def _configure(config: Config) -> None:
    config.websocket_max_message_size = 2000


@pytest.fixture(scope="module")
def servers() -> Iterator[HypercornPair]:
    yield from serve_pair(app, _configure, patches=[(h11_continue, "EdgeWSStream", CountingStream)])


# -- the client's bytes ------------------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = b"k3y!") -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients, unless ``mask`` is None)."""
    size = len(payload)
    if size < 126:
        length = bytes([size])
    elif size < 65536:
        length = bytes([126]) + size.to_bytes(2, "big")
    else:
        length = bytes([127]) + size.to_bytes(8, "big")
    first = bytes([(0x80 if fin else 0) | opcode])
    if mask is None:
        return first + length + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first + bytes([length[0] | 0x80]) + length[1:] + mask + masked


def close_frame(code: int = 1000, reason: bytes = b"") -> bytes:
    return frame(8, code.to_bytes(2, "big") + reason)


def upgrade(
    path: str,
    tag: str,
    subprotocols: list[str],
    deflate: bool,
    key: str | None = "dGhlIHNhbXBsZSBub25jZQ==",
    version: str = "13",
) -> bytes:
    lines = [
        f"GET {path}?{tag} HTTP/1.1",
        "Host: example.test",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """One thing a client sends after the handshake."""
    kind = draw(
        st.sampled_from(
            ["text"] * 4 + ["binary"] * 3 + ["ping", "close-me", "bad utf-8", "unmasked", "big"]
        )
    )
    if kind == "text":
        text = draw(st.text(max_size=300)).encode()
        parts = draw(st.integers(1, 3))
        step = max(1, len(text) // parts)
        pieces = [text[i : i + step] for i in range(0, len(text), step)] or [b""]
        return b"".join(
            frame(1 if i == 0 else 0, piece, fin=i == len(pieces) - 1)
            for i, piece in enumerate(pieces)
        )
    if kind == "binary":
        return frame(2, draw(st.binary(max_size=1500)))
    if kind == "ping":
        return frame(9, draw(st.binary(max_size=20)))
    if kind == "close-me":
        return frame(1, b"close-me")
    if kind == "bad utf-8":
        return frame(1, b"\xff\xfe")
    if kind == "unmasked":
        return frame(2, b"plain", mask=None)
    return frame(2, os.urandom(16) * 160)  # 2560 bytes: over the 2000 allowed


@st.composite
def conversations(draw: st.DrawFn) -> tuple[str, list[bytes], bytes]:
    tag = f"s{draw(st.integers(0, 10**9))}"
    path = draw(
        st.sampled_from(
            ["/echo"] * 6
            + ["/deny", "/deny-body", "/raise", "/silent", "/raise-after"]
            + ["/return-after"]
        )
    )
    subprotocols = draw(st.lists(st.sampled_from(["a.v1", "b.v2"]), max_size=2, unique=True))
    handshake = draw(st.sampled_from(["good"] * 6 + ["no key", "old version"]))
    head = upgrade(
        path,
        tag,
        subprotocols,
        draw(st.booleans()),
        key=None if handshake == "no key" else "dGhlIHNhbXBsZSBub25jZQ==",
        version="12" if handshake == "old version" else "13",
    )
    before = b"GET /plain HTTP/1.1\r\nHost: example.test\r\n\r\n" if draw(st.booleans()) else b""
    # a client waits for the handshake's answer before it sends frames (RFC 6455 4.1)
    wire = b"".join(draw(st.lists(messages(), max_size=5)))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=3, unique=True)))
    frames = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if a < b]
    # the Close once the server has answered the rest: sent with them, it would race the
    # app's echoes (in either server, however fast its app)
    return tag, [before + head, *frames], close_frame(draw(st.sampled_from([1000, 4000])), b"bye")


def _seen(port: int, tag: str) -> list[Any] | None:
    """What the app saw of one socket, once it has stopped changing."""
    last, same = -1, 0
    while same < 5:
        time.sleep(0.02)
        now = len(SEEN.get((port, tag), ()))
        same = same + 1 if now == last else 0
        last = now
    return SEEN.pop((port, tag), None)


def converse(port: int, pieces: list[bytes], closing: bytes) -> bytes:
    """Send ``pieces`` 20 ms apart, then ``closing`` once the server has been quiet for
    0.15 s; return everything the server said."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.15) as sock:
        send_pieces(sock, pieces, 0.02)
        received = read_answer(sock, 5)
        with contextlib.suppress(OSError):
            sock.sendall(closing)
        return received + read_answer(sock, 5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=conversations())
def test_edge_answers_websockets_as_hypercorn_does(
    servers: HypercornPair, conversation: tuple[str, list[bytes], bytes]
) -> None:
    tag, pieces, closing = conversation
    made = CountingStream.made
    stock = converse(servers.ports["stock"], pieces, closing)
    ours = converse(servers.ports["edge"], pieces, closing)
    assert stock, "stock Hypercorn answered nothing"
    assert comparable(ours) == comparable(stock)
    assert _seen(servers.ports["edge"], tag) == _seen(servers.ports["stock"], tag)
    if b"HTTP/1.1 101" in stock:
        assert CountingStream.made > made  # edge's answer came from its own stream


# -- pings -------------------------------------------------------------------------------


def _read_frames(sock: socket.socket, seconds: float) -> list[tuple[int, bytes]]:
    """Server frames (unmasked) read for ``seconds``: (opcode, payload)."""
    sock.settimeout(0.05)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    frames, pos = [], 0
    while pos + 2 <= len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        frames.append((opcode, data[pos + 2 : pos + 2 + size]))  # small frames only
        pos += 2 + size
    return frames


def _open(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(upgrade("/echo", "ping", [], False))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


@pytest.fixture(scope="module")
def pinging() -> Iterator[HypercornPair]:
    def every_fifth_of_a_second(config: Config) -> None:
        config.websocket_ping_interval = 0.2

    yield from serve_pair(app, every_fifth_of_a_second)


def test_sockets_are_pinged_at_the_accept_and_then_every_interval(pinging: HypercornPair) -> None:
    for flavour in ("stock", "edge"):
        with _open(pinging.ports[flavour]) as first, _open(pinging.ports[flavour]) as second:
            for sock in (first, second):
                pings = [f for f in _read_frames(sock, 1.0) if f[0] == 9]
                # the accept's, then one per 0.2 s (the first read began at most 1 s late)
                assert 4 <= len(pings) <= 12, (flavour, len(pings))
            first.sendall(close_frame())
            second.sendall(close_frame())


def test_a_closed_socket_leaves_the_worker_pinger(pinging: HypercornPair) -> None:
    with _open(pinging.ports["edge"]) as sock:
        sock.sendall(close_frame())
        assert (8, (1000).to_bytes(2, "big")) in _read_frames(sock, 0.3)
    time.sleep(0.3)
    pingers = list(ws_exchange._PINGERS.values())
    assert pingers and all(not stream.closed for p in pingers for stream in p.streams)


def test_an_idle_socket_holds_two_tasks_not_three(pinging: HypercornPair) -> None:
    """The connection's reader and the app's task; no ping loop (Hypercorn's third)."""

    async def tasks() -> int:
        return len(asyncio.all_tasks())

    counts = {}
    for flavour in ("stock", "edge"):
        before = pinging.run(tasks())
        sockets = [_open(pinging.ports[flavour]) for _ in range(5)]
        time.sleep(0.1)
        counts[flavour] = pinging.run(tasks()) - before
        for sock in sockets:
            sock.close()
        time.sleep(0.3)
    assert counts == {"stock": 15, "edge": 10}


def test_a_finished_socket_is_freed_without_the_cycle_collector(servers: HypercornPair) -> None:
    wire = [upgrade("/echo", "freed", [], False), frame(1, b"hi") + close_frame()]
    exchange(servers.ports["edge"], wire, 1.0, quiet=0.3, pause=0.02)
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            exchange(servers.ports["edge"], wire, 1.0, quiet=0.3, pause=0.02)
        time.sleep(0.2)
        alive = sum(1 for o in gc.get_objects() if isinstance(o, EdgeWSStream))
    finally:
        gc.enable()
        SEEN.clear()
    assert alive <= 1, alive


def test_the_accept_is_byte_for_byte_rfc_6455s_example(servers: HypercornPair) -> None:
    """The key from RFC 6455 section 1.3 gets its accept token."""
    with socket.create_connection(("127.0.0.1", servers.ports["edge"]), timeout=5) as sock:
        sock.sendall(upgrade("/echo", "rfc", [], False))
        head = sock.recv(65536)
        sock.sendall(close_frame())
    expected = base64.b64encode(bytes.fromhex("b37a4f2cc0624f1690f64606cf385945b2bec4ea"))
    assert b"\r\nsec-websocket-accept: " + expected + b"\r\n" in head
    SEEN.clear()


def test_a_socket_has_the_connections_doors_to_cut_off_a_stalled_client(
    servers: HypercornPair,
) -> None:
    """``edge.abort`` and ``edge.progress``: without them a client that stops reading
    is never cut off (``timed_send`` in ``edge.ingress.asgi``), and its socket's task
    waits forever on its close."""
    exchange(servers.ports["edge"], [upgrade("/extensions", "ext", [], False)], 1.0, quiet=0.3)
    assert {"edge.abort", "edge.progress"} <= set(EXTENSIONS[servers.ports["edge"]])


async def test_every_putter_waiting_for_room_gets_its_turn() -> None:
    """The inbox is full and two wait to put (the connection's reader, and a send that
    failed and reports the disconnect): each gets in, in turn, as asyncio.Queue's do."""
    config = Config()
    config.max_app_queue_size = 1
    stream = EdgeWSStream(
        app, lambda data: None, {}, app, config, None, None, False, None, None, None, 1
    )
    await stream._put({"type": "websocket.receive", "text": "1"})
    first = asyncio.create_task(stream._put({"type": "websocket.receive", "text": "2"}))
    await asyncio.sleep(0)
    second = asyncio.create_task(stream._put({"type": "websocket.disconnect", "code": 1006}))
    await asyncio.sleep(0)
    received = [await stream._receive() for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert [m.get("text", m["type"]) for m in received] == ["1", "2", "websocket.disconnect"]
    assert (await stream._receive())["type"] == "websocket.disconnect"  # and again


def test_a_refused_handshake_is_freed_without_the_cycle_collector(servers: HypercornPair) -> None:
    wire = [upgrade("/echo", "refused", [], False, key=None)]  # 400: no app ever runs
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            exchange(servers.ports["edge"], wire, 1.0, quiet=0.2)
        time.sleep(0.2)
        alive = sum(1 for o in gc.get_objects() if isinstance(o, EdgeWSStream))
    finally:
        gc.enable()
    assert alive <= 1, alive


async def test_the_pinger_pings_in_batches_and_past_a_failing_socket() -> None:
    class Socket:
        def __init__(self, fails: bool = False) -> None:
            self.closed, self.fails, self.pings = False, fails, 0

        def ping(self) -> None:
            self.pings += 1
            if self.fails:
                raise OSError("gone")

    pinger = ws_exchange._Pinger(60.0)
    sockets = [Socket(fails=i == 3) for i in range(600)]
    closed = Socket()
    closed.closed = True
    pinger.streams.update([*sockets, closed])  # type: ignore[list-item]
    pinger.tick()
    first_batch = sum(s.pings for s in sockets)
    assert 0 < first_batch < 600  # the loop runs between batches
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(s.pings == 1 for s in sockets) and closed.pings == 0
    assert closed not in pinger.streams and pinger.timer is not None
    pinger.timer.cancel()


async def test_nothing_is_written_for_the_app_once_the_client_has_gone() -> None:
    """A client that drops its connection without a Close leaves the socket CONNECTED to
    wsproto: messages the app still sends are dropped, as WSStream drops them, not framed
    and written to a closed transport."""
    written: list[bytes] = []
    sent: list[object] = []

    async def send_raw(data: bytes) -> None:
        written.append(data)

    async def stream_send(event: object) -> None:
        sent.append(event)

    config = Config()
    ours = EdgeWSStream(
        app, lambda data: None, {}, app, config, None, None, False, None, None, stream_send, 1,
        send_raw=send_raw,
    )  # fmt: skip
    stock = WSStream(app, config, None, None, False, None, None, stream_send, 1)
    for stream in (ours, stock):
        stream.connection = Connection(ConnectionType.SERVER)
        stream.state = ASGIWebsocketState.CONNECTED
        await stream.app_send({"type": "websocket.send", "text": "open"})
        stream.closed = True  # as the server's Closed event leaves it
        await stream.app_send({"type": "websocket.send", "text": "after"})
    assert written == [b"\x81\x04open"]  # ours, straight to the connection
    assert [getattr(event, "data", None) for event in sent] == [b"\x81\x04open"]  # stock's
