"""Metrics after known traffic, access log lines, trace context and request ids upstream."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_known_traffic(stack: Any) -> None:
    echo = {
        "route": "edgetest.v1.KitchenService.Echo",
        "method": "GET",
        "status": "200",
        "protocol": "http",
    }
    async with stack.client() as client:
        before = (await client.get("/metrics")).text
        for _ in range(3):
            await client.get("/v1/kitchen/m")
        await client.get("/nowhere")
        await client.post("/v1/fail", json={"code": 5, "message": "x"})
        after = (await client.get("/metrics")).text
    assert (
        sample(after, "edge_requests_total", **echo) - sample(before, "edge_requests_total", **echo)
        == 3
    )
    unmatched = {"route": "unmatched", "method": "GET", "status": "404", "protocol": "http"}
    assert sample(after, "edge_requests_total", **unmatched) > sample(
        before, "edge_requests_total", **unmatched
    )
    assert sample(after, "edge_upstream_calls_total", upstream="kitchen", code="5") >= 1
    assert (
        sample(
            after,
            "edge_request_duration_seconds_count",
            route="edgetest.v1.KitchenService.Echo",
            protocol="http",
        )
        >= 3
    )


async def test_trace_context_and_request_id_reach_the_upstream(stack: Any) -> None:
    async with stack.client() as client:
        kept = await client.post(
            "/v1/inspect",
            json={},
            headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "x-request-id": "abc"},
        )
        started = await client.post("/v1/inspect", json={})
    seen = kept.json()["metadata"]
    version, trace, span, flags = seen["traceparent"].split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    assert span != "00f067aa0ba902b7"  # the gateway's own hop
    assert seen["x-request-id"] == "abc"
    assert kept.headers["x-request-id"] == "abc"
    generated = started.json()["metadata"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", generated["traceparent"])
    assert generated["x-request-id"] == started.headers["x-request-id"]


async def test_access_log_lines(stack_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.access")
    async with stack_factory(observability={"access_log": True}) as stack:
        async with stack.client() as client:
            await client.get("/v1/kitchen/logged", headers={"authorization": "Bearer sekrit"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge.access"]
    line = next(entry for entry in lines if entry["path"] == "/v1/kitchen/logged")
    assert line["route"] == "edgetest.v1.KitchenService.Echo"
    assert line["status"] == 200 and line["grpc_code"] == 0
    assert line["method"] == "GET" and line["protocol"] == "http"
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
    assert line["request_id"] and line["duration_ms"] > 0 and line["bytes"] > 0
    assert "sekrit" not in caplog.text


async def test_metrics_can_be_switched_off(stack_factory: Any) -> None:
    async with stack_factory(observability={"metrics": False}) as stack:
        async with stack.client() as client:
            response = await client.get("/metrics")
            plain = await client.get("/v1/kitchen/x")
    assert response.status_code == 404
    assert "x-request-id" not in plain.headers  # nothing observes: nothing added


async def test_websocket_calls_are_counted_under_their_method(stack: Any) -> None:
    from websockets.asyncio.client import connect

    url = stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.KitchenService/Echo"
    async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
        await ws.send(json.dumps({"message": {}}))
        await ws.recv()
    async with stack.client() as client:
        scrape = (await client.get("/metrics")).text
    labels = {"route": "edgetest.v1.KitchenService.Echo", "protocol": "websocket"}
    assert sample(scrape, "edge_requests_total", **labels) >= 1


def total(text: str, name: str) -> float:
    """A metric summed over all its label sets."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


async def test_open_streams_and_sockets_are_gauged_until_they_end(stack: Any) -> None:
    from websockets.asyncio.client import connect

    base = stack.gateway.base_url
    async with stack.client() as client:
        idle = (await client.get("/metrics")).text
        async with client.stream("GET", "/v1/count/4?intervalSeconds=0.3") as stream:
            lines = stream.aiter_lines()
            assert "result" in await anext(lines)
            streaming = (await client.get("/metrics")).text
            async with connect(
                base.replace("http", "ws") + "/ws/edgetest.v1.StreamService/Shout",
                subprotocols=["edge.grpc-ws.v1"],
            ) as ws:
                await ws.send(json.dumps({"message": {"text": "hi"}}))
                assert "HI" in str(await ws.recv())
                both = (await client.get("/metrics")).text
        # the client dropped the stream after one line: the gauge must still come down
        for _ in range(50):
            after = (await client.get("/metrics")).text
            if total(after, "edge_streams_in_flight") == total(idle, "edge_streams_in_flight"):
                if total(after, "edge_websocket_connections") == total(
                    idle, "edge_websocket_connections"
                ):
                    break
            await asyncio.sleep(0.05)
    assert total(streaming, "edge_streams_in_flight") == total(idle, "edge_streams_in_flight") + 1
    assert total(both, "edge_streams_in_flight") == total(idle, "edge_streams_in_flight") + 2
    assert (
        total(both, "edge_websocket_connections") == total(idle, "edge_websocket_connections") + 1
    )
    assert total(after, "edge_streams_in_flight") == total(idle, "edge_streams_in_flight")
    assert total(after, "edge_websocket_connections") == total(idle, "edge_websocket_connections")


async def test_a_websocket_is_logged_once_when_it_ends(
    stack_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The socket's line is written when its task ends (no frame waits for it meanwhile):
    none while it is open, one after, with the handshake's request id and the time open."""
    from websockets.asyncio.client import connect

    caplog.set_level(logging.INFO, logger="edge.access")

    def socket_lines() -> list[dict[str, Any]]:
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge.access"]
        return [line for line in lines if line["protocol"] == "websocket"]

    async with stack_factory(observability={"access_log": True}) as stack:
        url = stack.gateway.base_url.replace("http", "ws") + "/ws/edgetest.v1.KitchenService/Echo"
        async with connect(url, subprotocols=["edge.grpc-ws.v1"]) as ws:
            assert ws.response is not None
            request_id = ws.response.headers["x-request-id"]
            await asyncio.sleep(0.3)  # open, waiting for the call's first frame
            assert socket_lines() == []  # nothing written while it is open
        async with stack.client() as client:
            for _ in range(100):
                if socket_lines():
                    break
                await asyncio.sleep(0.02)
            scrape = (await client.get("/metrics")).text
    [line] = socket_lines()
    assert line["status"] == 101 and line["request_id"] == request_id
    assert line["route"] == "edgetest.v1.KitchenService.Echo"
    assert line["duration_ms"] >= 300
    assert sample(scrape, "edge_in_flight_requests", protocol="websocket") == 0
