"""Clients hanging up on transcoded calls are no failure of the upstream's.

The proxy's side of this is in test_proxy_e2e.py. Here the HTTP client goes away while a
unary or a server-streaming gRPC call is in flight: the gateway cancels the call, and the
breaker must count it neither way. Each breaker opens on its first failure, so a single
hang-up counted as a failure would open it; the last step of each test proves the
breaker is that sensitive by failing one call for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import Gateway, make_config, run_gateway
from kitchen_upstream import Kitchen

pytestmark = pytest.mark.e2e

HANG_UPS = 3


@contextlib.asynccontextmanager
async def one_failure_opens(port: int, client: str) -> AsyncIterator[Gateway]:
    """A gateway to the kitchen whose breaker opens on the first failure, for a long time."""
    extra = {
        "upstreams": {
            "kitchen": {"address": f"127.0.0.1:{port}", "timeout": "5s", "client": client}
        },
        "breakers": {"default": {"consecutive_failures": 1, "cooldown": "60s"}},
    }
    async with run_gateway(make_config(port, extra=extra)) as gateway:
        yield gateway


def http_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: edge.test\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"content-type: application/json\r\n\r\n" + body


async def eventually(check: Any, what: str) -> None:
    for _ in range(250):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def settled_breaker(client: httpx.AsyncClient) -> dict[str, Any]:
    """The kitchen breaker's admin view once no call is in flight any more."""
    for _ in range(250):
        state = (await client.get("/admin/pipeline")).json()
        (breaker,) = [b for b in state["breakers"] if b["upstream"] == "kitchen"]
        if breaker["in_flight"] == 0 and breaker["streams"] == 0:
            return dict(breaker)
        await asyncio.sleep(0.02)
    raise AssertionError(f"calls still in flight: {breaker}")


async def assert_untouched(client: httpx.AsyncClient, after: str) -> None:
    breaker = await settled_breaker(client)
    assert breaker["state"] == "closed", f"{after} opened the breaker: {breaker}"
    assert breaker["transitions"] == [], f"{after} moved the breaker: {breaker}"


async def assert_closed_yet_sensitive(client: httpx.AsyncClient) -> None:
    """Calls still go through after the hang-ups, and one real failure opens the breaker."""
    after = await client.get("/v1/kitchen/after")
    assert after.status_code == 200
    assert after.json() == {"stringValue": "after"}
    failed = await client.post("/v1/fail", json={"code": 14, "message": "really down"})
    assert failed.status_code == 503
    refused = await client.get("/v1/kitchen/refused")
    assert refused.status_code == 503
    assert "circuit breaker is open" in refused.json()["message"]


@pytest.fixture(params=["lean", "grpcio"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_hang_ups_during_unary_calls_do_not_open_the_breaker(
    kitchen_upstream: tuple[int, Kitchen], client: str
) -> None:
    port, kitchen = kitchen_upstream
    async with one_failure_opens(port, client) as gateway, gateway.client() as http:
        for round_ in range(1, HANG_UPS + 1):
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(http_request("POST", "/v1/sleep", b'{"seconds": 5}'))
            await writer.drain()
            await eventually(
                lambda n=round_: sum(m.endswith("/Sleep") for m, _ in kitchen.received) == n,
                "the upstream to be in the call",
            )
            writer.close()  # the client gives up mid-call
            await writer.wait_closed()
            await eventually(lambda n=round_: kitchen.cancelled == n, "the call to be cancelled")
            await assert_untouched(http, f"hang-up {round_}")
        await assert_closed_yet_sensitive(http)
    assert kitchen.cancelled == HANG_UPS  # each call really was in flight and cut short


async def test_hang_ups_during_server_streams_do_not_open_the_breaker(
    kitchen_upstream: tuple[int, Kitchen],
) -> None:
    port, kitchen = kitchen_upstream
    streams = kitchen.streams
    async with one_failure_opens(port, "auto") as gateway, gateway.client() as http:
        for round_ in range(1, HANG_UPS + 1):
            streams.cancelled.clear()
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(http_request("GET", "/v1/count/1000?intervalSeconds=0.05"))
            await writer.drain()
            received = b""
            while b'{"result"' not in received:  # the stream has started: a message is in
                chunk = await asyncio.wait_for(reader.read(4096), 5)
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
            writer.close()  # the client leaves mid-stream
            await writer.wait_closed()
            await asyncio.wait_for(streams.cancelled.wait(), 5)
            await assert_untouched(http, f"hang-up {round_}")
        await assert_closed_yet_sensitive(http)
    assert streams.sent < 1000  # no stream ran to its end


async def test_a_probe_whose_client_hangs_up_neither_closes_nor_reopens_the_breaker(
    kitchen_upstream: tuple[int, Kitchen],
) -> None:
    """Half-open, the one probe's client leaves mid-call: no verdict, and the place is free.

    (A stream probe is judged by its first message, so a stream left after one has
    passed: tests/unit/test_breaker_probe_streams.py.)
    """
    port, kitchen = kitchen_upstream
    extra = {"breakers": {"default": {"consecutive_failures": 1, "cooldown": "300ms", "probes": 1}}}
    async with run_gateway(make_config(port, extra=extra)) as gateway, gateway.client() as http:
        failed = await http.post("/v1/fail", json={"code": 14, "message": "down for now"})
        assert failed.status_code == 503
        await asyncio.sleep(0.4)  # cooled down: the next call is the probe
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(http_request("POST", "/v1/sleep", b'{"seconds": 5}'))
        await eventually(
            lambda: any(m.endswith("/Sleep") for m, _ in kitchen.received),
            "the probe to reach the upstream",
        )
        writer.close()  # the probe's client leaves
        await writer.wait_closed()
        await eventually(lambda: kitchen.cancelled == 1, "the probe to be cancelled")
        breaker = await settled_breaker(http)
        assert breaker["state"] == "half_open", breaker  # not closed, not re-opened
        assert [t["to"] for t in breaker["transitions"]] == ["open", "half_open"]
        after = await http.get("/v1/kitchen/probe")  # the probe's place was given back
        assert after.status_code == 200, after.text
        assert (await settled_breaker(http))["state"] == "closed"
