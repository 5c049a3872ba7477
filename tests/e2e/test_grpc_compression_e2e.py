"""gRPC message compression to and from real grpc.aio upstreams, through both clients.

The upstream is a real grpc.aio server (compressing its replies with gzip or deflate when
the client accepts them, ``grpc.aio.server(compression=...)``), reached through a wire
tap (tests/grpc_wire_tap.py) that shows what went over the wire: the headers each side
sent and each message's Compressed-Flag. grpc.aio servers hide both from the handler, so
without the tap a test could not tell a compressed exchange from a plain one. Unary calls
run for both clients (``client: grpcio`` and ``client: lean``); streams always use
grpc.aio.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from conftest import make_config, run_gateway
from grpc_raw_upstream import CannedReply, grpc_message, raw_upstream
from grpc_wire_tap import WireTap, wire_tap
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kitchen_upstream import Kitchen, Streams
from loop_thread import LoopThread, running

from edge.call import Call
from edge.errors import UpstreamStatus
from edge.routes import load_routes
from edge.upstream.grpc import GrpcTerminal
from edge.upstream_settings import upstream_settings
from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

ECHO = "/edgetest.v1.KitchenService/Echo"
COUNT = "/edgetest.v1.StreamService/Count"
ALGORITHMS = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}


@pytest.fixture(params=["grpcio", "lean"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def compressing_kitchen(algorithm: str | None) -> AsyncIterator[WireTap]:
    """The kitchen upstream, compressing replies with ``algorithm`` (None: never), tapped."""
    server = grpc.aio.server(compression=ALGORITHMS[algorithm] if algorithm else None)
    kitchen = Kitchen()
    kitchen.streams = Streams()
    pb_grpc.add_KitchenServiceServicer_to_server(kitchen, server)
    pb_grpc.add_StreamServiceServicer_to_server(kitchen.streams, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with wire_tap(port) as tap:
            yield tap
    finally:
        await server.stop(grace=None)


@contextlib.asynccontextmanager
async def gateway(tap: WireTap, client: str, **upstream: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = {"address": f"127.0.0.1:{tap.port}", "timeout": "5s", "client": client, **upstream}
    config = make_config(tap.port, extra={"upstreams": {"kitchen": settings}})
    async with run_gateway(config) as running, running.client() as http:
        yield http


BIG = "compressible " * 400  # 5.2 kB that gzip makes a few dozen bytes


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
async def test_compressed_replies_are_decoded_when_accepted(client: str, algorithm: str) -> None:
    async with (
        compressing_kitchen(algorithm) as tap,
        gateway(tap, client, accept_compression=[algorithm]) as http,
    ):
        response = await http.post("/v1/kitchen", json={"stringValue": BIG})
    assert response.status_code == 200, response.text
    assert response.json() == {"stringValue": BIG}
    [call] = tap.calls(ECHO)
    assert algorithm in (call.request.field("grpc-accept-encoding") or "").split(", ")
    assert call.response.field("grpc-encoding") == algorithm
    [(flag, length)] = call.response.messages
    assert flag == 1 and length < len(BIG) // 10  # it really came compressed


async def test_a_server_that_compresses_unasked_is_still_understood(client: str) -> None:
    # grpc.aio servers built with compression= compress whatever the client advertised;
    # by default the lean client advertises nothing, yet both clients must decode it
    async with compressing_kitchen("gzip") as tap, gateway(tap, client) as http:
        response = await http.post("/v1/kitchen", json={"stringValue": BIG})
    assert response.status_code == 200, response.text
    assert response.json() == {"stringValue": BIG}
    [call] = tap.calls(ECHO)
    advertised = call.request.field("grpc-accept-encoding")
    # grpc.aio advertises every algorithm it decodes; the lean client only what is configured
    assert advertised == ("identity, deflate, gzip" if client == "grpcio" else None)
    assert call.request.field("grpc-encoding") is None
    assert call.response.field("grpc-encoding") == "gzip"
    assert [flag for flag, _ in call.response.messages] == [1]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
async def test_requests_are_compressed_when_configured(client: str, algorithm: str) -> None:
    async with (
        compressing_kitchen(None) as tap,
        gateway(tap, client, request_compression=algorithm) as http,
    ):
        big = await http.post("/v1/kitchen", json={"stringValue": BIG})
        small = await http.get("/v1/kitchen/tiny")
    assert big.status_code == 200 and big.json() == {"stringValue": BIG}  # the server inflated it
    assert small.status_code == 200 and small.json() == {"stringValue": "tiny"}
    first, second = tap.calls(ECHO)
    for call in (first, second):
        assert call.request.field("grpc-encoding") == algorithm
        # the lean client advertises the algorithm it compresses with, as grpc.aio does
        advertised = call.request.field("grpc-accept-encoding") or ""
        assert algorithm in advertised.split(", ")
    [(flag, length)] = first.request.messages
    assert flag == 1 and length < len(BIG) // 10
    # a message that compression would not make smaller goes as it is, flag clear
    assert [flag for flag, _ in second.request.messages] == [0]


async def test_a_server_stream_is_decoded_message_by_message(client: str) -> None:
    async with (
        compressing_kitchen("gzip") as tap,
        gateway(tap, client, accept_compression=["gzip"]) as http,
    ):
        response = await http.get(
            "/v1/count/3", params={"padding": 300}, headers={"accept": "application/json"}
        )
    assert response.status_code == 200, response.text
    padding = "x" * 300
    assert response.json() == [
        {"padding": padding},
        {"index": 1, "padding": padding},
        {"index": 2, "padding": padding},
    ]
    [call] = tap.calls(COUNT)
    assert call.response.field("grpc-encoding") == "gzip"
    assert [flag for flag, _ in call.response.messages] == [1, 1, 1]
    assert all(length < 100 for _, length in call.response.messages)


async def test_accepting_gzip_still_takes_plain_replies(client: str) -> None:
    # advertising gzip is an offer, not a demand: a server that answers plainly is fine
    async with (
        compressing_kitchen(None) as tap,
        gateway(tap, client, accept_compression=["gzip", "deflate"]) as http,
    ):
        response = await http.post("/v1/kitchen", json={"stringValue": BIG})
    assert response.status_code == 200 and response.json() == {"stringValue": BIG}
    [call] = tap.calls(ECHO)
    assert call.request.field("grpc-accept-encoding") == "identity, deflate, gzip"
    assert [flag for flag, _ in call.response.messages] == [0]


# -- the lean client against grpc.aio, reply by reply ------------------------------------

LIMIT = 4000  # max_response_bytes: decompressed sizes around it meet both limits


class Clients(LoopThread):
    """One raw upstream and a GrpcTerminal per client, on a loop of their own (hypothesis
    tests are synchronous)."""

    async def serve(self, stop: asyncio.Event) -> None:
        async with raw_upstream(CannedReply(b"")) as upstream:
            terminals, methods = {}, {}
            for name in ("grpcio", "lean"):
                settings = {
                    "address": f"127.0.0.1:{upstream.port}",
                    "client": name,
                    "max_response_bytes": LIMIT,
                    "accept_compression": ["gzip"],
                }
                config = make_config(upstream.port, extra={"upstreams": {"kitchen": settings}})
                routes = load_routes(config)
                terminal = GrpcTerminal(upstream_settings(config))
                terminal.open(routes.upstream_methods())
                terminals[name] = terminal
                methods[name] = next(m for _, m in routes.upstream_methods() if m.name == "Echo")
            self.held.update(upstream=upstream, terminals=terminals, methods=methods)
            self.ready.set()
            try:
                await stop.wait()
            finally:
                for terminal in terminals.values():
                    await terminal.close()

    def answer(self, reply: CannedReply, client: str) -> Any:
        """What ``client`` makes of ``reply``: the message's bytes, or (code, message)."""

        async def call() -> Any:
            self.held["upstream"].reply = reply
            method = self.held["methods"][client]
            request = Call(
                "kitchen", method.full_name, [], 5.0, method=method, request=method.input_type()
            )
            try:
                got = await self.held["terminals"][client](request)
            except UpstreamStatus as error:
                return (error.grpc_code, error.message)
            return None if got.message is None else got.message.SerializeToString()

        return self.run(call(), 30)


@pytest.fixture(scope="module")
def clients() -> Iterator[Clients]:
    yield from running(Clients())


# messages from empty to well past LIMIT (and past C-core's 1 KiB of slack) once
# inflated, compressible but for a random tail
MESSAGES = st.builds(
    lambda size, tail: pb.Kitchen(string_value="ab" * (size // 2) + tail).SerializeToString(),
    st.integers(0, 6000) | st.integers(LIMIT - 10, LIMIT + 1034),  # the limit and slack
    st.binary(max_size=200).map(lambda raw: raw.hex()),
)
PACKINGS = {
    "plain": lambda raw: raw,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "gzip, cut": lambda raw: gzip.compress(raw)[: max(1, len(gzip.compress(raw)) // 2)],
    "gzip, bad checksum": lambda raw: gzip.compress(raw)[:-8] + bytes(8),
    "gzip, then more": lambda raw: gzip.compress(raw) + b"\x00more",
    "empty": lambda raw: b"",
}
# "match": the packing's own name; the rest are right only by chance
ENCODINGS = st.sampled_from(
    ["match"] * 3 + [None, "identity", "gzip", "deflate", " gzip", "GZIP", "snappy"]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    message=MESSAGES,
    packing=st.sampled_from(["gzip", "gzip", "deflate", *sorted(PACKINGS)]),
    flag=st.sampled_from([0, 1, 1]),
    encoding=ENCODINGS,
)
def test_the_lean_client_answers_compressed_replies_as_grpc_aio_does(
    clients: Clients, message: bytes, packing: str, flag: int, encoding: str | None
) -> None:
    body = PACKINGS[packing](message)
    if encoding == "match":
        encoding = packing.split(",")[0] if packing in ("gzip", "deflate") else None
    assume(len(body) <= LIMIT)  # over-long on the wire: the existing limit, tested elsewhere
    headers = (("grpc-encoding", encoding),) if encoding is not None else ()
    reply = CannedReply(grpc_message(body, compressed=bool(flag)), headers)
    lean = clients.answer(reply, "lean")
    grpcio = clients.answer(reply, "grpcio")
    if grpcio is None:  # bytes that are not the message: grpc.aio hands back None, lean
        # fails the call as grpc's synchronous client does (a difference older than this)
        assert lean == (13, "Exception deserializing response!")
    else:
        assert lean == grpcio
