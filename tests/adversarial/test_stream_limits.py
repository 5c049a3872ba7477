"""Streams a client may hold open at once, and the gateway in total (issue 10, defect 2).

A client used to be able to open any number of streams (each holding an upstream call and
its buffers). Now one client gets 429 past ``server.max_streams_per_client`` and everyone
503 past ``server.max_streams``; a stream's slot is given back when it ends, however it
ends. The upstream never hears of a refused stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from recording import Edge, start_edge

from edge.call import Call, Reply
from edge.errors import Overloaded
from edge.pipeline.stream_limits import StreamCounts, StreamLimitLayer, TooManyStreams

pytestmark = pytest.mark.e2e

LONG = "/v1/count/1000?intervalSeconds=0.2"


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient) -> AsyncIterator[httpx.Response]:
    async with client.stream("GET", LONG) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await anext(lines)  # flowing
        yield response


async def refused(edge: Edge, status: int, code: int) -> None:
    before = edge.kitchen.streams.counting
    async with edge.gateway.client() as client:
        answer = await client.get(LONG)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert edge.kitchen.streams.counting == before  # never reached the upstream


async def released(edge: Edge) -> None:
    """Polled until the gateway has seen every stream end (a disconnect is heard async)."""
    pipeline = edge.gateway.app.extensions["edge.state"].current.pipeline
    deadline = asyncio.get_running_loop().time() + 10
    while pipeline.snapshot()["streams"]["open"]:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


async def test_one_client_may_hold_so_many_streams() -> None:
    async with (
        start_edge(server={"max_streams_per_client": 2}) as edge,
        edge.gateway.client() as client,
    ):
        async with open_stream(client), open_stream(client):
            await refused(edge, 429, 8)
        await released(edge)  # both ended (the client left): the slots are free again
        async with open_stream(client), open_stream(client):
            pass


async def test_the_gateway_holds_so_many_streams_in_total() -> None:
    server = {"max_streams": 2, "max_streams_per_client": None}
    async with start_edge(server=server) as edge, edge.gateway.client() as client:
        async with open_stream(client), open_stream(client):
            await refused(edge, 503, 14)
        await released(edge)
        async with open_stream(client):
            pass


async def test_unary_calls_are_not_streams() -> None:
    async with (
        start_edge(server={"max_streams_per_client": 1}) as edge,
        edge.gateway.client() as client,
    ):
        async with open_stream(client):
            answer = await client.get("/v1/kitchen/x")
            assert answer.status_code == 200


# -- the counts, without a network ------------------------------------------------------


def stream_call(client: str, forwarded: str | None = None) -> Call:
    method = type("M", (), {"server_streaming": True, "client_streaming": False})()
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Call(upstream="u", route="r", metadata=[], timeout=None, method=method,
                client=client, headers=headers)  # fmt: skip


async def test_each_end_gives_the_slot_back_exactly_once() -> None:
    counts = StreamCounts(total_limit=None, per_client=1)
    layer = StreamLimitLayer(counts, ())

    async def items() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("the upstream broke")

    async def upstream(call: Call) -> Reply:
        return Reply(stream=items())

    reply = await layer(stream_call("203.0.113.9"), upstream)
    with pytest.raises(TooManyStreams):
        await layer(stream_call("203.0.113.9"), upstream)
    other = await layer(stream_call("203.0.113.10"), upstream)  # another client
    assert reply.stream is not None
    with pytest.raises(RuntimeError):
        async for _ in reply.stream:
            pass
    await reply.stream.aclose()  # a second end: counted once
    assert counts.by_client == {"203.0.113.10": 1}
    assert counts.total == 1
    del other  # a reply dropped unread: its slot comes back when it is collected
    assert counts.total == 0


async def test_clients_behind_a_trusted_proxy_are_told_apart() -> None:
    from edge.pipeline.credentials import parse_networks

    counts = StreamCounts(total_limit=None, per_client=1)
    layer = StreamLimitLayer(counts, parse_networks(["10.0.0.0/8"]))

    async def upstream(call: Call) -> Reply:
        async def items() -> AsyncIterator[int]:
            yield 1

        return Reply(stream=items())

    held = [
        await layer(stream_call("10.0.0.2", "198.51.100.1"), upstream),
        await layer(stream_call("10.0.0.2", "198.51.100.2"), upstream),
    ]
    with pytest.raises(TooManyStreams):
        await layer(stream_call("10.0.0.2", "198.51.100.1"), upstream)
    # an IPv6 client is one client per /64, however many addresses it uses
    held.append(await layer(stream_call("2001:db8::1"), upstream))
    with pytest.raises(TooManyStreams):
        await layer(stream_call("2001:db8::2"), upstream)


async def test_the_total_is_refused_as_overloaded() -> None:
    counts = StreamCounts(total_limit=1, per_client=None)
    counts.take("a")
    with pytest.raises(Overloaded):
        counts.take("b")
    counts.release("a")
    counts.take("b")
    assert json.dumps(counts.by_client) == '{"b": 1}'
