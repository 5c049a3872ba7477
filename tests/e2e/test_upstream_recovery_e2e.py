"""An upstream that goes away and comes back: how soon the gateway uses it again.

During an outage with calls arriving, a reconnect backoff that keeps doubling (grpc's
default grows to 120 s; the lean client's used to grow to 5 s) leaves the gateway failing
calls for seconds after the upstream is back. Both clients now back off at most 0.25 s,
and reconnect only when a call needs the connection, so a dead upstream sees a few
connects a second, not a flood (the second test counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from conftest import make_config, run_gateway
from kitchen_upstream import start_kitchen

pytestmark = pytest.mark.e2e

OUTAGE = 4.0  # long enough for a doubling backoff from 0.1 s to pass 3 s
RECOVERED_WITHIN = 1.0  # the backoff's cap (0.25 s, jittered) with room for a loaded machine


def upstream_config(port: int, client: str) -> dict[str, object]:
    return {"upstreams": {"kitchen": {"address": f"127.0.0.1:{port}", "client": client}}}


@pytest.mark.parametrize("client", ["lean", "grpcio"])
async def test_calls_succeed_soon_after_the_upstream_comes_back(client: str) -> None:
    server, port, _ = await start_kitchen()
    config = make_config(port, extra=upstream_config(port, client))
    async with run_gateway(config) as gateway, gateway.client() as http:
        assert (await http.get("/v1/kitchen/before")).status_code == 200
        await server.stop(None)
        loop = asyncio.get_running_loop()
        outage_ends = loop.time() + OUTAGE
        while loop.time() < outage_ends:  # calls keep arriving through the outage
            assert (await http.get("/v1/kitchen/during")).status_code == 503
            await asyncio.sleep(0.02)
        server, _, _ = await start_kitchen(port)
        try:
            back = loop.time()
            while (await http.get("/v1/kitchen/after")).status_code != 200:
                assert loop.time() - back < RECOVERED_WITHIN, (
                    "still failing after the upstream came back"
                )
                await asyncio.sleep(0.02)
        finally:
            await server.stop(None)


@contextlib.asynccontextmanager
async def slamming_door() -> AsyncIterator[tuple[int, list[float]]]:
    """A TCP listener that accepts and closes at once: an upstream that is there but broken."""
    accepted: list[float] = []

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(asyncio.get_running_loop().time())
        writer.close()

    listener = await asyncio.start_server(slam, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], accepted
    finally:
        listener.close()


@pytest.mark.parametrize("client", ["lean", "grpcio"])
async def test_a_dead_upstream_is_not_hammered_with_connects(client: str) -> None:
    async with slamming_door() as (port, accepted):
        config = make_config(port, extra=upstream_config(port, client))
        async with run_gateway(config) as gateway, gateway.client() as http:
            loop = asyncio.get_running_loop()
            ends, calls = loop.time() + 2.0, 0
            while loop.time() < ends:  # ~50 concurrent calls at a time for 2 s
                answers = await asyncio.gather(*(http.get("/v1/kitchen/x") for _ in range(50)))
                assert {answer.status_code for answer in answers} == {503}
                calls += len(answers)
    assert calls >= 100  # however few a loaded machine manages, far more calls than connects
    # one connect in flight per address, then at least 0.08 s (0.1 s, jittered) apart:
    # about 10 in 2 s, whatever the number of calls
    assert 1 <= len(accepted) <= 30, f"{len(accepted)} connects for {calls} calls"
