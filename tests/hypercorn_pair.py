"""One app served twice in one process: by stock Hypercorn, and with edge's classes.

edge replaces parts of Hypercorn on its hot paths (``edge.ingress.h11_exchange``,
``ws_exchange``, ``keep_alive``); each replacement is held to the library by serving the
same app both ways and sending both servers the same raw bytes. Each connection gets its
classes by the port it came in on, so one loop serves both flavours side by side.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hypercorn.asyncio.run
import hypercorn.protocol
import pytest
from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from listening import loopback_hypercorn
from loop_thread import LoopThread, running

from edge.ingress.h11_continue import GuardedH11Protocol
from edge.ingress.keep_alive import EdgeTCPServer


class HypercornPair(LoopThread):
    """Two Hypercorn servers of ``app`` on one loop in a thread: stock, and edge's."""

    def __init__(self, app: Any, configure: Callable[[Config], None] | None = None) -> None:
        super().__init__()
        self.app = app
        self.configure = configure
        self.ports: dict[str, int] = {}

    async def serve(self, stop: asyncio.Event) -> None:
        tasks = []
        for name in ("stock", "edge"):
            config, self.ports[name] = loopback_hypercorn()
            config.keep_alive_timeout = 3
            if self.configure is not None:
                self.configure(config)
            tasks.append(asyncio.create_task(serve(self.app, config, shutdown_trigger=stop.wait)))
        await asyncio.sleep(0.2)
        self.ready.set()
        await asyncio.gather(*tasks)

    def edge_port(self, port: int) -> bool:
        return port == self.ports.get("edge")


_PAIRS: list[HypercornPair] = []  # the pairs serving now


def serve_pair(
    app: Any,
    configure: Callable[[Config], None] | None = None,
    patches: Sequence[tuple[Any, str, Any]] = (),
) -> Iterator[HypercornPair]:
    """A fixture's body: the pair serving ``app``, with ``patches`` (``setattr`` triples)
    in place meanwhile."""
    harness = HypercornPair(app, configure)
    _PAIRS.append(harness)

    def flavour(port: int) -> bool:
        # every pair alive answers (one module may hold two); a port that is none of
        # theirs would mean the wrong address was read, and the test would compare edge
        # with itself (or stock with stock)
        for pair in _PAIRS:
            if port in pair.ports.values():
                return pair.edge_port(port)
        raise AssertionError(f"port {port} is not a server's")

    def protocol(*args: Any) -> Any:
        # ProtocolWrapper passes (app, config, context, task_group, state, ssl, client,
        # server, send): the server's address says which flavour this connection gets
        return (GuardedH11Protocol if flavour(args[7][1]) else H11Protocol)(*args)

    def tcp_server(*args: Any) -> Any:
        port = args[6].get_extra_info("sockname")[1]  # the writer's local address
        return (EdgeTCPServer if flavour(port) else TCPServer)(*args)

    with pytest.MonkeyPatch.context() as patch:
        for target, name, value in patches:
            patch.setattr(target, name, value)
        patch.setattr(hypercorn.protocol, "H11Protocol", protocol)
        patch.setattr(hypercorn.asyncio.run, "TCPServer", tcp_server)
        try:
            yield from running(harness)
        finally:
            _PAIRS.remove(harness)


def exchange(
    port: int,
    pieces: list[bytes],
    timeout: float = 5.0,
    quiet: float | None = None,
    pause: float = 0.002,
) -> bytes:
    """Send ``pieces`` (pausing between them) and read until the server closes (or, with
    ``quiet``, until it has said nothing for that long: a server that leaves a refused
    WebSocket handshake's connection open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=quiet or timeout) as sock:
        send_pieces(sock, pieces, pause)
        return read_answer(sock, timeout)


def send_pieces(sock: socket.socket, pieces: list[bytes], pause: float) -> None:
    """Send ``pieces``, ``pause`` seconds apart, until the server closes."""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:  # the server closed first (an error answer): read what it said
            return
        time.sleep(pause)


def read_answer(sock: socket.socket, seconds: float) -> bytes:
    """What the server says until it closes, a read times out (the socket's timeout:
    a quiet server), or ``seconds`` have passed."""
    received = b""
    deadline = time.monotonic() + seconds
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
    """The bytes but for the ``date`` header's value."""
    return _DATE.sub(b"\r\ndate: -", raw)
