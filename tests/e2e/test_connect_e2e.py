"""Connect end to end with a real client: connect-es's Connect transport under Node.

The gateway (real Hypercorn) is in front of a real grpc.aio upstream, the test kitchen
(tests/kitchen_upstream.py) plus a RetryService whose ``Read`` is declared
``NO_SIDE_EFFECTS``, and every call is made by ``@connectrpc/connect-node``'s
``createConnectTransport`` (tests/connect_peer.py, tests/peers/connect/README.md), which
builds its types from the test protos' FileDescriptorSet at run time: unary
``application/proto`` and ``application/json``, streams ``application/connect+proto`` and
``+json``, GET for the side-effect-free method (``useHttpGet``), over HTTP/1.1 and over h2c
with prior knowledge. What no client library sends (hostile headers, queries and
envelopes) is in tests/adversarial/test_connect_hostile.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Page, chromium, open_page
from conftest import Gateway
from connect_peer import (
    bearer,
    browser_call,
    node_call,
    open_call_page,
    serve_page,
)
from google.rpc import error_details_pb2
from recording import AUTH, token
from talking_kitchen import (
    KITCHEN,
    RETRY,
    STREAMS,
    Stack,
    error_of,
    kitchen_spec,
    talking_stack,
)

from edgetest.v1 import kitchen_pb2 as pb
from edgetest.v1 import retry_pb2

pytestmark = pytest.mark.e2e

HTTP_VERSIONS = ["1.1", "2"]
FORMATS = [True, False]  # binary (application/proto), JSON (application/json)
CASES = [(v, b) for v in HTTP_VERSIONS for b in FORMATS]
CASE_IDS = [f"http{v}-{'proto' if b else 'json'}" for v, b in CASES]


def spec(gateway: Gateway, service: str, method: str, *args: Any, **extra: Any) -> dict[str, Any]:
    """A connect-es connect call to the kitchen (binary unless ``binary=False``)."""
    return kitchen_spec("connect", gateway, service, method, *args, **extra)


connect_stack = talking_stack


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    extra = {
        "headers": {"forward_request": ["x-shard"]},
        "observability": {"access_log": True},
    }
    async with connect_stack(**extra) as running:
        yield running


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge.access"]


# -- calls that succeed ------------------------------------------------------------------


@pytest.mark.parametrize(("http_version", "binary"), CASES, ids=CASE_IDS)
async def test_unary(connect_clients: str, stack: Stack, http_version: str, binary: bool) -> None:
    request = {
        "stringValue": "héllo",
        "int64Value": "9007199254740993",  # past 2**53: int64 stays exact both ways
        "bytesValue": "AP8=",
        "enumValue": "FLAVOUR_SOUR",
        "repeatedString": ["a", "b"],
        "nested": {"name": "n", "inner": {"count": 2}},
    }
    call = spec(stack.gateway, KITCHEN, "Echo", request, httpVersion=http_version, binary=binary)
    result = await node_call(call)
    assert result["ok"], result
    assert result["messages"] == [request]
    assert result["headers"]["content-type"] == (
        "application/proto" if binary else "application/json"
    )


@pytest.mark.parametrize(("http_version", "binary"), CASES, ids=CASE_IDS)
async def test_server_stream(
    connect_clients: str, stack: Stack, http_version: str, binary: bool
) -> None:
    request = {"count": 4, "intervalSeconds": 0.01, "padding": 2}
    call = spec(stack.gateway, STREAMS, "Count", request, httpVersion=http_version, binary=binary)
    result = await node_call(call)
    assert result["ok"], result
    # proto3 JSON leaves out a default: index 0 is absent
    assert [m.get("index", 0) for m in result["messages"]] == [0, 1, 2, 3]
    assert {m["padding"] for m in result["messages"]} == {"xx"}
    assert result["headers"]["content-type"] == (
        "application/connect+proto" if binary else "application/connect+json"
    )
    assert result["trailers"]["x-ticks"] == "4"  # the end-of-stream message's metadata


async def test_empty_server_stream(connect_clients: str, stack: Stack) -> None:
    result = await node_call(spec(stack.gateway, STREAMS, "Count", {"count": 0}, binary=False))
    assert result["ok"], result
    assert result["messages"] == []
    assert result["trailers"]["x-ticks"] == "0"


@pytest.mark.parametrize("binary", FORMATS)
async def test_client_stream_over_http2(connect_clients: str, stack: Stack, binary: bool) -> None:
    numbers = [{"value": "1"}, {"value": "2"}, {"value": "39"}]
    call = spec(stack.gateway, STREAMS, "Sum", requests=numbers, httpVersion="2", binary=binary)
    result = await node_call(call)
    assert result["ok"], result
    assert result["messages"] == [{"sum": "42", "count": 3}]


@pytest.mark.parametrize("binary", FORMATS)
async def test_bidi_stream_over_http2(connect_clients: str, stack: Stack, binary: bool) -> None:
    lines = [{"text": "one"}, {"text": "two"}]
    call = spec(stack.gateway, STREAMS, "Shout", requests=lines, httpVersion="2", binary=binary)
    result = await node_call(call)
    assert result["ok"], result
    assert result["messages"] == [{"text": "ONE"}, {"text": "TWO"}, {"text": "bye"}]


@pytest.mark.parametrize(("http_version", "binary"), CASES, ids=CASE_IDS)
async def test_get_for_a_method_without_side_effects(
    connect_clients: str,
    stack: Stack,
    caplog: pytest.LogCaptureFixture,
    http_version: str,
    binary: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.access")
    options = {"useHttpGet": True, "httpVersion": http_version, "binary": binary}
    read = await node_call(spec(stack.gateway, RETRY, "Read", {"key": "k"}, **options))
    echo = await node_call(spec(stack.gateway, KITCHEN, "Echo", {"stringValue": "e"}, **options))
    assert read["ok"], read
    assert read["messages"] == [{"attempt": 1}]
    assert echo["ok"], echo  # not NO_SIDE_EFFECTS: connect-es still POSTs it
    lines = {line["route"]: line for line in access_lines(caplog)}
    get = lines[f"{RETRY}.Read"]
    assert get["method"] == "GET" and get["status"] == 200 and get["grpc_code"] == 0
    assert get["path"] == f"/{RETRY}/Read"
    assert lines[f"{KITCHEN}.Echo"]["method"] == "POST"


async def test_get_by_hand_as_the_spec_shows(stack: Stack) -> None:
    """The spec's own example: a JSON message percent-encoded in the query, in a URL a
    browser tab could open; and base64=1 for binary."""
    async with stack.gateway.client() as client:
        as_json = await client.get(
            f"/{RETRY}/Read",
            params={"connect": "v1", "encoding": "json", "message": '{"key":"x"}'},
        )
        binary = retry_pb2.Attempt(key="x").SerializeToString()
        as_proto = await client.get(
            f"/{RETRY}/Read",
            params={
                "connect": "v1",
                "base64": "1",
                "encoding": "proto",
                "message": base64.urlsafe_b64encode(binary).rstrip(b"=").decode(),
            },
        )
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == {"attempt": 1}
    assert as_proto.status_code == 200, as_proto.text
    assert as_proto.headers["content-type"] == "application/proto"
    assert retry_pb2.Attempts.FromString(as_proto.content).attempt == 2


# -- metadata -----------------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_metadata_both_ways(connect_clients: str, stack: Stack, http_version: str) -> None:
    headers = {"x-shard": "42", "grpc-metadata-x-extra": "more", "x-secret": "kept"}
    inspect = spec(
        stack.gateway,
        KITCHEN,
        "Inspect",
        {"stringValue": "m"},
        headers=headers,
        timeoutMs=5000,
        httpVersion=http_version,
    )
    seen = await node_call(inspect)
    assert seen["ok"], seen
    metadata = seen["messages"][0]["metadata"]
    assert metadata["x-shard"] == "42"  # allowlisted in headers.forward_request
    assert metadata["x-extra"] == "more"  # the Grpc-Metadata- convention
    assert "x-secret" not in metadata  # neither: not forwarded, as for JSON
    assert not any(name.startswith("connect-") for name in metadata)
    assert 4 < seen["messages"][0]["deadlineSeconds"] <= 5  # Connect-Timeout-Ms: 5000

    plain = await node_call(
        spec(stack.gateway, KITCHEN, "Plain", {"stringValue": "p"}, httpVersion=http_version)
    )
    assert plain["ok"], plain
    assert plain["headers"]["x-initial"] == "one"  # under its own name, not Grpc-Metadata-
    assert base64.b64decode(plain["headers"]["x-initial-bin"] + "==") == b"\x00\xff"
    assert plain["trailers"]["x-trailer"] == "two"  # sent as Trailer-X-Trailer
    assert base64.b64decode(plain["trailers"]["x-trailer-bin"] + "==") == b"\x01\x02"
    assert "x-trailer" not in plain["headers"]  # a trailer stays a trailer


async def test_the_connect_headers_decide_on_a_shared_path(stack: Stack) -> None:
    """/edgetest.v1.KitchenService/Plain is also a generic JSON route: a plain JSON POST
    is transcoded (google.rpc.Status errors, Grpc-Metadata- headers); the same POST with
    Connect-Protocol-Version is Connect (its errors and plain metadata headers)."""
    path = f"/{KITCHEN}/Plain"
    connect = {"connect-protocol-version": "1"}
    async with stack.gateway.client() as client:
        transcoded = await client.post(path, json={"stringValue": "t"})
        connected = await client.post(path, json={"stringValue": "c"}, headers=connect)
        transcoded_error = await client.post(path, json={"nope": 1})
        connected_error = await client.post(path, json={"nope": 1}, headers=connect)
    assert transcoded.status_code == 200 and transcoded.json() == {"stringValue": "t"}
    assert transcoded.headers["grpc-metadata-x-initial"] == "one"
    assert "trailer-x-trailer" not in transcoded.headers
    assert connected.status_code == 200 and connected.json() == {"stringValue": "c"}
    assert connected.headers["x-initial"] == "one"
    assert connected.headers["trailer-x-trailer"] == "two"
    assert "grpc-metadata-x-initial" not in connected.headers
    assert transcoded_error.status_code == 400 and transcoded_error.json()["code"] == 3
    assert connected_error.status_code == 400
    assert connected_error.json()["code"] == "invalid_argument"


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("http_version", "binary"), CASES, ids=CASE_IDS)
async def test_upstream_error_with_details(
    connect_clients: str, stack: Stack, http_version: str, binary: bool
) -> None:
    request = {
        "code": 3,
        "message": "the title is bad ✗",
        "badField": "title",
        "trailers": {"x-why": "because"},
        "headers": {"x-early": "yes"},
    }
    call = spec(stack.gateway, KITCHEN, "Fail", request, httpVersion=http_version, binary=binary)
    result = await node_call(call)
    error = error_of(result, "invalid_argument")
    assert error["message"] == "the title is bad ✗"
    [detail] = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"]))
    assert [(v.field, v.description) for v in bad.field_violations] == [("title", "is bad")]
    assert error["metadata"]["x-why"] == "because"  # the upstream's trailer
    assert error["metadata"]["x-early"] == "yes"  # and its initial metadata
    assert "grpc-status-details-bin" not in error["metadata"]  # it is the details


async def test_error_body_on_the_wire(stack: Stack) -> None:
    """The JSON a Connect client reads: code name, message, details with a debug form."""
    request = {"code": 3, "message": "bad", "badField": "title", "trailers": {"x-why": "b"}}
    async with stack.gateway.client() as client:
        answer = await client.post(
            f"/{KITCHEN}/Fail", json=request, headers={"connect-protocol-version": "1"}
        )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["trailer-x-why"] == "b"
    body = answer.json()
    assert body["code"] == "invalid_argument" and body["message"] == "bad"
    [detail] = body["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    assert "=" not in detail["value"]  # unpadded, as the spec asks
    assert detail["debug"] == {"fieldViolations": [{"field": "title", "description": "is bad"}]}


@pytest.mark.parametrize("binary", FORMATS)
async def test_not_found(connect_clients: str, stack: Stack, binary: bool) -> None:
    fail = {"code": 5, "message": "no such"}
    result = await node_call(spec(stack.gateway, KITCHEN, "Fail", fail, binary=binary))
    error = error_of(result, "not_found")
    assert error["message"] == "no such"
    assert error["details"] == []


@pytest.mark.parametrize("binary", FORMATS)
async def test_stream_failing_midway_ends_with_its_error(
    connect_clients: str, stack: Stack, binary: bool
) -> None:
    request = {"count": 5, "failAfter": 2, "failCode": 5}
    result = await node_call(spec(stack.gateway, STREAMS, "Count", request, binary=binary))
    error = error_of(result, "not_found")
    assert error["message"] == "failed after 2 ticks"
    assert result["messages"] == [{}, {"index": 1}]  # index 0 is the default, not sent
    assert error["metadata"]["x-ticks"] == "5"  # trailers come with the error


async def test_unknown_method_is_unimplemented(
    connect_clients: str, stack: Stack, wider_protos: Path
) -> None:
    result = await node_call(spec(stack.gateway, KITCHEN, "Missing", protos=wider_protos))
    error = error_of(result, "unimplemented")
    assert error["message"] == f"{KITCHEN}/Missing is not implemented"


async def test_unknown_service_is_unimplemented_too(
    connect_clients: str, stack: Stack, wider_protos: Path
) -> None:
    # not claimed (a proxy route may lead to a Connect server): the gateway's 404, which
    # a Connect client reads as unimplemented (the spec's HTTP-to-code table)
    ghost = spec(stack.gateway, "edgetest.v1.GhostService", "Boo", protos=wider_protos)
    error_of(await node_call(ghost), "unimplemented")


async def test_deadline_from_connect_timeout_ms(stack: Stack) -> None:
    """The gateway's own answer when the deadline passes (connect-es would give up at the
    same moment on its own, so the bytes are read here)."""
    async with stack.gateway.client() as client:
        answer = await client.post(
            f"/{KITCHEN}/Sleep",
            json={"seconds": 5},
            headers={"connect-protocol-version": "1", "connect-timeout-ms": "200"},
        )
        for _ in range(100):
            if stack.kitchen.cancelled:
                break
            await asyncio.sleep(0.02)
    assert answer.status_code == 504
    assert answer.json()["code"] == "deadline_exceeded"
    assert stack.kitchen.cancelled == 1  # the deadline reached the upstream too


async def test_deadline_seen_by_the_client(connect_clients: str, stack: Stack) -> None:
    result = await node_call(spec(stack.gateway, KITCHEN, "Sleep", {"seconds": 5}, timeoutMs=300))
    error_of(result, "deadline_exceeded")


# -- policies -----------------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_jwt_required(
    connect_clients: str, caplog: pytest.LogCaptureFixture, http_version: str
) -> None:
    caplog.set_level(logging.INFO, logger="edge.access")
    extra = {
        "auth": AUTH,
        "observability": {"access_log": True},
        "policies": [
            {"match": [f"{KITCHEN}.Inspect", f"{STREAMS}.Count"], "auth": {"require": "token"}}
        ],
    }
    async with connect_stack(**extra) as running:
        gateway = running.gateway
        refused = await node_call(spec(gateway, KITCHEN, "Inspect", httpVersion=http_version))
        let_in = await node_call(
            spec(gateway, KITCHEN, "Inspect", headers=bearer(token()), httpVersion=http_version)
        )
        forged = await node_call(
            spec(gateway, KITCHEN, "Inspect", headers=bearer(token(aud="other")))
        )
        stream = await node_call(spec(gateway, STREAMS, "Count", {"count": 2}))
        inspected = running.kitchen.inspected
        counted = running.kitchen.streams.sent
    error = error_of(refused, "unauthenticated")
    assert error["metadata"]["www-authenticate"] == 'Bearer realm="edge"'
    assert let_in["ok"], let_in
    assert let_in["messages"][0]["metadata"]["x-user-id"] == "alice"  # claims_to_metadata
    error_of(forged, "unauthenticated")
    error_of(stream, "unauthenticated")  # a stream's refusal ends it in-band
    assert stream["messages"] == []
    assert inspected == 1 and counted == 0  # only the call with a good token got through
    lines = [line for line in access_lines(caplog) if line["route"] == f"{KITCHEN}.Inspect"]
    assert sorted((line["status"], line["grpc_code"], line["user"]) for line in lines) == [
        (200, 0, "alice"),
        (401, 16, None),
        (401, 16, None),
    ]
    assert {line["protocol"] for line in lines} == {"connect"}


@pytest.mark.parametrize("binary", FORMATS)
async def test_rate_limit(connect_clients: str, binary: bool) -> None:
    extra = {
        "policies": [
            {
                "match": [method],
                "rate_limits": [{"algorithm": "token_bucket", "limit": 2, "period": "60s"}],
            }
            for method in (f"{KITCHEN}.Echo", f"{STREAMS}.Count")
        ]
    }
    async with connect_stack(**extra) as running:
        gateway = running.gateway
        results = [await node_call(spec(gateway, KITCHEN, "Echo", binary=binary)) for _ in range(3)]
        streams = [
            await node_call(spec(gateway, STREAMS, "Count", {"count": 1}, binary=binary))
            for _ in range(3)
        ]
        seen = len(running.kitchen.seen)
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[0]["headers"]["ratelimit-remaining"] == "1"
    error = error_of(results[2], "resource_exhausted")
    assert int(error["metadata"]["retry-after"]) >= 1
    assert error["metadata"]["ratelimit-remaining"] == "0"
    assert seen == 2
    assert [r["ok"] for r in streams] == [True, True, False]
    assert streams[1]["headers"]["ratelimit-remaining"] == "0"
    stream_error = error_of(streams[2], "resource_exhausted")
    assert int(stream_error["metadata"]["retry-after"]) >= 1


async def test_require_protocol_version() -> None:
    """With ``connect.require_protocol_version`` a binary POST without the header is
    refused as the spec allows (400); a plain JSON POST without it is still JSON."""
    async with connect_stack(connect={"require_protocol_version": True}) as running:
        async with running.gateway.client() as client:
            bare = await client.post(
                f"/{KITCHEN}/Plain",
                content=pb.Kitchen(string_value="b").SerializeToString(),
                headers={"content-type": "application/proto"},
            )
            versioned = await client.post(
                f"/{KITCHEN}/Plain",
                content=pb.Kitchen(string_value="v").SerializeToString(),
                headers={"content-type": "application/proto", "connect-protocol-version": "1"},
            )
            plain = await client.post(f"/{KITCHEN}/Plain", json={"stringValue": "j"})
    assert bare.status_code == 400
    assert bare.json()["code"] == "invalid_argument"
    assert "Connect-Protocol-Version" in bare.json()["message"]
    assert versioned.status_code == 200
    assert pb.Kitchen.FromString(versioned.content).string_value == "v"
    assert plain.status_code == 200 and plain.json() == {"stringValue": "j"}


async def test_connect_can_be_switched_off() -> None:
    async with connect_stack(connect={"enabled": False}) as running:
        async with running.gateway.client() as client:
            answer = await client.post(
                f"/{KITCHEN}/Plain",
                json={"nope": 1},
                headers={"connect-protocol-version": "1"},
            )
    assert answer.status_code == 400
    assert answer.json()["code"] == 3  # JSON transcoding's google.rpc.Status


async def test_http2_by_hand(stack: Stack) -> None:
    """httpx over h2c as a second client: a unary call and a stream, both over HTTP/2."""
    envelope = b"\x00" + (2).to_bytes(4, "big") + b"{}"
    async with httpx.AsyncClient(
        base_url=stack.gateway.base_url, http1=False, http2=True, timeout=10
    ) as client:
        unary = await client.post(
            f"/{KITCHEN}/Echo",
            json={"stringValue": "h2"},
            headers={"connect-protocol-version": "1"},
        )
        stream = await client.post(
            f"/{STREAMS}/Count",
            content=b"\x00" + (11).to_bytes(4, "big") + b'{"count":1}',
            headers={"content-type": "application/connect+json"},
        )
    assert unary.http_version == "HTTP/2" and unary.json() == {"stringValue": "h2"}
    assert stream.http_version == "HTTP/2"
    end = b'{"metadata":{"x-ticks":["1"]}}'
    assert stream.content == envelope + b"\x02" + len(end).to_bytes(4, "big") + end


# -- in Chromium: connect-web over fetch, from another origin ------------------------------


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


async def test_connect_web_in_chromium(connect_clients: str, page: Page) -> None:
    """What a browser page does: unary calls in both codecs, a server stream, a GET, an
    error with details, a refusal; every call cross-origin, so preflighted (the Connect
    headers are not CORS-safelisted) and read through CORS's exposed headers."""
    async with serve_page() as origin:
        await open_call_page(page, origin)
        extra = {
            "auth": AUTH,
            "policies": [{"match": [f"{KITCHEN}.Inspect"], "auth": {"require": "token"}}],
            "cors": {
                "allow_origins": [origin],
                "expose_headers": ["x-initial", "trailer-x-trailer", "www-authenticate"],
            },
        }
        async with connect_stack(**extra) as running:
            gateway = running.gateway

            async def call(*args: Any, **options: Any) -> dict[str, Any]:
                return await browser_call(page, spec(gateway, *args, **options))

            json_call = await call(KITCHEN, "Plain", {"stringValue": "ü"}, binary=False)
            proto_call = await call(KITCHEN, "Plain", {"int32Value": 7})
            stream = await call(STREAMS, "Count", {"count": 3, "intervalSeconds": 0.02})
            read = await call(RETRY, "Read", {"key": "b"}, useHttpGet=True, binary=False)
            failed = await call(KITCHEN, "Fail", {"code": 5, "message": "gone ✗", "badField": "f"})
            refused = await call(KITCHEN, "Inspect")
            let_in = await call(KITCHEN, "Inspect", headers=bearer(token()))
    assert json_call["ok"], json_call
    assert json_call["messages"] == [{"stringValue": "ü"}]
    assert json_call["headers"]["x-initial"] == "one"  # exposed by CORS
    assert json_call["trailers"]["x-trailer"] == "two"  # trailer-x-trailer, exposed
    assert proto_call["ok"] and proto_call["messages"] == [{"int32Value": 7}], proto_call
    assert stream["ok"], stream
    assert [m.get("index", 0) for m in stream["messages"]] == [0, 1, 2]
    assert stream["trailers"]["x-ticks"] == "3"  # in the body: no CORS needed
    assert read["ok"] and read["messages"] == [{"attempt": 1}], read
    error = error_of(failed, "not_found")
    assert error["message"] == "gone ✗"
    [detail] = error["details"]
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"]))
    assert bad.field_violations[0].field == "f"
    assert error_of(refused, "unauthenticated")["metadata"]["www-authenticate"]
    assert let_in["ok"], let_in
