"""Answers that come before the request body has ended must still end (issue 10, defect 1).

A client-streaming route answered while its client is still uploading (a bad first
NDJSON line, a 401 before the body is read, an over-limit line): Hypercorn queues body
chunks for the app, ten at most, and ending the answer puts ``http.disconnect`` on that
queue. Unread, the queue was full and the answer's last ``send`` blocked for ever: a task
and a socket lost per request. Each test sends many such requests, each client writing its
whole body while the gateway answers, and checks that every one was answered and that the
gateway's tasks and descriptors come back to their baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import make_config, run_gateway
from h2_client import h2_client, upload_until_answered
from kitchen_upstream import Kitchen
from recording import Edge, Recorded, start_edge, token
from resources import open_fds, open_tasks, settled

pytestmark = pytest.mark.e2e

BIG = 1_500_000  # the body's size: far more than Hypercorn's queue and the socket buffers


async def upload_early_answered(port: int, head: bytes, body: bytes) -> bytes:
    """Write the whole body while reading the answer; the status line that came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def upload() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(head + body)
            await writer.drain()

    uploading = asyncio.create_task(upload())
    try:
        async with asyncio.timeout(15):
            status = await reader.readline()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # to the end: the gateway closes once it has answered
        return status
    finally:
        uploading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post(path: str, length: int, *headers: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: edge.test",
        "Content-Type: application/x-ndjson",
        f"Content-Length: {length}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def flood(
    edge: Edge, head: bytes, body: bytes, expected: set[bytes], count: int = 60
) -> None:
    port = edge.gateway.port
    await upload_early_answered(port, head, body)  # warm: first-use allocations
    tasks, fds = open_tasks(), open_fds()
    for start in range(0, count, 20):
        statuses = await asyncio.gather(
            *(upload_early_answered(port, head, body) for _ in range(start, start + 20))
        )
        assert {status.split(b" ")[1] for status in statuses} <= expected, statuses[:3]
    after_tasks = await settled(open_tasks, tasks, within=15)
    after_fds = await settled(open_fds, fds, within=15)
    assert after_tasks <= tasks + 5, f"{after_tasks - tasks} tasks left behind"
    assert after_fds <= fds + 5, f"{after_fds - fds} descriptors left open"


async def test_a_bad_first_line_of_a_long_client_stream() -> None:
    body = b"{not json\n" + b'{"value": 1}\n' * (BIG // 13)
    async with start_edge() as edge:
        await flood(edge, post("/v1/sum", len(body)), body, {b"400"})


async def test_a_client_stream_refused_before_its_body_that_sends_it_anyway() -> None:
    # Expect: 100-continue, so the gateway does not linger to read the body after its 401;
    # the client sends it all the same (curl does, after a second)
    body = b'{"value": 1}\n' * (BIG // 13)
    sum_needs_a_token = {"match": ["edgetest.v1.StreamService.Sum"], "auth": {"require": "token"}}
    async with start_edge(policies=[sum_needs_a_token]) as edge:
        head = post("/v1/sum", len(body), "Authorization: Bearer x.y.z", "Expect: 100-continue")
        await flood(edge, head, body, {b"401"})


@contextlib.asynccontextmanager
async def edge_before_an_empty_upstream() -> AsyncIterator[Edge]:
    """A gateway whose gRPC upstream serves nothing: every call is UNIMPLEMENTED at once."""
    empty = grpc.aio.server()
    port = empty.add_insecure_port("127.0.0.1:0")
    await empty.start()
    try:
        async with run_gateway(make_config(port)) as gateway:
            yield Edge(gateway, Recorded(), Kitchen())
    finally:
        await empty.stop(None)


async def test_a_client_stream_its_upstream_refuses_at_once() -> None:
    body = b'{"value": 1}\n' * (BIG // 13)
    async with edge_before_an_empty_upstream() as edge:
        # 501; sometimes grpc's own client, still writing when the answer comes, reports
        # "Internal error from Core" (INTERNAL, 500) instead: either way, answered
        await flood(edge, post("/v1/sum", len(body)), body, {b"501", b"500"})


async def test_an_answer_with_a_valid_token_still_reads_the_whole_stream() -> None:
    lines = 5_000
    body = b'{"value": 2}\n' * lines
    async with start_edge() as edge:
        head = post("/v1/sum", len(body), f"Authorization: Bearer {token()}")
        status = await upload_early_answered(edge.gateway.port, head, body)
    assert status.split(b" ")[1] == b"200"


async def test_early_answers_on_one_h2_connection_leave_it_working() -> None:
    # On h2 a full body queue also stalls every other stream of the connection
    body = b'{"value": 1}\n' * (BIG // 13)
    async with edge_before_an_empty_upstream() as edge, h2_client(edge.gateway.port) as client:
        tasks, fds = open_tasks(), open_fds()
        for _ in range(10):
            status, _ = await upload_until_answered(client, "/v1/sum", body)
            assert status in ("501", "500")
        bad_first_line = b"{not json\n" + body
        status, _ = await upload_until_answered(client, "/v1/sum", bad_first_line)
        assert status == "400"
        after_tasks = await settled(open_tasks, tasks, within=15)
        after_fds = await settled(open_fds, fds, within=15)
    assert after_tasks <= tasks + 5, f"{after_tasks - tasks} tasks left behind"
    assert after_fds <= fds + 5


async def test_h2_client_streams_arrive_whole_after_early_answers() -> None:
    """Data for a stream that opened in the same read, or after an early answer, is kept."""
    async with start_edge() as edge, h2_client(edge.gateway.port) as client:
        for lines in (10, 8_000, 10, 8_000):  # small: HEADERS and DATA in one read
            if lines == 10:
                bad = b"{not json\n" + b'{"value": 1}\n' * 100_000
                status, _ = await upload_until_answered(client, "/v1/sum", bad)
                assert status == "400"
            status, answer = await upload_until_answered(
                client, "/v1/sum", b'{"value": 1}\n' * lines
            )
            assert (status, json.loads(answer)) == ("200", {"sum": str(lines), "count": lines})
