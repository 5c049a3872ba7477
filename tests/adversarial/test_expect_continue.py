"""``Expect: 100-continue`` on HTTP/1.1 (edge/ingress/h11_continue.py).

A request the gateway refuses from its head alone (413 from ``Content-Length``, 401, 404)
is answered without ``100 Continue``, so the client never sends the body; a request that
is served gets its 100 when the gateway reads the body, and the body goes through. (A path
no route serves falls through to Quart, which reads every body at once: its 404 comes
after the 100; docs/edge-guarantees.md says so.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from recording import Edge, body_of, raw_request, start_edge, status_of

pytestmark = pytest.mark.e2e


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: edge.test", "Expect: 100-continue", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.asynccontextmanager
async def connection(
    edge: Edge,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        return await reader.readuntil(b"\r\n\r\n")


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next final response on the connection: its head and its body."""
    answer_head = await read_head(reader)
    length = 0
    for line in answer_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    async with asyncio.timeout(5):
        return answer_head, await reader.readexactly(length)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/v1/kitchen", ["Content-Length: 100000000"], 413),  # over max_body_bytes
        ("POST", "/api/admin/upload", ["Content-Length: 10"], 401),  # no token
        ("POST", "/api/admin/upload", ["Content-Length: 10", "Authorization: Bearer x.y"], 401),
        ("POST", "/v1/inspect", ["Content-Length: 10"], 401),  # a transcoded route's policy
        ("POST", "/v1/inspect", ["Content-Length: 10", "Authorization: Bearer x.y"], 401),
    ],
)
async def test_a_request_refused_from_its_head_is_answered_without_inviting_the_body(
    method: str, path: str, headers: list[str], status: int
) -> None:
    async with start_edge() as edge, connection(edge) as (reader, writer):
        received = len(edge.kitchen.received)
        writer.write(head(method, path, *headers))
        await writer.drain()
        answer_head, body = await read_answer(reader)  # no body was sent: none was asked for
        assert answer_head.startswith(f"HTTP/1.1 {status} ".encode())
        assert "code" in json.loads(body)
        assert edge.http.requests == []
        assert len(edge.kitchen.received) == received


async def test_a_transcoded_request_gets_its_100_when_the_body_is_read() -> None:
    body = json.dumps({"stringValue": "invited"}).encode()
    async with start_edge() as edge, connection(edge) as (reader, writer):
        for _ in range(2):  # and again on the same connection: each request waits for its own
            writer.write(head("POST", "/v1/kitchen", f"Content-Length: {len(body)}"))
            await writer.drain()
            assert (await read_head(reader)).startswith(b"HTTP/1.1 100 ")
            writer.write(body)
            answer_head, answer = await read_answer(reader)
            assert answer_head.startswith(b"HTTP/1.1 200 ")
            assert json.loads(answer)["stringValue"] == "invited"


async def test_a_proxied_upload_gets_its_100_and_reaches_the_upstream() -> None:
    async with start_edge() as edge, connection(edge) as (reader, writer):
        writer.write(head("POST", "/api/upload", "Content-Length: 5"))
        await writer.drain()
        assert (await read_head(reader)).startswith(b"HTTP/1.1 100 ")
        writer.write(b"hello")
        answer_head, _ = await read_answer(reader)
        assert answer_head.startswith(b"HTTP/1.1 200 ")
        assert edge.http.paths() == ["/api/upload"]


async def test_a_refusal_before_the_body_still_reaches_a_client_that_sends_it_all() -> None:
    # no Expect: the client writes its whole megabyte before reading; the 401 comes first
    body = b'{"stringValue": "' + b"x" * 1_000_000 + b'"}'
    async with start_edge() as edge:
        received = len(edge.kitchen.received)
        answer = await raw_request(
            edge.gateway.port,
            b"POST /v1/inspect HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode(),
            body,
        )
        assert status_of(answer) == 401
        assert json.loads(body_of(answer))["code"] == 16
        assert len(edge.kitchen.received) == received
