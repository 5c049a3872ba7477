"""A client that leaves a stream is noticed at once, whatever the stream's kind and state.

The upstream here is slow on purpose: its server stream says nothing for a minute before
the first message, and its bidi stream goes on sending after the client's body has ended.
Before, a client that left either was not noticed until the upstream's next message (or
its deadline): the upstream worked on for nobody. Each test leaves, then waits (polling,
bounded) for the upstream to see its call cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import h2.errors
import h2.events
import pytest
from conftest import Gateway, make_config, run_gateway
from h2_client import h2_client

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

NOTICED_WITHIN = 5.0  # seconds; the upstream's own pace is a minute


class SlowStreams(pb_grpc.StreamServiceServicer):
    """Streams that outlast their clients; each records its cancellation."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def Count(  # noqa: N802
        self, request: pb.CountRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Tick]:
        self.started.set()
        try:
            await asyncio.sleep(60)  # silent before the first message
            yield pb.Tick(index=0)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def Shout(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.Line], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Line]:
        try:
            async for line in request_iterator:
                yield pb.Line(text=line.text.upper())
            self.started.set()  # the client's body has ended; go on talking
            for _ in range(600):
                await asyncio.sleep(0.1)
                yield pb.Line(text="still here")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@contextlib.asynccontextmanager
async def slow_stack() -> AsyncIterator[tuple[Gateway, SlowStreams]]:
    streams = SlowStreams()
    server = grpc.aio.server()
    pb_grpc.add_StreamServiceServicer_to_server(streams, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = make_config(
        port, extra={"upstreams": {"kitchen": {"address": f"127.0.0.1:{port}", "timeout": "120s"}}}
    )
    try:
        async with run_gateway(config) as gateway:
            yield gateway, streams
    finally:
        await server.stop(None)


async def noticed(streams: SlowStreams) -> None:
    await asyncio.wait_for(streams.cancelled.wait(), NOTICED_WITHIN)


async def test_leaving_a_server_stream_before_its_first_message() -> None:
    async with slow_stack() as (gateway, streams):
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"GET /v1/count/3 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(streams.started.wait(), 5)  # the upstream call is in
        writer.close()
        await noticed(streams)


@pytest.mark.parametrize("framing", ["application/x-ndjson", "text/event-stream"])
async def test_leaving_a_bidi_stream_after_its_body_ended_http1(framing: str) -> None:
    body = b'{"text": "hello"}\n'
    async with slow_stack() as (gateway, streams):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"POST /v1/shout HTTP/1.1\r\nHost: edge.test\r\n"
            + f"Accept: {framing}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"HELLO"), 5)  # the stream is flowing
        await asyncio.wait_for(streams.started.wait(), 5)  # and the body has ended
        writer.close()
        await noticed(streams)


async def test_resetting_a_bidi_stream_after_its_body_ended_h2() -> None:
    async with slow_stack() as (gateway, streams), h2_client(gateway.port) as client:
        conn = client.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                (":path", "/v1/shout"),
            ],
        )
        conn.send_data(stream_id, b'{"text": "hello"}\n', end_stream=True)
        await client.flush()
        assert await client.read_until(h2.events.DataReceived)
        await asyncio.wait_for(streams.started.wait(), 5)
        conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        await client.flush()
        await noticed(streams)
        # the connection itself is fine: another stream is answered on it
        other = conn.get_next_available_stream_id()
        conn.send_headers(
            other,
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/healthz")],
            end_stream=True,
        )
        await client.flush()
        client.events.clear()
        assert await client.read_until(h2.events.StreamEnded)
        assert client.terminated() is None
