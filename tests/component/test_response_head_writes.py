"""HTTP/1.1 responses: a unary reply is one write, and a head whose body is late is not held.

The gateway's HTTP/1.1 protocol (edge.ingress.h11_continue) keeps a response's head back
for the body's write, saving a system call per reply; these hold the two sides of that:
the saving happens, and a stream's client still gets its headers before any body exists.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypercorn.asyncio import serve
from listening import loopback_hypercorn, wait_listening

from edge.ingress import h11_continue

BODY = b'{"reply":"in the same write as its head"}'


class App:
    """An ASGI app that answers at once, or sends its head and waits to be told to go on."""

    def __init__(self) -> None:
        self.go_on = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["path"] == "/late":
            await self.go_on.wait()  # the test reads the head before letting the body go
        await send({"type": "http.response.body", "body": BODY})


@contextlib.asynccontextmanager
async def served(app: App) -> AsyncIterator[int]:
    h11_continue.install()
    config, port = loopback_hypercorn()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        await wait_listening(port, task)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def ask(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_a_unary_reply_is_written_once(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    original = asyncio.StreamWriter.write

    def counting(self: asyncio.StreamWriter, data: bytes) -> None:
        writes.append(bytes(data))
        original(self, data)

    app = App()
    async with served(app) as port:
        monkeypatch.setattr(asyncio.StreamWriter, "write", counting)
        reader, writer = await ask(port, "/now")
        answer = await asyncio.wait_for(reader.readuntil(BODY), 5)
        writer.close()
        monkeypatch.undo()
    assert answer.startswith(b"HTTP/1.1 200")
    server_writes = [w for w in writes if w.startswith(b"HTTP/1.1") or BODY in w]
    assert len(server_writes) == 1, server_writes  # head and body went out together
    assert server_writes[0].startswith(b"HTTP/1.1 200") and server_writes[0].endswith(BODY)


async def test_a_head_whose_body_is_late_reaches_the_client_first() -> None:
    app = App()
    async with served(app) as port:
        reader, writer = await ask(port, "/late")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # held: times out
        assert head.startswith(b"HTTP/1.1 200")
        app.go_on.set()
        rest = await asyncio.wait_for(reader.readuntil(BODY), 5)
        assert rest.endswith(BODY)
        writer.close()
