"""Hostile bodies: too large, too deep, and JSON that parsers disagree about.

The documented limits (docs/http-mapping.md, docs/websocket.md): a body over
``transcoding.max_body_bytes`` is a 413 (code 8), refused from its ``Content-Length``
before reading or as soon as a chunked body passes the limit; bad JSON is a 400 (code 3);
each NDJSON line of a client stream is held to the same limit; a WebSocket frame over
``websocket.max_message_bytes`` closes the socket with 1009; an unexpected failure is a
500 that costs one request, never the worker. Every refusal here must be the exact status
with a ``google.rpc.Status`` body, must leave the kitchen upstream without the refused
message, and must leave the gateway serving: each test ends with a good request on a fresh
connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from conftest import make_config, run_gateway
from recording import Edge, body_of, raw_request, rpc_status, start_edge, status_of, token
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import kitchen_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 512 * 1024  # transcoding.max_body_bytes here: room for 100k levels of nesting
FRAME_LIMIT = 64 * 1024  # websocket.max_message_bytes
PROTOCOL = "edge.grpc-ws.v1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running() -> AsyncIterator[Edge]:
    async with start_edge(
        transcoding={"max_body_bytes": LIMIT},
        # a short ping interval: a closed socket's ping loop holds the shutdown until it wakes
        websocket={"max_message_bytes": FRAME_LIMIT, "ping_interval": "100ms"},
    ) as edge:
        yield edge


@pytest.fixture
def edge(running: Edge) -> Edge:
    """The module's gateway, its upstreams' records cleared for this test."""
    running.http.requests.clear()
    running.kitchen.received.clear()
    running.kitchen.streams.received.clear()
    running.kitchen.streams.cancelled.clear()
    return running


def post(path: str, *headers: str, body: bytes = b"") -> bytes:
    """A JSON POST, byte for byte, with the body's Content-Length unless it is chunked."""
    lines = [f"POST {path} HTTP/1.1", "Host: edge.test", "Connection: close"]
    lines += ["Content-Type: application/json", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def padded(size: int) -> bytes:
    """A valid JSON object of exactly ``size`` bytes."""
    return b'{"stringValue": "' + b"x" * (size - 19) + b'"}'


async def assert_still_serving(edge: Edge) -> None:
    """A good request on a fresh connection is answered, and reaches the upstream."""
    before = unary_calls(edge)
    answer = await raw_request(
        edge.gateway.port, post("/v1/kitchen", body=b'{"stringValue": "ok"}')
    )
    assert status_of(answer) == 200, answer
    assert json.loads(body_of(answer)) == {"stringValue": "ok"}
    assert unary_calls(edge) == before + 1


def unary_calls(edge: Edge) -> int:
    """Calls the upstream's KitchenService saw; a client stream the test before refused
    (StreamService) may still be arriving there, late, on a loaded machine."""
    return sum(1 for method, _ in edge.kitchen.received if "KitchenService" in method)


AUTHORIZED = f"Authorization: Bearer {token()}"
# transcoded routes that take a body: public, protected, unannotated, with a path variable
BODY_ROUTES = [
    pytest.param("/v1/kitchen", (), id="post"),
    pytest.param("/v1/inspect", (AUTHORIZED,), id="protected"),
    pytest.param("/edgetest.v1.KitchenService/Plain", (), id="generic"),
    pytest.param("/v1/kitchen/x:wash", (), id="custom-verb"),
]


# -- too large ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "headers"), BODY_ROUTES)
async def test_a_declared_length_over_the_limit_is_refused_413(
    edge: Edge, path: str, headers: tuple[str, ...]
) -> None:
    answer = await raw_request(edge.gateway.port, post(path, *headers, body=padded(LIMIT + 1)))
    assert status_of(answer) == 413, answer[:300]
    status = rpc_status(body_of(answer), 8)
    assert status["message"] == f"request body of {LIMIT + 1} bytes exceeds the limit of {LIMIT}"
    assert edge.kitchen.received == []
    await assert_still_serving(edge)


@pytest.mark.parametrize(("path", "headers"), BODY_ROUTES)
async def test_a_body_of_exactly_the_limit_is_served(
    edge: Edge, path: str, headers: tuple[str, ...]
) -> None:
    answer = await raw_request(edge.gateway.port, post(path, *headers, body=padded(LIMIT)))
    assert status_of(answer) == 200, answer[:300]
    assert len(edge.kitchen.received) == 1


@pytest.mark.parametrize(("path", "headers"), BODY_ROUTES)
@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([padded(LIMIT + 1)], id="one-chunk"),
        pytest.param([b"{", b" " * (LIMIT - 1), b" }"], id="crosses-in-the-last-chunk"),
        pytest.param([b"{"] + [b" " * 4096] * (LIMIT // 4096 + 1) + [b"}"], id="many-chunks"),
    ],
)
async def test_a_chunked_body_that_grows_past_the_limit_is_refused_413(
    edge: Edge, path: str, headers: tuple[str, ...], chunks: list[bytes]
) -> None:
    request = post(path, *headers, "Transfer-Encoding: chunked", body=chunked(*chunks))
    answer = await raw_request(edge.gateway.port, request)
    assert status_of(answer) == 413, answer[:300]
    status = rpc_status(body_of(answer), 8)
    assert status["message"] == f"request body exceeds the limit of {LIMIT} bytes"
    assert edge.kitchen.received == []
    await assert_still_serving(edge)


async def test_a_chunked_body_of_exactly_the_limit_is_served(edge: Edge) -> None:
    body = padded(LIMIT)
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    request = post("/v1/kitchen", "Transfer-Encoding: chunked", body=chunked(*pieces))
    answer = await raw_request(edge.gateway.port, request)
    assert status_of(answer) == 200, answer[:300]


async def test_a_large_body_without_a_token_is_refused_401_not_413(edge: Edge) -> None:
    """Credentials come first: a client without them learns nothing about the limit."""
    answer = await raw_request(edge.gateway.port, post("/v1/inspect", body=padded(LIMIT + 1)))
    assert status_of(answer) == 401
    rpc_status(body_of(answer), 16)
    assert edge.kitchen.received == []


# -- too deep -----------------------------------------------------------------------------


def nested(opening: bytes, closing: bytes, depth: int, inner: bytes = b"1") -> bytes:
    return opening * depth + inner + closing * depth


DEEP = [
    pytest.param(b"[" * 100_000, id="100k-open-brackets"),
    pytest.param(b'{"a":' * 100_000, id="100k-open-objects"),
    pytest.param(nested(b"[", b"]", 100_000, b""), id="100k-closed-brackets"),
    pytest.param(b'{"structValue": ' + nested(b'{"a":', b"}", 50_000) + b"}", id="50k-in-a-struct"),
    # under the JSON parser's depth limit, over protobuf's 100 levels of messages
    pytest.param(b'{"structValue": ' + nested(b'{"a":', b"}", 200) + b"}", id="200-in-a-struct"),
    pytest.param(b'{"value": ' + nested(b"[", b"]", 200) + b"}", id="200-in-a-value"),
    pytest.param(b'{"listValue": ' + nested(b"[", b"]", 500) + b"}", id="500-in-a-list"),
    pytest.param(
        b'{"any": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": '
        + nested(b'{"a":', b"}", 200)
        + b"}}",
        id="200-in-an-any",
    ),
]


@pytest.mark.parametrize("body", DEEP)
async def test_deep_nesting_is_a_400_and_the_worker_lives(edge: Edge, body: bytes) -> None:
    assert len(body) <= LIMIT  # refused for its depth, not its size
    answer = await raw_request(edge.gateway.port, post("/v1/kitchen", body=body))
    assert status_of(answer) == 400, answer[:300]
    rpc_status(body_of(answer), 3)
    assert edge.kitchen.received == []
    await assert_still_serving(edge)


async def test_nesting_within_the_limits_is_served(edge: Edge) -> None:
    body = b'{"structValue": ' + nested(b'{"a":', b"}", 30) + b"}"  # 2 messages a level
    answer = await raw_request(edge.gateway.port, post("/v1/kitchen", body=body))
    assert status_of(answer) == 200, answer[:300]


# -- JSON that parsers disagree about ------------------------------------------------------

HOSTILE_JSON = [
    # numbers
    pytest.param(b'{"int64Value": 99999999999999999999999999}', id="int64-overflow"),
    pytest.param(b'{"int32Value": 4294967296}', id="int32-overflow"),
    pytest.param(b'{"uint32Value": -1}', id="uint32-negative"),
    pytest.param(b'{"int32Value": 1.5}', id="int32-fraction"),
    pytest.param(b'{"int32Value": 1e400}', id="int32-1e400"),
    pytest.param(b'{"doubleValue": 1e400}', id="double-1e400"),
    pytest.param(b'{"doubleValue": -1e400}', id="double-minus-1e400"),
    pytest.param(b'{"floatValue": 1e39}', id="float-overflow"),
    pytest.param(b'{"doubleValue": ' + b"9" * 5000 + b"}", id="5000-digits"),
    pytest.param(b'{"doubleValue": 0.' + b"0" * 5000 + b"1e99999}", id="long-exponent"),
    pytest.param(b'{"doubleValue": NaN}', id="NaN-literal"),
    pytest.param(b'{"doubleValue": Infinity}', id="Infinity-literal"),
    pytest.param(b'{"doubleValue": -Infinity}', id="minus-Infinity-literal"),
    pytest.param(b'{"doubleValue": nan}', id="nan-literal"),
    pytest.param(b'{"int32Value": 0x10}', id="hex"),
    pytest.param(b'{"int32Value": 010}', id="leading-zero"),
    pytest.param(b'{"int32Value": +1}', id="plus-sign"),
    # text that is not UTF-8, or not the characters it says
    pytest.param(b'{"stringValue": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b'{"stringValue": "\xc0\xaf"}', id="overlong-utf8"),
    pytest.param(b'{"stringValue": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
    pytest.param(b'{"stringValue": "\xe2\x82"}', id="truncated-utf8"),
    pytest.param(b'{"stringValue": "\xf4\x90\x80\x80"}', id="beyond-u10ffff"),
    pytest.param(b"\xef\xbb\xbf" + b'{"stringValue": "a"}', id="utf8-bom"),
    pytest.param(b"\xff\xfe" + '{"stringValue": "a"}'.encode("utf-16-le"), id="utf16-bom"),
    pytest.param('{"stringValue": "a"}'.encode("utf-16-be"), id="utf16"),
    pytest.param(b'{"stringValue": "\\ud800"}', id="lone-high-surrogate"),
    pytest.param(b'{"stringValue": "\\udc00"}', id="lone-low-surrogate"),
    pytest.param(b'{"stringValue": "\\ud800\\u0041"}', id="high-surrogate-then-letter"),
    pytest.param(b'{"stringValue": "\\udc00\\ud800"}', id="surrogates-reversed"),
    pytest.param(b'{"labels": {"\\ud800": "a"}}', id="lone-surrogate-in-a-key"),
    pytest.param(b'{"stringValue": "a\x00b"}', id="raw-nul"),
    pytest.param(b'{"stringValue": "a\nb"}', id="raw-newline"),
    pytest.param(b'{"stringValue": "\\x41"}', id="bad-escape"),
    pytest.param(b'{"stringValue": "\\u00"}', id="short-escape"),
    # shape
    pytest.param(b'{"stringValue": "a"} x', id="trailing-garbage"),
    pytest.param(b'{"stringValue": "a"}{"stringValue": "b"}', id="two-documents"),
    pytest.param(b'{"stringValue": "a",}', id="trailing-comma"),
    pytest.param(b"{'stringValue': 'a'}", id="single-quotes"),
    pytest.param(b'{stringValue: "a"}', id="bare-key"),
    pytest.param(b'{"stringValue": "a" /* c */}', id="comment"),
    pytest.param(b'{"stringValue": "a"', id="unterminated"),
    pytest.param(b"[]", id="top-level-array"),
    pytest.param(b"null", id="top-level-null"),
    pytest.param(b'"x"', id="top-level-string"),
    pytest.param(b"1", id="top-level-number"),
]


@pytest.mark.parametrize("body", HOSTILE_JSON)
async def test_hostile_json_is_a_400_never_a_500(edge: Edge, body: bytes) -> None:
    answer = await raw_request(edge.gateway.port, post("/v1/kitchen", body=body))
    assert status_of(answer) == 400, answer[:300]
    rpc_status(body_of(answer), 3)
    assert edge.kitchen.received == []
    await assert_still_serving(edge)


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        pytest.param(b'{"stringValue": "a\\u0000b"}', "a\x00b", id="escaped-nul"),
        pytest.param(b'{"stringValue": "\\ud83d\\ude00"}', "\U0001f600", id="surrogate-pair"),
        pytest.param('{"stringValue": "é☃😀"}'.encode(), "é☃😀", id="multibyte-utf8"),
        pytest.param(b'{"stringValue": "\\/\\"\\\\"}', '/"\\', id="escapes"),
    ],
)
async def test_well_formed_unusual_strings_are_served(edge: Edge, body: bytes, bound: str) -> None:
    """The control for the refusals above: valid JSON text is not refused for looking odd."""
    answer = await raw_request(edge.gateway.port, post("/v1/kitchen", body=body))
    assert status_of(answer) == 200, answer[:300]
    assert edge.kitchen.seen[-1].string_value == bound


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"stringValue": "a", "stringValue": "b"}', id="top-level"),
        pytest.param(b'{"nested": {"name": "a", "name": "b"}}', id="nested"),
        pytest.param(b'{"labels": {"k": "a", "k": "b"}}', id="map-key"),
    ],
)
async def test_duplicate_keys_are_a_400(edge: Edge, body: bytes) -> None:
    answer = await raw_request(edge.gateway.port, post("/v1/kitchen", body=body))
    assert status_of(answer) == 400, answer[:300]
    rpc_status(body_of(answer), 3)
    assert edge.kitchen.received == []


# -- client streams (NDJSON) --------------------------------------------------------------


def line(value: int, padding: int = 0) -> bytes:
    return b'{"value": ' + b" " * padding + str(value).encode() + b"}\n"


def oversized(value: int) -> bytes:
    return line(value, LIMIT)  # one byte of it past the limit is enough


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([line(1), line(2), oversized(3)], id="third-line-in-its-own-chunk"),
        pytest.param([line(1) + line(2) + oversized(3)], id="all-in-one-chunk"),
        pytest.param([line(1), line(2), oversized(3)[:-1]], id="unterminated-last-line"),
        pytest.param(
            [line(1), line(2)] + [b" " * 65536] * (LIMIT // 65536 + 1) + [b"3}\n"],
            id="a-line-growing-over-many-chunks",
        ),
    ],
)
async def test_an_ndjson_line_over_the_limit_ends_the_stream_413(
    edge: Edge, chunks: list[bytes]
) -> None:
    """It never reaches the upstream; lines before it are sent as they come
    (docs/http-mapping.md), though the call may be cancelled before the upstream has read
    them all."""
    request = post("/v1/sum", "Transfer-Encoding: chunked", body=chunked(*chunks))
    answer = await raw_request(edge.gateway.port, request)
    assert status_of(answer) == 413, answer[:300]
    status = rpc_status(body_of(answer), 8)
    assert status["message"] == f"a request message exceeds the limit of {LIMIT} bytes"
    received = edge.kitchen.streams.received
    assert received == [1, 2][: len(received)]
    await assert_still_serving(edge)


async def test_an_oversized_first_ndjson_line_sends_no_message_upstream(edge: Edge) -> None:
    request = post("/v1/sum", body=oversized(3))
    answer = await raw_request(edge.gateway.port, request)
    assert status_of(answer) == 413, answer[:300]
    rpc_status(body_of(answer), 8)
    assert edge.kitchen.streams.received == []


class Summing(pb_grpc.StreamServiceServicer):
    """A Sum that records how its client stream ended: cleanly, or cancelled."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.ends: list[str] = []
        self.reading = asyncio.Event()

    async def Sum(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.Number],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.Total:
        try:
            async for number in request_iterator:
                self.values.append(number.value)
                self.reading.set()
            # grpc.aio ends the request iterator the same way for a half-close and for a
            # cancelled call; the cancellation reaches the handler at its next await
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.ends.append("cancelled")
            raise
        self.ends.append("completed")
        return pb.Total(sum=sum(self.values), count=len(self.values))


async def test_an_oversized_ndjson_line_cancels_the_upstream_call() -> None:
    """The upstream sees its client stream cancelled, never a clean (truncated) end.

    The oversized line is sent only once the upstream is reading the stream, so it is
    the gateway's answer to that line, not a race, that the upstream sees.
    """
    summing = Summing()
    server = grpc.aio.server()
    pb_grpc.add_StreamServiceServicer_to_server(summing, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = make_config(port, extra={"transcoding": {"max_body_bytes": LIMIT}})
        async with run_gateway(config) as gateway:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            try:
                writer.write(post("/v1/sum", "Transfer-Encoding: chunked", body=b""))
                writer.write(b"%x\r\n%s\r\n" % (len(line(1)), line(1)))
                async with asyncio.timeout(5):
                    await summing.reading.wait()
                    writer.write(chunked(oversized(2)))
                    answer = await reader.read()
            finally:
                writer.close()
            async with asyncio.timeout(5):
                while not summing.ends:
                    await asyncio.sleep(0.01)
    finally:
        await server.stop(None)
    assert status_of(answer) == 413, answer[:300]
    rpc_status(body_of(answer), 8)
    assert summing.values == [1]
    assert summing.ends == ["cancelled"]


async def test_ndjson_lines_within_the_limit_are_summed(edge: Edge) -> None:
    body = line(1) + line(2, LIMIT - 20) + line(3)
    answer = await raw_request(edge.gateway.port, post("/v1/sum", body=body))
    assert status_of(answer) == 200, answer[:300]
    assert json.loads(body_of(answer)) == {"sum": "6", "count": 3}


# -- WebSocket frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocol", "frame"),
    [
        pytest.param(
            PROTOCOL,
            json.dumps({"message": {"stringValue": "x" * FRAME_LIMIT}}),
            id="text",
        ),
        pytest.param(PROTOCOL + ".binary", b"\x0a" + b"x" * FRAME_LIMIT, id="binary"),
        pytest.param(PROTOCOL, json.dumps({"metadata": {"x-a": "x" * FRAME_LIMIT}}), id="metadata"),
    ],
)
async def test_an_oversized_websocket_frame_closes_1009(
    edge: Edge, subprotocol: str, frame: str | bytes
) -> None:
    assert len(frame) > FRAME_LIMIT
    url = f"ws://127.0.0.1:{edge.gateway.port}/ws/edgetest.v1.KitchenService/Echo"
    async with connect(url, subprotocols=[Subprotocol(subprotocol)], open_timeout=5) as socket:
        await socket.send(frame)
        with pytest.raises(ConnectionClosed):
            while True:
                await socket.recv()
    assert socket.close_code == 1009
    assert edge.kitchen.received == []
    await assert_still_serving(edge)


async def test_a_websocket_frame_within_the_limit_is_served(edge: Edge) -> None:
    url = f"ws://127.0.0.1:{edge.gateway.port}/ws/edgetest.v1.KitchenService/Echo"
    value = "x" * (FRAME_LIMIT - 100)
    async with connect(url, subprotocols=[Subprotocol(PROTOCOL)], open_timeout=5) as socket:
        await socket.send(json.dumps({"message": {"stringValue": value}}))
        reply = json.loads(await socket.recv())
    assert reply == {"message": {"stringValue": value}}
