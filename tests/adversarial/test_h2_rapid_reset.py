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
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from recording import Edge, start_edge

from edge.ingress.h2_resets import ResetBudget, stillborn_streams
from edge.observability.metrics import UPSTREAM_CALLS

pytestmark = pytest.mark.e2e

GET_HEADERS = [
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "127.0.0.1"),
    (":path", "/v1/kitchen/rapid"),
]


class H2Client:
    """A raw h2c connection: frames written exactly as the test asks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []

    def open_and_reset(self, count: int) -> None:
        """HEADERS then RST_STREAM(CANCEL) for ``count`` new streams, unsent."""
        for _ in range(count):
            stream_id = self.conn.get_next_available_stream_id()
            self.conn.send_headers(stream_id, GET_HEADERS, end_stream=True)
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)

    def request(self) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, GET_HEADERS, end_stream=True)
        return stream_id

    async def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def read_until(self, done: type[h2.events.Event], timeout: float = 10) -> bool:
        """Read events until one of type ``done``; False if the connection ended first."""
        async with asyncio.timeout(timeout):
            while not any(isinstance(event, done) for event in self.events):
                data = await self.reader.read(65536)
                if not data:
                    return False
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.events += self.conn.receive_data(data)
                await self.flush()
        return True

    def terminated(self) -> h2.events.ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None


@contextlib.asynccontextmanager
async def h2_client(port: int) -> AsyncIterator[H2Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = H2Client(reader, writer)
    try:
        await client.flush()
        yield client
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


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
