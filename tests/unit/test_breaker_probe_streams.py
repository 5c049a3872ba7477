"""A long stream or body taken as the half-open probe gives its verdict early.

The probe is the only call a half-open breaker lets through; when its verdict waited for
the end of a long stream, every other call was refused for the whole stream (43 s in one
run). Now the verdict is the stream's first message, or a proxied reply's status line.
No network: the next step is a fake upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from edge.call import Call, HttpResponse, Reply
from edge.errors import CircuitOpen, UpstreamUnavailable
from edge.pipeline.breaker import BreakerLayer, guard_for
from edge.policy_config import BreakerConfig

NAME = "probe-upstream"
SERVER_STREAM: Any = SimpleNamespace(server_streaming=True, client_streaming=False)


def tripped_layer(now: list[float]) -> BreakerLayer:
    config = BreakerConfig(consecutive_failures=1, cooldown=10)
    return BreakerLayer({NAME: guard_for(NAME, config)}, frozenset({14}), clock=lambda: now[0])


def call(method: Any = None) -> Call:
    return Call(upstream=NAME, route="r", metadata=[], timeout=None, method=method)


async def failing(call: Call) -> Reply:
    raise UpstreamUnavailable("down")


async def ok(call: Call) -> Reply:
    return Reply(message=None)


async def trip(layer: BreakerLayer, now: list[float]) -> None:
    with pytest.raises(UpstreamUnavailable):
        await layer(call(), failing)
    now[0] += 11  # cooldown over: the next call is the probe


async def test_a_long_stream_probe_closes_the_breaker_at_its_first_message() -> None:
    now = [0.0]
    layer = tripped_layer(now)
    await trip(layer, now)
    more = asyncio.Event()

    async def messages() -> AsyncIterator[str]:
        yield "first"
        await more.wait()  # a stream that goes on for a long time
        yield "last"

    async def streaming(call: Call) -> Reply:
        return Reply(stream=messages())

    probe = await layer(call(SERVER_STREAM), streaming)
    assert probe.stream is not None
    with pytest.raises(CircuitOpen):  # half-open: the probe's verdict is not in yet
        await layer(call(), ok)
    assert await anext(probe.stream) == "first"
    await layer(call(), ok)  # closed now, with the stream still open
    assert layer.guards[NAME].snapshot()["state"] == "closed"
    more.set()
    assert [item async for item in probe.stream] == ["last"]
    assert layer.guards[NAME].in_flight == 0


async def test_a_stream_probe_that_fails_before_its_first_message_reopens() -> None:
    now = [0.0]
    layer = tripped_layer(now)
    await trip(layer, now)

    async def broken() -> AsyncIterator[str]:
        raise UpstreamUnavailable("still down")
        yield "never"

    async def streaming(call: Call) -> Reply:
        return Reply(stream=broken())

    probe = await layer(call(SERVER_STREAM), streaming)
    assert probe.stream is not None
    with pytest.raises(UpstreamUnavailable):
        await anext(probe.stream)
    assert layer.guards[NAME].snapshot()["state"] == "open"


@pytest.mark.parametrize(("status", "state"), [(200, "closed"), (503, "open")])
async def test_a_proxied_probe_is_judged_by_its_status_line(status: int, state: str) -> None:
    now = [0.0]
    layer = tripped_layer(now)
    await trip(layer, now)
    more = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        await more.wait()  # a long download
        yield b"data"

    async def proxied(call: Call) -> Reply:
        return Reply(http=HttpResponse(status=status, headers=[], body=body()))

    reply = await layer(call(), proxied)
    assert layer.guards[NAME].snapshot()["state"] == state  # before the body has come
    more.set()
    assert reply.http is not None
    assert [chunk async for chunk in reply.http.body] == [b"data"]
    assert layer.guards[NAME].in_flight == 0
