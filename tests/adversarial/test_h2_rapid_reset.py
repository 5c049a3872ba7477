"""HTTP/2 rapid reset against the gateway (edge/ingress/h2_resets.py).

A client on h2c (prior knowledge) opens streams and resets them at once. Asserted: a
stream reset in the same write as its HEADERS never reaches the upstream; a connection
that resets faster than its budget gets GOAWAY with ENHANCE_YOUR_CALM and is closed; a
client that resets a few streams keeps its connection; other clients are served
throughout.
"""

from __future__ import annotations

import asyncio
import contextlib

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from h2_client import h2_client
from recording import Edge, start_edge

from edge.ingress.h2_resets import ResetBudget, stillborn_streams
from edge.observability.metrics import UPSTREAM_CALLS

pytestmark = pytest.mark.e2e


def upstream_calls() -> float:
    """Upstream calls the gateway started (edge_upstream_calls_total), whatever their end."""
    return sum(
        sample.value
        for metric in UPSTREAM_CALLS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def served(edge: Edge) -> bool:
    async with edge.gateway.client() as http:
        return (await http.get("/v1/kitchen/other")).status_code == 200


async def test_a_reset_flood_gets_goaway_enhance_your_calm_and_reaches_no_upstream() -> None:
    async with start_edge() as edge, h2_client(edge.gateway.port) as client:
        before, started = len(edge.kitchen.received), upstream_calls()
        flood = asyncio.create_task(served(edge))  # another client, during the flood
        for _ in range(40):  # 40 writes of 50 pairs: far more than the budget of 200
            client.open_and_reset(50)
            with contextlib.suppress(ConnectionError):
                await client.flush()
        assert await client.read_until(h2.events.ConnectionTerminated) or client.terminated()
        terminated = client.terminated()
        assert terminated is not None
        assert terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        assert await flood
        assert await served(edge)
        # the two calls of the other client, and not one of the reset streams
        assert len(edge.kitchen.received) - before == 2
        assert upstream_calls() - started == 2


async def test_a_client_cancelling_a_few_streams_keeps_its_connection() -> None:
    async with start_edge() as edge, h2_client(edge.gateway.port) as client:
        client.open_and_reset(20)
        stream_id = client.request()
        await client.flush()
        assert await client.read_until(h2.events.StreamEnded)
        assert client.terminated() is None
        responses = [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
        assert [r.stream_id for r in responses] == [stream_id]
        assert dict(responses[0].headers)[":status"] == "200"


async def test_the_budget_can_be_turned_off() -> None:
    async with start_edge(server={"h2_reset_burst": None}) as edge:
        before, started = len(edge.kitchen.received), upstream_calls()
        async with h2_client(edge.gateway.port) as client:
            for _ in range(6):  # 300 resets: over the default budget, under Hypercorn's 1,000
                client.open_and_reset(50)
                await client.flush()
            stream_id = client.request()
            await client.flush()
            assert await client.read_until(h2.events.StreamEnded)
            assert client.terminated() is None
            assert any(
                isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id
                for e in client.events
            )
        # each HEADERS arrived with its RST_STREAM: none of them was started
        assert len(edge.kitchen.received) - before == 1
        assert upstream_calls() - started == 1


def test_reset_budget_spends_its_burst_then_refills() -> None:
    budget = ResetBudget(burst=3, rate=2)
    assert [budget.spend(100.0) for _ in range(4)] == [True, True, True, False]
    assert budget.spend(100.5)  # one token back after half a second at 2 per second
    assert not budget.spend(100.5)


def test_only_streams_opened_and_reset_in_one_batch_are_stillborn() -> None:
    def received(stream_id: int) -> h2.events.RequestReceived:
        return h2.events.RequestReceived(stream_id=stream_id)

    def reset(stream_id: int, remote: bool = True) -> h2.events.StreamReset:
        return h2.events.StreamReset(stream_id=stream_id, remote_reset=remote)

    events = [received(1), reset(1), received(3), reset(5), received(7), reset(7, remote=False)]
    assert stillborn_streams(events) == {1}
