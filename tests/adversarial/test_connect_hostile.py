"""Hostile Connect requests: what no client library sends, made by hand.

The rules (docs/grpc-web-and-connect.md, "Connect"): a malformed Connect header, query
or envelope is ``invalid_argument`` (400, or the end of a stream); a codec the gateway
does not speak is 415; a compression it does not accept is ``unimplemented`` naming
identity; a GET of a method with side effects is 405 with ``Allow: POST``; a body or
message over ``transcoding.max_body_bytes`` is ``resource_exhausted``, an envelope's
length prefix refused before its message is buffered. Streams answer 200 with the error
in the end-of-stream message. Every refusal here must leave the kitchen upstream without
the call (its ``received`` list records every call that reached it), and a client that
leaves a stream cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from recording import Edge, answer_headers, body_of, raw_request, start_edge, status_of

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import retry_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 4096  # transcoding.max_body_bytes here
KITCHEN = "/edgetest.v1.KitchenService"
STREAMS = "/edgetest.v1.StreamService"
READ = "/edgetest.v1.RetryService/Read"  # NO_SIDE_EFFECTS (the kitchen does not serve it)
CONNECT = {"connect-protocol-version": "1"}
STREAM_JSON = {"content-type": "application/connect+json"}
STREAM_PROTO = {"content-type": "application/connect+proto"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running() -> AsyncIterator[Edge]:
    async with start_edge(transcoding={"max_body_bytes": LIMIT}) as edge:
        yield edge


@pytest.fixture
def edge(running: Edge) -> Edge:
    """The module's gateway, its upstream's records cleared for this test."""
    running.kitchen.received.clear()
    running.kitchen.streams.cancelled.clear()
    return running


@pytest_asyncio.fixture(loop_scope="module")
async def client(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with edge.gateway.client() as http:
        yield http


def reached(edge: Edge) -> list[str]:
    """The methods the kitchen was called with (the paths of every call that got there)."""
    return [path for path, _ in edge.kitchen.received]


def envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """(flags, data) of each envelope of a streaming response; fails on trailing bytes."""
    out = []
    while body:
        assert len(body) >= 5, body
        size = int.from_bytes(body[1:5], "big")
        assert len(body) >= 5 + size, body
        out.append((body[0], body[5 : 5 + size]))
        body = body[5 + size :]
    return out


def connect_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A unary Connect error: the status, application/json and exactly the spec's keys."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    error: dict[str, Any] = answer.json()
    assert set(error) <= {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def stream_error(body: bytes, code: str) -> dict[str, Any]:
    """The error of a stream that ended at once: one end-of-stream envelope, nothing else."""
    [(flags, data)] = envelopes(body)
    assert flags == 0x02
    end = json.loads(data)
    assert set(end) <= {"error", "metadata"}, end
    error: dict[str, Any] = end["error"]
    assert error["code"] == code, error
    assert error["message"], error
    return error


def refused_stream(answer: httpx.Response, code: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text  # a stream's status is always 200
    assert answer.headers["content-type"].startswith("application/connect+")
    return stream_error(answer.content, code)


# -- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", "", "1.0", "v1", "1, 1"])
async def test_bad_protocol_version(edge: Edge, client: httpx.AsyncClient, version: str) -> None:
    headers = {"connect-protocol-version": version}
    unary = await client.post(f"{KITCHEN}/Echo", json={}, headers=headers)
    stream = await client.post(
        f"{STREAMS}/Count", content=envelope(b"{}"), headers={**STREAM_JSON, **headers}
    )
    assert "Connect-Protocol-Version" in connect_error(unary, 400, "invalid_argument")["message"]
    refused_stream(stream, "invalid_argument")
    assert reached(edge) == []


@pytest.mark.parametrize("value", ["-1", "1.5", "12345678901", "10s", "1e3", "+5", "5 0"])
async def test_malformed_timeout(edge: Edge, client: httpx.AsyncClient, value: str) -> None:
    headers = {**CONNECT, "connect-timeout-ms": value}
    unary = await client.post(f"{KITCHEN}/Echo", json={}, headers=headers)
    stream = await client.post(
        f"{STREAMS}/Count", content=envelope(b"{}"), headers={**STREAM_JSON, **headers}
    )
    assert "Connect-Timeout-Ms" in connect_error(unary, 400, "invalid_argument")["message"]
    refused_stream(stream, "invalid_argument")
    assert reached(edge) == []


async def test_a_zero_timeout_has_already_passed(edge: Edge, client: httpx.AsyncClient) -> None:
    headers = {**CONNECT, "connect-timeout-ms": "0"}
    answer = await client.post(f"{KITCHEN}/Echo", json={}, headers=headers)
    connect_error(answer, 504, "deadline_exceeded")


def _json(content_type: str) -> dict[str, str]:
    return {**CONNECT, "content-type": content_type}


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        pytest.param(f"{KITCHEN}/Echo", _json("text/plain"), b"{}", id="text"),
        pytest.param(f"{KITCHEN}/Echo", _json("application/xml"), b"{}", id="xml"),
        pytest.param(
            f"{KITCHEN}/Echo", _json("application/json; charset=latin-1"), b"{}", id="charset"
        ),
        pytest.param(f"{KITCHEN}/Echo", STREAM_JSON, envelope(b"{}"), id="stream-to-unary"),
        pytest.param(f"{STREAMS}/Count", _json("application/json"), b"{}", id="unary-to-stream"),
        pytest.param(
            f"{STREAMS}/Count",
            {"content-type": "application/connect+thrift"},
            envelope(b"{}"),
            id="stream-codec",
        ),
    ],
)
async def test_unsupported_content_type_is_415(
    edge: Edge, client: httpx.AsyncClient, path: str, headers: dict[str, str], body: bytes
) -> None:
    answer = await client.post(path, content=body, headers=headers)
    connect_error(answer, 415, "unimplemented")
    assert reached(edge) == []


async def test_compression_is_refused_naming_identity(
    edge: Edge, client: httpx.AsyncClient
) -> None:
    unary = await client.post(
        f"{KITCHEN}/Echo", json={}, headers={**CONNECT, "content-encoding": "gzip"}
    )
    stream = await client.post(
        f"{STREAMS}/Count",
        content=envelope(b"{}"),
        headers={**STREAM_JSON, "connect-content-encoding": "br"},
    )
    flagged = await client.post(
        f"{STREAMS}/Count", content=envelope(b"{}", flags=0x01), headers=STREAM_JSON
    )
    assert "identity" in connect_error(unary, 501, "unimplemented")["message"]
    assert unary.headers["accept-encoding"] == "identity"
    assert "identity" in refused_stream(stream, "unimplemented")["message"]
    assert stream.headers["connect-accept-encoding"] == "identity"
    assert "identity" in refused_stream(flagged, "unimplemented")["message"]
    assert flagged.headers["connect-accept-encoding"] == "identity"
    assert reached(edge) == []


@pytest.mark.parametrize("flags", [0x02, 0x04, 0x80, 0x03])
async def test_unknown_envelope_flags(edge: Edge, client: httpx.AsyncClient, flags: int) -> None:
    answer = await client.post(
        f"{STREAMS}/Count", content=envelope(b"{}", flags=flags), headers=STREAM_JSON
    )
    refused_stream(answer, "invalid_argument")
    assert reached(edge) == []


# -- GET ----------------------------------------------------------------------------------


async def test_a_good_get_reaches_the_upstream(edge: Edge, client: httpx.AsyncClient) -> None:
    """The control for the refusals below: the kitchen has no RetryService, so its own
    unimplemented comes back, after the call reached it."""
    answer = await client.get(READ, params={"connect": "v1", "encoding": "json", "message": "{}"})
    connect_error(answer, 501, "unimplemented")
    assert reached(edge) == [READ]


@pytest.mark.parametrize(
    "path", [f"{KITCHEN}/Echo", f"{STREAMS}/Count", "/edgetest.v1.RetryService/Watch"]
)
async def test_get_of_a_method_with_side_effects_or_a_stream(
    edge: Edge, client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path, params={"connect": "v1", "encoding": "json", "message": "{}"})
    assert "NO_SIDE_EFFECTS" in connect_error(answer, 405, "unimplemented")["message"]
    assert answer.headers["allow"] == "POST"
    assert reached(edge) == []


PROTO_OK = base64.urlsafe_b64encode(retry_pb2.Attempt(key="k").SerializeToString()).decode()
BAD_QUERIES = [
    ("connect=v2&encoding=json&message=%7B%7D", 400, "invalid_argument"),
    (
        "connect=v1&encoding=json&message=%7B%7D&message=%7B%22key%22%3A1%7D",
        400,
        "invalid_argument",
    ),
    ("connect=v1&encoding=json&encoding=proto&message=%7B%7D", 400, "invalid_argument"),
    ("connect=v1&connect=v1&encoding=json&message=%7B%7D", 400, "invalid_argument"),
    ("connect=v1&encoding=xml&message=%7B%7D", 415, "unimplemented"),
    ("connect=v1&message=%7B%7D", 415, "unimplemented"),
    ("connect=v1&encoding=proto&base64=1&message=!!!!", 400, "invalid_argument"),
    ("connect=v1&encoding=json&message=%FF%FE", 400, "invalid_argument"),
    ("connect=v1&encoding=json&message=%7B", 400, "invalid_argument"),
    ("connect=v1&encoding=json&message=%5B%5D", 400, "invalid_argument"),
    ("connect=v1&encoding=json&message=%7B%22nope%22%3A1%7D", 400, "invalid_argument"),
    ("connect=v1&encoding=proto&base64=1&message=_w", 400, "invalid_argument"),
    (
        f"connect=v1&encoding=proto&base64=1&compression=gzip&message={PROTO_OK}",
        501,
        "unimplemented",
    ),
    pytest.param(
        "connect=v1&encoding=json&message=" + "%20" * (LIMIT + 1),
        413,
        "resource_exhausted",
        id="too-long",
    ),
]


@pytest.mark.parametrize(("query", "status", "code"), BAD_QUERIES)
async def test_bad_get_queries(
    edge: Edge, client: httpx.AsyncClient, query: str, status: int, code: str
) -> None:
    answer = await client.get(f"{READ}?{query}")
    connect_error(answer, status, code)
    assert reached(edge) == []


async def test_get_compression_names_identity(client: httpx.AsyncClient) -> None:
    answer = await client.get(
        f"{READ}?connect=v1&encoding=proto&base64=1&compression=zstd&message={PROTO_OK}"
    )
    assert answer.headers["accept-encoding"] == "identity"


# -- bodies and envelopes -----------------------------------------------------------------


async def _send_then_hold(port: int, head: bytes, chunk: bytes) -> bytes:
    """Send ``head`` and one chunk of a chunked body that never ends; read the answer.

    The answer must come whole (its Content-Length met) while the body is still open:
    proof that the gateway refused without waiting for what the prefix announced.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            start = await reader.readuntil(b"\r\n\r\n")
            length = int(answer_headers(start)["content-length"])
            body = await reader.readexactly(length)
        return start + body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("method", ["StreamService/Count", "StreamService/Sum"])
async def test_a_4gib_envelope_is_refused_at_its_prefix(edge: Edge, method: str) -> None:
    head = (
        f"POST /edgetest.v1.{method} HTTP/1.1\r\nHost: edge\r\n"
        "Content-Type: application/connect+proto\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer = await _send_then_hold(edge.gateway.port, head, b"\x00\xff\xff\xff\xff" + b"x" * 64)
    assert status_of(answer) == 200
    error = stream_error(body_of(answer), "resource_exhausted")
    assert "4294967295" in error["message"]
    assert reached(edge) == []


async def test_a_unary_body_over_the_limit(edge: Edge, client: httpx.AsyncClient) -> None:
    big = {"stringValue": "x" * LIMIT}
    declared = await client.post(f"{KITCHEN}/Echo", json=big, headers=CONNECT)

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps(big).encode()

    chunked = await client.post(
        f"{KITCHEN}/Echo",
        content=chunks(),
        headers={**CONNECT, "content-type": "application/json"},
    )
    # 413, not the 429 of resource_exhausted: an oversized body must not look like a rate
    # limit to what sits between (the code in the body is what Connect clients read)
    connect_error(declared, 413, "resource_exhausted")
    connect_error(chunked, 413, "resource_exhausted")
    big_envelope = envelope(json.dumps(big).encode())
    stream = await client.post(f"{STREAMS}/Count", content=big_envelope, headers=STREAM_JSON)
    refused_stream(stream, "resource_exhausted")
    assert reached(edge) == []


async def test_a_stalled_body_is_408_not_an_upstream_fault() -> None:
    async with start_edge(server={"body_idle_timeout": "300ms"}) as edge:
        head = (
            f"POST {KITCHEN}/Echo HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            "Connect-Protocol-Version: 1\r\nContent-Length: 10\r\n\r\n{"
        ).encode()
        answer = await raw_request(edge.gateway.port, head, read_timeout=3)
        assert status_of(answer) == 408
        assert json.loads(body_of(answer))["code"] == "deadline_exceeded"
        assert reached(edge) == []


@pytest.mark.parametrize(
    ("headers", "body", "detail"),
    [
        pytest.param(_json("application/json"), b"{", False, id="json-cut"),
        pytest.param(_json("application/json"), b"[]", False, id="json-array"),
        pytest.param(_json("application/json"), b'{"a":1,"a":2}', False, id="json-twice"),
        pytest.param(_json("application/json"), b'{"nope": 1}', True, id="json-unknown"),
        pytest.param(_json("application/json"), b'{"int32Value": "x"}', True, id="json-type"),
        pytest.param({"content-type": "application/proto"}, b"\xff" * 4, False, id="proto-junk"),
        pytest.param({"content-type": "application/proto"}, b"\x0a\x05ab", False, id="proto-cut"),
    ],
)
async def test_invalid_unary_messages(
    edge: Edge, client: httpx.AsyncClient, headers: dict[str, str], body: bytes, detail: bool
) -> None:
    answer = await client.post(f"{KITCHEN}/Echo", content=body, headers=headers)
    error = connect_error(answer, 400, "invalid_argument")
    if detail:  # the gateway's google.rpc.BadRequest, packed as Connect wants it
        [item] = error["details"]
        assert item["type"] == "google.rpc.BadRequest"
        assert "fieldViolations" in item["debug"]
        decoded = base64.b64decode(item["value"] + "==")
        assert decoded  # the bytes of a BadRequest
    assert reached(edge) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(envelope(b"\xff\xff\xff"), "binary", id="junk"),
        pytest.param(envelope(b"{}")[:6], "incomplete envelope", id="cut"),
        pytest.param(envelope(b"") + envelope(b""), "extra input message", id="two"),
        pytest.param(b"", "missing input message", id="none"),
    ],
)
async def test_invalid_stream_requests(
    edge: Edge, client: httpx.AsyncClient, body: bytes, words: str
) -> None:
    answer = await client.post(f"{STREAMS}/Count", content=body, headers=STREAM_PROTO)
    assert words in refused_stream(answer, "invalid_argument")["message"]
    assert reached(edge) == []


async def test_a_bad_first_client_stream_message_never_reaches_the_upstream(
    edge: Edge, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        f"{STREAMS}/Sum", content=envelope(b'{"value": "x"}'), headers=STREAM_JSON
    )
    refused_stream(answer, "invalid_argument")
    good = await client.post(
        f"{STREAMS}/Sum",
        content=envelope(b'{"value": "2"}') + envelope(b'{"value": "3"}'),
        headers=STREAM_JSON,
    )
    assert envelopes(good.content) == [(0, b'{"sum":"5","count":2}'), (2, b"{}")]
    assert reached(edge) == [f"{STREAMS}/Sum"]


async def test_bidi_over_http1_is_505(edge: Edge, client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"{STREAMS}/Shout", content=envelope(b'{"text": "hi"}'), headers=STREAM_JSON
    )
    assert "HTTP/2" in connect_error(answer, 505, "unimplemented")["message"]
    assert reached(edge) == []
    async with httpx.AsyncClient(
        base_url=edge.gateway.base_url, http1=False, http2=True, timeout=10
    ) as h2:
        over_h2 = await h2.post(
            f"{STREAMS}/Shout", content=envelope(b'{"text": "hi"}'), headers=STREAM_JSON
        )
    assert [json.loads(data) for _, data in envelopes(over_h2.content)] == [
        {"text": "HI"},
        {"text": "bye"},
        {},
    ]


# -- who is answered, and how much of them reaches the upstream ---------------------------


async def test_credentials_are_refused_before_the_body(edge: Edge) -> None:
    """Inspect needs a token: with Expect: 100-continue the body is never even invited."""
    head = (
        f"POST {KITCHEN}/Inspect HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        "Connect-Protocol-Version: 1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await raw_request(edge.gateway.port, head)
    assert b"100 Continue" not in answer
    assert status_of(answer) == 401
    assert answer_headers(answer)["www-authenticate"].startswith("Bearer")
    assert json.loads(body_of(answer))["code"] == "unauthenticated"
    assert reached(edge) == []


@pytest.mark.parametrize(
    ("method", "query", "headers", "body"),
    [
        ("POST", "", {**CONNECT, "content-type": "application/json"}, b"{}"),
        ("GET", "?connect=v1&encoding=json&message=%7B%7D", {}, b""),
        ("POST", "", STREAM_JSON, envelope(b"{}")),
    ],
    ids=["unary", "get", "stream"],
)
async def test_unknown_method_of_a_routed_service(
    edge: Edge,
    client: httpx.AsyncClient,
    method: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    answer = await client.request(method, f"{KITCHEN}/Nope{query}", headers=headers, content=body)
    if method == "POST" and "connect+" in headers["content-type"]:
        error = refused_stream(answer, "unimplemented")
    else:
        error = connect_error(answer, 501, "unimplemented")
    assert error["message"] == "edgetest.v1.KitchenService/Nope is not implemented"
    assert reached(edge) == []


async def test_internal_text_never_reaches_the_client(
    edge: Edge, client: httpx.AsyncClient
) -> None:
    request = {"code": 14, "message": "connect to 10.0.0.7:50051 refused"}
    answer = await client.post(f"{KITCHEN}/Fail", json=request, headers=CONNECT)
    error = connect_error(answer, 503, "unavailable")
    assert "10.0.0.7" not in answer.text
    assert "<upstream>" in error["message"]


async def test_upstream_metadata_cannot_speak_for_the_protocol(
    edge: Edge, client: httpx.AsyncClient
) -> None:
    """Connect's reserved names, the gateway's CORS answer and a leading ``trailer-``
    name are the gateway's to write; an upstream's metadata cannot set them."""
    request = {
        "code": 9,
        "message": "no",
        "headers": {
            "access-control-allow-origin": "*",
            "connect-content-encoding": "gzip",
            "trailer-x-fake": "1",
            "x-lead": "ok",
        },
        "trailers": {"connect-x": "y", "x-end": "ok"},
    }
    answer = await client.post(f"{KITCHEN}/Fail", json=request, headers=CONNECT)
    connect_error(answer, 400, "failed_precondition")
    names = {name.lower() for name in answer.headers}
    assert "access-control-allow-origin" not in names
    assert "connect-content-encoding" not in names
    assert "trailer-x-fake" not in names and "trailer-connect-x" not in names
    assert answer.headers["x-lead"] == "ok" and answer.headers["trailer-x-end"] == "ok"


# -- clients that leave -------------------------------------------------------------------


async def test_a_client_leaving_a_stream_cancels_the_upstream(edge: Edge) -> None:
    request = json.dumps({"count": 1000, "intervalSeconds": 0.02}).encode()
    body = envelope(request)
    head = (
        f"POST {STREAMS}/Count HTTP/1.1\r\nHost: edge\r\n"
        f"Content-Type: application/connect+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(5):
            start = await reader.readuntil(b"\r\n\r\n")
            assert status_of(start) == 200
            await reader.readuntil(b'"index":1}')  # a few ticks in
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    async with asyncio.timeout(5):
        await edge.kitchen.streams.cancelled.wait()


async def test_a_client_leaving_a_unary_call_cancels_the_upstream(edge: Edge) -> None:
    body = json.dumps({"seconds": 30}).encode()
    head = (
        f"POST {KITCHEN}/Sleep HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        f"Connect-Protocol-Version: 1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = edge.kitchen.cancelled
    _, writer = await asyncio.open_connection("127.0.0.1", edge.gateway.port)
    writer.write(head + body)
    await writer.drain()
    for _ in range(100):  # until the call is at the upstream
        if f"{KITCHEN}/Sleep" in reached(edge):
            break
        await asyncio.sleep(0.02)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    for _ in range(250):
        if edge.kitchen.cancelled > before:
            break
        await asyncio.sleep(0.02)
    assert edge.kitchen.cancelled == before + 1


async def test_the_gateway_still_serves(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"{KITCHEN}/Echo",
        content=pb.Kitchen(string_value="fine").SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    assert answer.status_code == 200
    assert pb.Kitchen.FromString(answer.content).string_value == "fine"
