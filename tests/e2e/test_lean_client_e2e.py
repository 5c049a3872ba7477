"""The experimental lean unary client (``client: lean``) against real grpc.aio upstreams.

Most checks run for both clients (the ``client`` fixture), so the lean client is held to
exactly what grpc.aio does: transcoding, every status mapping, details, metadata both
ways, deadlines, message limits. The rest are the lean client's own risks: a small
MAX_CONCURRENT_STREAMS, an upstream restarting, GOAWAY, cancellation, and streaming
methods of a lean upstream (which still go through grpc.aio).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from conftest import make_config, run_gateway
from http_upstream import serve_asgi, upstream_app
from kitchen_upstream import Kitchen, Streams
from test_errors_e2e import CODE_TO_HTTP

from edge.call import Call
from edge.errors import ConfigError
from edge.routes import load_routes
from edge.upstream import lean
from edge.upstream.grpc import GrpcTerminal
from edge.upstream_settings import upstream_settings
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["grpcio", "lean"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def upstream(port: int, client: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "kitchen": {"address": f"127.0.0.1:{port}", "timeout": "5s", "client": client, **extra}
        }
    }


@contextlib.asynccontextmanager
async def gateway_for(port: int, client: str, **extra: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = upstream(port, client, **extra.pop("upstream", {}))
    config = make_config(port, extra={**settings, **extra})
    async with run_gateway(config) as gateway, gateway.client() as http:
        yield http


async def start_kitchen_at(port: int = 0, **options: Any) -> tuple[grpc.aio.Server, int, Kitchen]:
    """The test upstream on ``port`` (0: a free one) with extra grpc server options."""
    server = grpc.aio.server(options=list(options.items()))
    kitchen = Kitchen()
    kitchen.streams = Streams()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    pb_grpc.add_StreamServiceServicer_to_server(kitchen.streams, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound, kitchen


# -- the same answers from both clients -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "expected"),
    [
        ("GET", "/v1/kitchen/abc", None, {"stringValue": "abc"}),
        (
            "POST",
            "/v1/kitchen",
            {"stringValue": "x", "int32Value": 4},
            {"stringValue": "x", "int32Value": 4},
        ),
        (
            "PATCH",
            "/v1/kitchen/abc/nested?int32Value=3",
            {"name": "n"},
            # a PATCH gets the request's one FieldMask from its body
            {"stringValue": "abc", "int32Value": 3, "nested": {"name": "n"}, "fieldMask": "name"},
        ),
        (
            "POST",
            "/v1/kitchen/abc:wash",
            {"int32Value": 1},
            {"stringValue": "abc", "int32Value": 1},
        ),
        ("GET", "/v1/kitchen/a%2Fb%20c%C3%A9", None, {"stringValue": "a/b cé"}),
        ("POST", "/edgetest.v1.KitchenService/Plain", {"stringValue": "p"}, {"stringValue": "p"}),
        ("GET", "/v1/nested-only/x", None, {}),
    ],
)
async def test_transcoding(
    kitchen_upstream: Any, client: str, method: str, url: str, body: Any, expected: Any
) -> None:
    port, _ = kitchen_upstream
    async with gateway_for(port, client) as http:
        response = await http.request(method, url, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == expected


async def test_proto3_json_round_trip(kitchen_upstream: Any, client: str) -> None:
    body = {
        "stringValue": "s",
        "int64Value": "-12",
        "uint64Value": "12",
        "doubleValue": "Infinity",
        "bytesValue": base64.b64encode(b"\x00\x01binary").decode(),
        "enumValue": "FLAVOUR_SOUR",
        "nested": {"name": "n", "inners": [{"label": "a"}, {"count": 2}]},
        "labels": {"k": "v"},
        "timestamp": "1970-01-01T00:00:01Z",
        "structValue": {"a": [1, "x", None, True, {"b": 2.5}]},
    }
    port, _ = kitchen_upstream
    async with gateway_for(port, client) as http:
        response = await http.post("/v1/kitchen", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == body


async def test_every_status_maps_to_http(kitchen_upstream: Any, client: str) -> None:
    port, _ = kitchen_upstream
    async with gateway_for(port, client) as http:
        for code, http_status in CODE_TO_HTTP:
            message = f"failed {code}: 100% ü"  # percent-encoded on the wire
            response = await http.post("/v1/fail", json={"code": code, "message": message})
            assert response.status_code == http_status, code
            assert response.json() == {"code": code, "message": message, "details": []}


async def test_details_headers_and_trailers(kitchen_upstream: Any, client: str) -> None:
    port, _ = kitchen_upstream
    async with gateway_for(port, client) as http:
        response = await http.post(
            "/v1/fail",
            json={
                "code": 3,
                "message": "bad title",
                "badField": "book.title",
                "trailers": {"x-trace": "t1"},
                "headers": {"x-shard": "7"},
            },
        )
        trailers_only = await http.post("/v1/fail", json={"code": 5, "message": "gone"})
    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "book.title", "description": "is bad"}],
        }
    ]
    assert response.headers["grpc-trailer-x-trace"] == "t1"
    assert response.headers["grpc-metadata-x-shard"] == "7"
    assert "grpc-trailer-grpc-status-details-bin" not in response.headers
    assert trailers_only.status_code == 404
    assert not [h for h in trailers_only.headers if h.startswith("grpc-")]


async def test_metadata_both_ways(kitchen_upstream: Any, client: str) -> None:
    port, _ = kitchen_upstream
    async with gateway_for(port, client) as http:
        response = await http.post(
            "/v1/inspect",
            json={"stringValue": "i"},
            headers={
                "authorization": "Bearer abc",
                "grpc-metadata-tenant": "acme",
                "grpc-metadata-blob-bin": base64.b64encode(b"\x00\xff\x10").decode(),
                "grpc-metadata-empty-bin": "",
            },
        )
    assert response.status_code == 200, response.text
    metadata = response.json()["metadata"]
    assert metadata["authorization"] == "Bearer abc"
    assert metadata["tenant"] == "acme"
    assert metadata["blob-bin"] == "bin:00ff10"
    assert metadata["empty-bin"] == "bin:"
    assert metadata["x-forwarded-for"] == "127.0.0.1"


async def test_deadlines(kitchen_upstream: Any, client: str) -> None:
    port, kitchen = kitchen_upstream
    async with gateway_for(port, client) as http:
        default = await http.post("/v1/inspect", json={})
        shorter = await http.post("/v1/inspect", json={}, headers={"grpc-timeout": "1500m"})
        slow = await http.post("/v1/sleep", json={"seconds": 2}, headers={"grpc-timeout": "100m"})
        after = await http.post("/v1/kitchen", json={"stringValue": "still usable"})
        for _ in range(100):  # the upstream learns of it (grpc's deadline, or our RST_STREAM)
            if kitchen.cancelled:
                break
            await asyncio.sleep(0.02)
    assert 4.0 < default.json()["deadlineSeconds"] <= 5.1
    assert 1.0 < shorter.json()["deadlineSeconds"] <= 1.6
    assert slow.status_code == 504
    assert slow.json()["code"] == 4 and "Deadline Exceeded" in slow.json()["message"]
    assert after.status_code == 200
    assert kitchen.cancelled == 1


async def test_large_messages_and_limits(kitchen_upstream: Any, client: str) -> None:
    port, _ = kitchen_upstream
    big = "x" * (3 * 1024 * 1024)  # many DATA frames, past the 64 KiB default windows
    async with gateway_for(
        port,
        client,
        upstream={"max_request_bytes": "8MiB", "max_response_bytes": "8MiB"},
        transcoding={"max_body_bytes": "8MiB"},
    ) as http:
        response = await http.post("/v1/kitchen", json={"stringValue": big})
    assert response.status_code == 200
    assert response.json() == {"stringValue": big}
    limits = {"max_request_bytes": 2000, "max_response_bytes": 4000}
    async with gateway_for(port, client, upstream=limits) as http:
        sent = await http.post("/v1/kitchen", json={"stringValue": "x" * 3000})
        received = await http.post(
            "/v1/inspect",
            json={"stringValue": "x" * 1990},
            headers={"grpc-metadata-pad": "y" * 3000},
        )
        fits = await http.post("/v1/kitchen", json={"stringValue": "x" * 1000})
    for response in (sent, received):
        assert response.status_code == 429, response.text
        assert response.json()["code"] == 8
        assert "larger than max" in response.json()["message"]
    assert fits.status_code == 200


async def test_an_upstream_that_is_not_grpc_is_unknown_not_a_huge_message(client: str) -> None:
    # A plain HTTP/2 server (Hypercorn speaks h2c) answering JSON: its body must not be
    # read as gRPC (the JSON's first bytes as a length prefix once said "message too big").
    async with serve_asgi(upstream_app) as port:
        async with gateway_for(port, client) as http:
            response = await http.get("/v1/kitchen/not-grpc")
    assert response.status_code == 500
    assert response.json()["code"] == 2


async def test_dead_upstream_is_503(client: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with gateway_for(port, client) as http:
        first = await http.get("/v1/kitchen/x")
        again = await http.get("/v1/kitchen/x")
    for response in (first, again):
        assert response.status_code == 503
        assert response.json()["code"] == 14 and response.json()["message"]


async def test_cancelled_call_resets_its_stream(kitchen_upstream: Any, client: str) -> None:
    """A cancelled task cancels its upstream call (the lean client sends RST_STREAM CANCEL)."""
    port, kitchen = kitchen_upstream
    config = make_config(port, extra=upstream(port, client))
    routes = load_routes(config)
    method = next(m for _, m in routes.upstream_methods() if m.name == "Sleep")
    terminal = GrpcTerminal(upstream_settings(config))
    terminal.open(routes.upstream_methods())
    try:
        request = method.input_type(seconds=3)
        call = Call("kitchen", method.full_name, [], 5.0, method=method, request=request)
        task = asyncio.create_task(terminal(call))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if kitchen.cancelled:
                break
            await asyncio.sleep(0.02)
        assert kitchen.cancelled == 1
        echo = next(m for _, m in routes.upstream_methods() if m.name == "Echo")
        again = Call("kitchen", echo.full_name, [], 5.0, method=echo, request=echo.input_type())
        assert (await terminal(again)).message == echo.output_type()  # the connection lives on
    finally:
        await terminal.close()


async def test_client_disconnect_cancels_the_upstream_call(
    kitchen_upstream: Any, client: str
) -> None:
    port, kitchen = kitchen_upstream
    async with gateway_for(port, client) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/sleep", json={"seconds": 1}, timeout=0.2)
        for _ in range(50):
            if kitchen.cancelled:
                break
            await asyncio.sleep(0.02)
    assert kitchen.cancelled == 1


# -- the lean client's own risks ----------------------------------------------------------


async def test_many_calls_over_a_small_stream_limit() -> None:
    server, port, kitchen = await start_kitchen_at(**{"grpc.max_concurrent_streams": 4})
    try:
        async with gateway_for(port, "lean") as http:

            async def one(index: int) -> httpx.Response:
                if index % 2:
                    return await http.post("/v1/sleep", json={"seconds": 0.02})
                return await http.get(f"/v1/kitchen/call{index}")

            responses = await asyncio.gather(*(one(index) for index in range(100)))
    finally:
        await server.stop(grace=None)
    assert [r.status_code for r in responses] == [200] * 100
    assert sorted(k.string_value for k in kitchen.seen) == sorted(
        f"call{i}" for i in range(0, 100, 2)
    )


async def test_upstream_restart_fails_unavailable_then_recovers() -> None:
    server, port, _ = await start_kitchen_at()
    async with gateway_for(port, "lean") as http:
        assert (await http.get("/v1/kitchen/before")).status_code == 200
        await server.stop(grace=None)
        down = [await http.get("/v1/kitchen/down") for _ in range(3)]
        server, _, _ = await start_kitchen_at(port)
        try:
            for _ in range(100):  # the client backs off for at most a few seconds
                recovered = await http.get("/v1/kitchen/after")
                if recovered.status_code == 200:
                    break
                await asyncio.sleep(0.1)
        finally:
            await server.stop(grace=None)
    for response in down:
        assert response.status_code == 503
        assert response.json()["code"] == 14
    assert recovered.status_code == 200
    assert recovered.json() == {"stringValue": "after"}


async def test_graceful_goaway_lets_calls_in_flight_finish() -> None:
    server, port, _ = await start_kitchen_at()
    async with gateway_for(port, "lean") as http:
        in_flight = asyncio.create_task(http.post("/v1/sleep", json={"seconds": 0.5}))
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(server.stop(grace=3))  # GOAWAY, then wait for calls
        await asyncio.sleep(0.1)
        during = await http.get("/v1/kitchen/new")  # needs a new connection: refused
        finished = await in_flight
        await stopping
    assert finished.status_code == 200
    assert during.status_code == 503 and during.json()["code"] == 14


async def test_keepalive_fails_a_silent_upstream_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A peer that went away without a FIN (a dead host, a NAT that forgot the flow) is
    # found by the unanswered PING, not by each call's deadline.
    monkeypatch.setattr(lean, "KEEPALIVE_TIME", 0.2)
    monkeypatch.setattr(lean, "KEEPALIVE_TIMEOUT", 0.2)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS, then nothing
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway_for(port, "lean", upstream={"timeout": "20s"}) as http:
            started = asyncio.get_running_loop().time()
            response = await http.get("/v1/kitchen/hello")
            took = asyncio.get_running_loop().time() - started
    finally:
        server.close()
        await server.wait_closed()
    assert response.status_code == 503
    assert "keepalive" in response.json()["message"]
    assert took < 10  # the deadline was 20 s


async def test_keepalive_pings_are_answered_during_a_slow_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lean, "KEEPALIVE_TIME", 0.1)
    monkeypatch.setattr(lean, "KEEPALIVE_TIMEOUT", 0.3)
    server, port, _ = await start_kitchen_at(
        **{"grpc.http2.min_ping_interval_without_data_ms": 10, "grpc.http2.max_ping_strikes": 0}
    )
    try:
        async with gateway_for(port, "lean") as http:
            response = await http.post("/v1/sleep", json={"seconds": 1.0})
    finally:
        await server.stop(grace=None)
    assert response.status_code == 200


async def test_several_addresses_round_robin_and_skip_a_dead_one() -> None:
    first, first_port, first_kitchen = await start_kitchen_at()
    second, second_port, second_kitchen = await start_kitchen_at()
    addresses = [f"127.0.0.1:{first_port}", f"127.0.0.1:{second_port}"]
    try:
        upstream = {"address": None, "addresses": addresses}
        async with gateway_for(first_port, "lean", upstream=upstream) as http:
            spread = [await http.get(f"/v1/kitchen/rr{i}") for i in range(10)]
            await second.stop(grace=None)
            after = [await http.get(f"/v1/kitchen/left{i}") for i in range(6)]
    finally:
        await first.stop(grace=None)
        await second.stop(grace=None)
    assert [r.status_code for r in spread + after] == [200] * 16
    assert len(first_kitchen.seen) - 6 == 5 and len(second_kitchen.seen) == 5


async def test_pick_first_passes_over_an_address_that_refuses() -> None:
    server, port, kitchen = await start_kitchen_at()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"  # bound, not listening: refused
        upstream = {
            "address": None,
            "addresses": [dead, f"127.0.0.1:{port}"],
            "load_balancing": "pick_first",
        }
        try:
            async with gateway_for(port, "lean", upstream=upstream) as http:
                responses = [await http.get(f"/v1/kitchen/pf{i}") for i in range(4)]
        finally:
            await server.stop(grace=None)
    assert [r.status_code for r in responses] == [200] * 4
    assert len(kitchen.seen) == 4


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[int]:
    """A replica that accepts connections and then never answers (no SETTINGS)."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("balancing", ["round_robin", "pick_first"])
async def test_a_replica_that_accepts_and_hangs_gets_no_calls(balancing: str) -> None:
    # grpc's balancers send calls only to connected addresses; a blackholed replica must
    # not cost every other call its deadline (pick_first tries the next after 250 ms)
    server, port, kitchen = await start_kitchen_at()
    try:
        async with hung_server() as hung:
            addresses = [f"127.0.0.1:{hung}", f"127.0.0.1:{port}"]
            if balancing == "round_robin":
                addresses.reverse()  # the good one first: the hung one is next in turn
            upstream = {
                "address": None,
                "addresses": addresses,
                "load_balancing": balancing,
                "timeout": "2s",
            }
            async with gateway_for(port, "lean", upstream=upstream) as http:
                responses = [await http.get(f"/v1/kitchen/h{i}") for i in range(6)]
    finally:
        await server.stop(grace=None)
    assert [r.status_code for r in responses] == [200] * 6
    assert len(kitchen.seen) == 6


async def test_streaming_methods_on_a_lean_upstream_use_grpc_aio(kitchen_upstream: Any) -> None:
    port, kitchen = kitchen_upstream
    async with gateway_for(port, "lean") as http:
        streamed = await http.get("/v1/count/3", headers={"accept": "application/json"})
        summed = await http.post("/v1/sum", content=b'{"value": 2}\n{"value": 5}\n')
        unary = await http.get("/v1/kitchen/alongside")
    assert streamed.json() == [{}, {"index": 1}, {"index": 2}]
    assert summed.json() == {"sum": "7", "count": 2}
    assert unary.json() == {"stringValue": "alongside"}
    assert kitchen.streams.received == [2, 5]


async def test_header_memo_is_dropped_when_the_table_changes() -> None:
    """Memoised decodings are reused only while the server's dynamic table is unchanged."""
    from hpack import Encoder

    from edge.upstream.lean import Connection

    connection, encoder = Connection(1024), Encoder()
    fields = [(b":status", b"200"), (b"x-shard", b"7")]
    first = encoder.encode(fields)  # inserts x-shard: never memoised
    assert connection._decode(first) == fields and not connection._memo
    steady = encoder.encode(fields)  # all indexed now: memoised, and the same list reused
    assert connection._decode(steady) is connection._decode(steady)
    changed = encoder.encode([(b":status", b"200"), (b"x-shard", b"8")])  # inserts 8
    assert connection._decode(changed) == [(b":status", b"200"), (b"x-shard", b"8")]
    assert not connection._memo  # the insertion emptied it
    again = encoder.encode(fields)  # the same bytes as before would mean another index now
    assert connection._decode(again) == fields


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"address": "127.0.0.1:1", "outlier_detection": {}}, "no outlier detection"),
        ({"address": "unix:/tmp/socket"}, "host:port"),
        ({"addresses": ["127.0.0.1:1", "dns:///x:2"]}, "IP addresses with ports"),
    ],
)
def test_lean_config_limits_are_checked_at_load(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        make_config(1, extra={"upstreams": {"kitchen": {**settings, "client": "lean"}}})
    assert "upstreams.kitchen" in str(caught.value)
