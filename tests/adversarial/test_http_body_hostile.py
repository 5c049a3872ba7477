"""Hostile HttpBody replies and trailer requests: an upstream's content type that tries to
inject headers, an upstream's error text naming addresses, a client asking HTTP/1.1 for
trailers it cannot have, and a client that stops reading a download."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Gateway, make_config, run_gateway
from h2_trailers import h2_get
from http_body_upstream import BodyUpstream, body_upstream, piece, write_body_protos

pytestmark = pytest.mark.e2e

INJECTION = "text/html\r\nset-cookie: session=stolen"


@pytest.fixture
async def body(tmp_path: Path) -> AsyncIterator[tuple[Gateway, BodyUpstream]]:
    async with body_upstream() as (port, upstream):
        config = make_config(
            port,
            protos=write_body_protos(tmp_path),
            extra={
                "server": {"send_timeout": "1s"},
                # the stream's own deadline far away: only the stall can end it in time
                "methods": {"edgetest.body.v1.BodyService.Pieces": {"timeout": "120s"}},
            },
        )
        async with run_gateway(config) as gateway:
            yield gateway, upstream


async def test_a_content_type_with_a_line_break_injects_nothing(
    body: tuple[Gateway, BodyUpstream],
) -> None:
    gateway, _ = body
    async with gateway.client() as client:
        unary = await client.get(f"/v1/body/x?size=3&contentType={quote(INJECTION)}")
        streamed = await client.get(f"/v1/pieces/x?count=2&size=3&contentType={quote(INJECTION)}")
    for response in (unary, streamed):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert "set-cookie" not in response.headers
    assert unary.content == piece(0, 3)
    assert streamed.content == piece(0, 3) + piece(1, 3)


async def test_a_non_ascii_content_type_is_octet_stream_over_http2(
    body: tuple[Gateway, BodyUpstream],
) -> None:
    gateway, _ = body
    path = f"/v1/pieces/x?count=1&size=3&contentType={quote('text/plain; name=naïve')}"
    answer = await h2_get(gateway.port, path, [("te", "trailers")])
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.trailers is not None and answer.trailers["grpc-status"] == "0"


async def test_trailers_carry_no_addresses(body: tuple[Gateway, BodyUpstream]) -> None:
    gateway, _ = body
    message = quote("failed to connect to 10.0.0.7:50051")
    path = f"/v1/pieces/x?count=3&size=3&failCode=14&failAfter=1&failMessage={message}"
    answer = await h2_get(gateway.port, path, [("te", "trailers")])
    assert answer.trailers is not None
    assert answer.trailers["grpc-status"] == "14"
    assert "10.0.0.7" not in answer.trailers["grpc-message"]
    assert b"10.0.0.7" not in answer.body


async def test_te_trailers_over_http1_still_cuts_a_failed_download(
    body: tuple[Gateway, BodyUpstream],
) -> None:
    """HTTP/1.1 cannot carry them here: a client asking must not get a clean end instead."""
    gateway, _ = body
    path = "/v1/pieces/x?count=5&size=100&failCode=13&failAfter=1"
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nte: trailers\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)  # until the gateway closes
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert piece(0, 100) in rest
    assert not rest.endswith(b"0\r\n\r\n")  # no last chunk: the client knows it is cut


async def test_a_client_that_stops_reading_a_download_is_let_go(
    body: tuple[Gateway, BodyUpstream],
) -> None:
    """Bounded: send_timeout ends the download and cancels the upstream call."""
    gateway, upstream = body
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.sendall(b"GET /v1/pieces/x?count=100000&size=20000 HTTP/1.1\r\nhost: x\r\n\r\n")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10  # send_timeout is 1 s
        await asyncio.sleep(0.5)
        assert upstream.running == 1  # flowing, then stalled
        while upstream.running:
            assert loop.time() < deadline, "the download outlived its stalled client"
            await asyncio.sleep(0.1)
    finally:
        sock.close()
    assert upstream.sent < 100_000
