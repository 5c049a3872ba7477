"""Hostile compression: bombs, broken streams, stacked and unknown codings, junk headers.

The rules (docs/compression.md): a compressed body is decoded as it arrives and held to
``transcoding.max_body_bytes`` *decoded*, so a bomb is a 413 after at most one limit's
worth of inflating; a corrupt or truncated stream is a 400; an unknown coding, or more
than ``compression.max_request_codings`` stacked, a 415 naming what is accepted; a
junk ``Accept-Encoding`` costs bounded work and is answered like any request. Every
refusal has a ``google.rpc.Status`` body, never reaches the upstream, and leaves the
gateway serving.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator

import brotli
import pytest
import pytest_asyncio
from compressing import (
    brotli_bomb,
    empty_members_bomb,
    gzip_bomb,
    gzip_bytes,
    nested_gzip_bomb,
)
from recording import Edge, body_of, start_edge, status_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 1024 * 1024  # transcoding.max_body_bytes here
GOOD = json.dumps({"stringValue": "fine"}).encode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running() -> AsyncIterator[Edge]:
    async with start_edge(transcoding={"max_body_bytes": LIMIT}) as edge:
        yield edge


@pytest.fixture
def edge(running: Edge) -> Edge:
    running.kitchen.received.clear()
    running.kitchen.streams.received.clear()
    return running


async def post(
    edge: Edge, path: str, body: bytes, *headers: str, content_type: str = "application/json"
) -> bytes:
    """A POST sent byte for byte on a fresh connection; the whole answer."""
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: edge.test",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def status_json(answer: bytes) -> dict[str, object]:
    status = json.loads(body_of(answer))
    assert set(status) == {"code", "message", "details"}, status
    return status  # type: ignore[no-any-return]


async def still_serving(edge: Edge) -> None:
    answer = await post(edge, "/v1/kitchen", gzip_bytes(GOOD), "Content-Encoding: gzip")
    assert status_of(answer) == 200, answer
    assert json.loads(body_of(answer)) == {"stringValue": "fine"}


@pytest.mark.parametrize(
    ("coding", "bomb"),
    [
        ("gzip", gzip_bomb),  # ~64 KB -> 64 MiB
        ("br", brotli_bomb),  # ~3 KB -> 1 GiB
        ("gzip, gzip", nested_gzip_bomb),  # ~2.5 KB -> 1 GiB through two layers
        ("gzip, br", empty_members_bomb),  # ~1 KB -> 256 MiB of gzip that decodes to nothing
    ],
)
@pytest.mark.parametrize("path", ["/v1/kitchen", "/v1/sum"])  # unary, and a client stream
async def test_a_decompression_bomb_is_413_without_inflating_it(
    edge: Edge, coding: str, bomb: object, path: str
) -> None:
    body = bomb()  # type: ignore[operator]
    assert len(body) < 70_000
    started = time.monotonic()
    answer = await post(
        edge,
        path,
        body,
        f"Content-Encoding: {coding}",
        content_type="application/json" if path == "/v1/kitchen" else "application/x-ndjson",
    )
    elapsed = time.monotonic() - started
    assert status_of(answer) == 413, answer
    status = status_json(answer)
    assert status["code"] == 8
    assert f"limit of {LIMIT} bytes" in str(status["message"])
    # inflating a GiB takes seconds; stopping at the limit takes milliseconds
    assert elapsed < 2, elapsed
    assert [m for m, _ in edge.kitchen.received if m.endswith("/Echo")] == []
    assert edge.kitchen.streams.received == []  # zeros are no NDJSON line: nothing was sent
    await still_serving(edge)


async def test_a_zero_line_bomb_stream_is_cut_at_the_limit(edge: Edge) -> None:
    """A client stream whose gzip inflates to endless small lines: the messages sent
    upstream stop once the decoded body passes the limit, not when the bomb ends."""
    line = b'{"value": 1' + b" " * 1000 + b"}\n"  # ~1,000 messages per MiB, not 80,000
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = deflate.compress(line * (64 * LIMIT // len(line))) + deflate.flush()
    answer = await post(
        edge, "/v1/sum", body, "Content-Encoding: gzip", content_type="application/x-ndjson"
    )
    assert status_of(answer) == 413, answer
    assert len(edge.kitchen.streams.received) <= LIMIT // len(line)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip_bytes(GOOD)[:-6]),  # truncated: no trailer
        ("gzip", gzip_bytes(GOOD)[:12]),  # truncated inside the first block
        ("gzip", b"\x1f\x8b" + b"\xff" * 40),  # a gzip magic, then garbage
        ("gzip", GOOD),  # plain JSON labelled gzip
        ("br", brotli.compress(GOOD)[:-2]),
        ("br", brotli.compress(GOOD) + b"junk"),  # bytes after the end of the stream
        ("br", GOOD),
        ("gzip, br", brotli.compress(GOOD)),  # the inner layer is not gzip
        ("gzip", gzip_bytes(GOOD) + b"\x00" * 8),  # trailing garbage after the member
    ],
)
async def test_a_corrupt_or_truncated_body_is_400(edge: Edge, coding: str, body: bytes) -> None:
    answer = await post(edge, "/v1/kitchen", body, f"Content-Encoding: {coding}")
    assert status_of(answer) == 400, answer
    status = status_json(answer)
    assert status["code"] == 3
    assert "zlib" not in str(status["message"]) and "Error" not in str(status["message"])
    assert [m for m, _ in edge.kitchen.received if m.endswith("/Echo")] == []


@pytest.mark.parametrize(
    "coding",
    [
        "zstd",
        "deflate",
        "compress",
        "gzip, zstd",
        "gzip, gzip, gzip",  # more than max_request_codings (2)
        ", ".join(["gzip"] * 200),
        "gz\x01ip",
        "x" * 4000,
    ],
)
async def test_an_unknown_or_overstacked_coding_is_415(edge: Edge, coding: str) -> None:
    answer = await post(edge, "/v1/kitchen", GOOD, f"Content-Encoding: {coding}")
    assert status_of(answer) == 415, answer
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\naccept-encoding: br, gzip, identity\r\n" in head
    status = status_json(answer)
    assert status["code"] == 12
    assert len(str(status["message"])) < 100  # the client's header is not echoed whole
    assert [m for m, _ in edge.kitchen.received if m.endswith("/Echo")] == []
    await still_serving(edge)


@pytest.mark.parametrize(
    "accept",
    [
        "gzip;q=0.5, " * 2000,  # ~24 KB: read up to a bound, then ignored
        "br;q=nan, gzip;q=-1, gzip;q=1e3, gzip;q=0.0001",  # junk weights only
        ";;;,,,;q=1,=,q",
        "gzip;q",  # a parameter without a value
        "\x7f\x01;q=1",
    ],
)
async def test_junk_accept_encoding_is_answered_plainly_and_quickly(
    edge: Edge, accept: str
) -> None:
    body = json.dumps({"stringValue": "x" * 4000}).encode()
    started = time.monotonic()
    answer = await post(edge, "/v1/kitchen", body, f"Accept-Encoding: {accept}")
    assert time.monotonic() - started < 2
    assert status_of(answer) == 200, answer[:300]
    head, _, payload = answer.partition(b"\r\n\r\n")
    if b"content-encoding: gzip" in head.lower():  # the first sane item may win
        payload = zlib.decompress(payload, 31)
    assert json.loads(payload) == {"stringValue": "x" * 4000}


@pytest.mark.parametrize("path", ["/v1/kitchen", "/v1/sum"])  # unary, and a client stream
async def test_a_chunked_body_that_decodes_to_nothing_is_still_bounded(
    edge: Edge, path: str
) -> None:
    """Empty gzip members decode to no bytes at all, so only the bytes on the wire can
    bound such a body: without a Content-Length it would otherwise run for ever."""
    member = zlib.compress(b"", 9, 31)  # 20 bytes, decoding to nothing
    chunk = member * 3000  # 60 KB per chunk; the limit is 1 MiB
    content_type = "application/json" if path == "/v1/kitchen" else "application/x-ndjson"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: edge.test\r\nContent-Type: {content_type}\r\n"
        "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        writer.write(head.encode())
        for _ in range(2 * LIMIT // len(chunk)):  # twice the limit, and never an end
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
            answer += await reader.read(4096)
    finally:
        writer.close()
    assert status_of(answer) == 413, answer
    assert "compressed request body exceeds the limit" in str(status_json(answer)["message"])
    assert [m for m, _ in edge.kitchen.received if m.endswith("/Echo")] == []
    assert edge.kitchen.streams.received == []
    await still_serving(edge)


async def test_a_slow_compressed_upload_is_408() -> None:
    """The request guard's pace rules see the compressed bytes on the wire."""
    async with start_edge(server={"body_idle_timeout": "300ms", "body_min_rate": 2000}) as edge:
        body = gzip_bytes(GOOD)
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
        head = (
            "POST /v1/kitchen HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body[:10])  # then silence
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
    assert status_of(answer) == 408, answer
    assert status_json(answer)["code"] == 4
    assert [m for m, _ in edge.kitchen.received if m.endswith("/Echo")] == []


async def test_a_truncated_ndjson_stream_is_400_after_its_whole_lines_went_upstream(
    edge: Edge,
) -> None:
    """docs/compression.md: a client stream is decoded and sent upstream line by line, so
    the lines before the damage have reached the upstream when the 400 is answered."""
    whole = gzip_bytes(b'{"value": 7}\n' + b'{"value": 8}\n' * 2000)
    answer = await post(
        edge,
        "/v1/sum",
        whole[: len(whole) // 2],  # no trailer: truncated
        "Content-Encoding: gzip",
        content_type="application/x-ndjson",
    )
    assert status_of(answer) == 400, answer
    assert status_json(answer)["code"] == 3
    assert edge.kitchen.streams.received[:1] == [7]  # line 1 went upstream first
    await still_serving(edge)


async def test_an_ndjson_stream_is_not_refused_by_its_content_length(edge: Edge) -> None:
    """A client stream's limit is per line: a Content-Length above max_body_bytes is no
    reason to refuse it before reading, unlike a unary body's (docs/compression.md)."""
    lines = b"".join(b'{"value": 1%s}\n' % (b" " * 1000) for _ in range(LIMIT // 1000 + 50))
    assert len(lines) > LIMIT
    answer = await post(edge, "/v1/sum", lines, content_type="application/x-ndjson")
    assert status_of(answer) == 200, answer[:300]
    assert json.loads(body_of(answer))["count"] == LIMIT // 1000 + 50
    unary = await post(edge, "/v1/kitchen", b" " * (LIMIT + 1))
    assert status_of(unary) == 413, unary[:300]
