"""OpenTelemetry spans end to end: real Hypercorn, real grpc.aio and HTTP upstreams.

The gateway gets an in-memory exporter through ``create_app(span_exporter=...)``; spans go
through the real BatchSpanProcessor and are read after the gateway stops, so these tests
also check that shutdown flushes them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import conftest
import pytest
from conftest import Gateway, make_config, run_gateway
from http_upstream import closed_port, serve_asgi, upstream_app
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from websockets.asyncio.client import connect

from edge.app import create_app
from edge.config import Config

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
ECHO = "edgetest.v1.KitchenService.Echo"

Traced = Callable[[Config], contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> Traced:
    """Serve a config with tracing on, exporting into ``exporter``."""
    monkeypatch.setattr(
        conftest, "create_app", functools.partial(create_app, span_exporter=exporter)
    )
    return run_gateway


@pytest.fixture
def config(kitchen_upstream: tuple[int, Any]) -> Config:
    return make_config(kitchen_upstream[0])


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


def pair(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ReadableSpan]:
    """The one server span and the one client span of a single call."""
    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (client,) = by_kind(spans, SpanKind.CLIENT)
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id  # the client span hangs under it
    assert client.context.trace_id == server.context.trace_id
    return server, client


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


async def test_transcoded_call_has_a_server_span_and_a_client_span(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        response = await client.get("/v1/kitchen/traced")
    assert response.status_code == 200
    server, upstream = pair(exporter)
    assert server.name == ECHO
    assert server.parent is None  # no traceparent came in: the gateway starts the trace
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/v1/kitchen/traced",
        "url.scheme": "http",
        "network.peer.address": "127.0.0.1",
        "rpc.system": "grpc",
        "rpc.service": "edgetest.v1.KitchenService",
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
        "http.response.status_code": 200,
    }
    assert server.status.status_code is StatusCode.UNSET
    assert upstream.name == "edgetest.v1.KitchenService/Echo"
    assert dict(upstream.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "edgetest.v1.KitchenService",
        "rpc.method": "Echo",
        "edge.upstream": "kitchen",
        "rpc.grpc.status_code": 0,
    }
    assert server.resource.attributes["service.name"] == "edge"


async def test_incoming_traceparent_is_continued_and_upstream_sees_the_client_span(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        response = await client.post(
            "/v1/inspect",
            json={},
            headers={
                "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01",
                "tracestate": "vendor=opaque",
                "x-request-id": "req-1",
            },
        )
    seen = response.json()["metadata"]
    server, upstream = pair(exporter)
    assert hex_ids(server)[0] == TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.parent.is_remote
    trace, span = hex_ids(upstream)
    assert seen["traceparent"] == f"00-{trace}-{span}-01"  # the CLIENT span is the parent
    assert seen["tracestate"] == "vendor=opaque"
    assert seen["x-request-id"] == "req-1" == response.headers["x-request-id"]


async def test_upstream_error_sets_span_status(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        internal = await client.post("/v1/fail", json={"code": 13, "message": "boom"})
    assert internal.status_code == 500
    server, upstream = pair(exporter)
    assert upstream.status.status_code is StatusCode.ERROR
    assert upstream.status.description == "boom"
    assert upstream.attributes is not None and upstream.attributes["rpc.grpc.status_code"] == 13
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == 13
    assert server.attributes["http.response.status_code"] == 500


async def test_client_error_marks_the_client_span_only(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    """NOT_FOUND is the caller's problem: an error for the client span, not the server's."""
    async with traced(config) as gateway, gateway.client() as client:
        missing = await client.post("/v1/fail", json={"code": 5, "message": "gone"})
    assert missing.status_code == 404
    server, upstream = pair(exporter)
    assert upstream.status.status_code is StatusCode.ERROR
    assert server.status.status_code is StatusCode.UNSET
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 5


async def test_server_stream_span_ends_with_the_stream(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        response = await client.get("/v1/count/3")
    assert response.status_code == 200
    server, upstream = pair(exporter)
    assert upstream.attributes is not None and upstream.attributes["rpc.grpc.status_code"] == 0
    assert upstream.end_time is not None and server.end_time is not None
    assert upstream.end_time <= server.end_time


async def test_websocket_call_gets_spans(
    traced: Traced,
    config: Config,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with traced(config) as gateway:
        url = gateway.base_url.replace("http://", "ws://") + "/ws/edgetest.v1.KitchenService/Echo"
        async with connect(url, subprotocols=["edge.grpc-ws.v1"], open_timeout=5) as ws:
            await ws.send(json.dumps({"message": {"stringValue": "hi"}}))
            with contextlib.suppress(Exception):
                while True:
                    await ws.recv()
    server, upstream = pair(exporter)
    assert server.name == ECHO
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 101
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert upstream.attributes is not None and upstream.attributes["rpc.grpc.status_code"] == 0
    # the span ended in the socket's own context: OpenTelemetry detached it without a word
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async with serve_asgi(upstream_app) as port:
        yield port


async def test_proxied_call_gets_spans_and_upstream_sees_the_client_span(
    traced: Traced, http_port: int, exporter: InMemorySpanExporter
) -> None:
    config = make_config(
        closed_port(),
        extra={
            "http_upstreams": {"web": {"url": f"http://127.0.0.1:{http_port}"}},
            "proxy_routes": [{"prefix": "/api", "upstream": "web"}],
        },
    )
    async with traced(config) as gateway, gateway.client() as client:
        parent = {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"}
        echo = (await client.get("/api/things", headers=parent)).json()
    server, upstream = pair(exporter)
    assert server.name == "proxy:/api"
    assert upstream.name == "GET proxy:/api"
    assert upstream.attributes is not None
    assert upstream.attributes["http.response.status_code"] == 200
    assert "rpc.system" not in (server.attributes or {})
    trace, span = hex_ids(upstream)
    assert trace == TRACE
    assert [v for n, v in echo["headers"] if n == "traceparent"] == [f"00-{trace}-{span}-01"]


async def test_unsampled_trace_records_nothing_but_still_propagates(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        response = await client.post(
            "/v1/inspect", json={}, headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-00"}
        )
    version, trace, span, flags = response.json()["metadata"]["traceparent"].split("-")
    assert (version, trace, flags) == ("00", TRACE, "00")
    assert span != CLIENT_SPAN
    assert exporter.get_finished_spans() == ()


async def test_unmatched_path_is_a_server_span_named_by_method(
    traced: Traced, config: Config, exporter: InMemorySpanExporter
) -> None:
    async with traced(config) as gateway, gateway.client() as client:
        assert (await client.get("/nowhere")).status_code == 404
    (server,) = exporter.get_finished_spans()
    assert server.kind is SpanKind.SERVER and server.name == "GET"
    assert server.status.status_code is StatusCode.UNSET
