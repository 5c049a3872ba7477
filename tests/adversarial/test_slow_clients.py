"""Slow and silent clients: a request body that stalls or drips is answered 408, and closed.

Hypercorn itself never times out a request body, so without the gateway's clock a client
that sends headers and a Content-Length, then nothing, holds its connection for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from recording import body_of, start_edge, status_of
from resources import open_fds

pytestmark = pytest.mark.e2e

QUICK = {"body_idle_timeout": "300ms", "body_min_rate": 2000}


def post_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: edge.test", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


async def answer_of(reader: asyncio.StreamReader, within: float = 5) -> bytes:
    """Everything the gateway sends until it closes the connection (bounded in time)."""
    chunks = []
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("path", "framing", "first"),
    [
        ("/v1/kitchen", "Content-Length: 100", b'{"stringValue": '),
        ("/v1/kitchen", "Transfer-Encoding: chunked", b'5\r\n{"a":\r\n'),
        ("/v1/sum", "Transfer-Encoding: chunked", b'b\r\n{"value":1}\r\n'),  # a client stream
        ("/api/x", "Content-Length: 100", b"0123456789"),  # proxied
    ],
)
async def test_a_stalled_body_is_answered_408_and_closed(
    path: str, framing: str, first: bytes
) -> None:
    async with start_edge(server=QUICK) as edge:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
        writer.write(post_head(path, framing) + first)
        await writer.drain()
        answer = await answer_of(reader)  # ends: the gateway closed the connection
        writer.close()
    assert status_of(answer) == 408, answer
    status = json.loads(body_of(answer))
    assert status["code"] == 4
    assert "stalled" in status["message"]
    if not path.startswith("/api"):
        unary = [m for m, _ in edge.kitchen.received if not m.endswith("/Sum")]
        assert unary == []  # a unary call is never started on half a body


async def test_a_dripping_body_is_answered_408() -> None:
    async with start_edge(server=QUICK) as edge:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
        writer.write(post_head("/v1/kitchen", "Content-Length: 10000"))
        answered = asyncio.create_task(answer_of(reader))
        with contextlib.suppress(ConnectionError):
            while not answered.done():
                writer.write(b" ")  # one byte every 50 ms: never idle, always too slow
                await writer.drain()
                await asyncio.sleep(0.05)
        answer = await answered
        writer.close()
    assert status_of(answer) == 408
    assert "slower than 2000 bytes/s" in json.loads(body_of(answer))["message"]
    assert edge.kitchen.received == []


async def test_a_body_sent_at_a_steady_pace_is_served() -> None:
    async with start_edge(server=QUICK) as edge:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
        body = b'{"stringValue": "' + b"x" * 3000 + b'"}'
        writer.write(post_head("/v1/kitchen", f"Content-Length: {len(body)}", "Connection: close"))
        for start in range(0, len(body), 1000):  # pauses under the idle timeout, fast enough
            writer.write(body[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0.1)
        answer = await answer_of(reader)
        writer.close()
    assert status_of(answer) == 200


async def test_a_flood_of_silent_bodies_leaves_nothing_open() -> None:
    async with start_edge(server=QUICK) as edge:
        baseline = open_fds()
        connections = [
            await asyncio.open_connection("127.0.0.1", edge.gateway.port) for _ in range(200)
        ]
        for _, writer in connections:
            writer.write(post_head("/v1/kitchen", "Content-Length: 1000"))
        answers = await asyncio.gather(*(answer_of(reader, 10) for reader, _ in connections))
        for _, writer in connections:
            writer.close()
        deadline = time.monotonic() + 5
        while open_fds() > baseline + 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert open_fds() <= baseline + 5  # both ends of every socket are gone again
    assert {status_of(answer) for answer in answers} == {408}
