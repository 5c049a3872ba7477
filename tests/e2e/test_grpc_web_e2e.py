"""gRPC-Web end to end with a real client: connect-es's gRPC-Web transport under Node.

The gateway (real Hypercorn) is in front of a real grpc.aio upstream, the test kitchen
(tests/kitchen_upstream.py), and every call is made by ``@connectrpc/connect-node``'s
``createGrpcWebTransport`` (tests/connect_peer.py, tests/peers/connect/README.md), which
builds its types from the kitchen's FileDescriptorSet at run time, binary format
(``application/grpc-web+proto``), over HTTP/1.1 and over h2c with prior knowledge.
grpc-web-text comes from the official grpc-web client, which needs XMLHttpRequest: it runs
in headless Chromium (tests/browser.py) on a page of another origin, so those calls go
through the gateway's CORS answers too. What no client library sends (text mode split
across chunks, hostile frames) is in tests/adversarial/test_grpc_web_hostile.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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
    STREAMS,
    TalkingKitchen,
    error_of,
    kitchen_spec,
    talking_stack,
)

pytestmark = pytest.mark.e2e

HTTP_VERSIONS = ["1.1", "2"]


def spec(gateway: Gateway, service: str, method: str, *args: Any, **extra: Any) -> dict[str, Any]:
    """A connect-es grpc-web call to the kitchen (binary unless ``binary=False``)."""
    return kitchen_spec("grpc-web", gateway, service, method, *args, **extra)


@contextlib.asynccontextmanager
async def kitchen_stack(**extra: Any) -> AsyncIterator[tuple[Gateway, TalkingKitchen]]:
    async with talking_stack(**extra) as stack:
        yield stack.gateway, stack.kitchen


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    extra = {"headers": {"forward_request": ["x-tenant"]}}
    async with kitchen_stack(**extra) as (running, _):
        yield running


# -- calls that succeed ------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_unary(connect_clients: str, gateway: Gateway, http_version: str) -> None:
    request = {"stringValue": "héllo", "int64Value": "9007199254740993", "repeatedString": ["a"]}
    result = await node_call(spec(gateway, KITCHEN, "Echo", request, httpVersion=http_version))
    assert result["ok"], result
    assert result["messages"] == [request]
    assert result["headers"]["content-type"] == "application/grpc-web+proto"
    assert result["trailers"]["grpc-status"] == "0"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_server_stream(connect_clients: str, gateway: Gateway, http_version: str) -> None:
    request = {"count": 5, "intervalSeconds": 0.01, "padding": 3}
    result = await node_call(spec(gateway, STREAMS, "Count", request, httpVersion=http_version))
    assert result["ok"], result
    # proto3 JSON leaves out a default: index 0 is {}
    assert [m.get("index", 0) for m in result["messages"]] == [0, 1, 2, 3, 4]
    assert {m["padding"] for m in result["messages"]} == {"xxx"}


async def test_empty_server_stream(connect_clients: str, gateway: Gateway) -> None:
    result = await node_call(spec(gateway, STREAMS, "Count", {"count": 0}))
    assert result["ok"], result
    assert result["messages"] == []


async def test_stream_failing_midway_ends_with_its_status(
    connect_clients: str, gateway: Gateway
) -> None:
    request = {"count": 5, "failAfter": 2, "failCode": 10}
    result = await node_call(spec(gateway, STREAMS, "Count", request))
    error = error_of(result, "aborted")
    assert error["message"] == "failed after 2 ticks"
    assert result["messages"] == [{}, {"index": 1}]  # index 0 is the default, not sent


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_metadata_both_ways(
    connect_clients: str, gateway: Gateway, http_version: str
) -> None:
    headers = {"x-tenant": "blue", "grpc-metadata-x-extra": "more", "x-secret": "kept"}
    inspect = spec(
        gateway, KITCHEN, "Inspect", {"stringValue": "m"}, headers=headers, timeoutMs=5000
    )
    seen = await node_call({**inspect, "httpVersion": http_version})
    assert seen["ok"], seen
    metadata = seen["messages"][0]["metadata"]
    assert metadata["x-tenant"] == "blue"  # allowlisted in headers.forward_request
    assert metadata["x-extra"] == "more"  # the Grpc-Metadata- convention
    assert "x-secret" not in metadata  # neither: not forwarded, as for JSON
    assert "x-grpc-web" not in metadata and "x-user-agent" not in metadata
    assert 0 < seen["messages"][0]["deadlineSeconds"] <= 5  # grpc-timeout: 5000m

    plain = await node_call(spec(gateway, KITCHEN, "Plain", {"stringValue": "p"}))
    assert plain["ok"], plain
    assert plain["headers"]["x-initial"] == "one"
    assert base64.b64decode(plain["headers"]["x-initial-bin"] + "==") == b"\x00\xff"
    assert plain["trailers"]["x-trailer"] == "two"
    assert base64.b64decode(plain["trailers"]["x-trailer-bin"] + "==") == b"\x01\x02"
    assert "x-trailer" not in plain["headers"]  # a trailer stays a trailer


# -- client streams (HTTP/2: a fetch body cannot stream) ---------------------------------


async def test_client_stream_over_http2(connect_clients: str, gateway: Gateway) -> None:
    numbers = [{"value": "1"}, {"value": "2"}, {"value": "39"}]
    result = await node_call(spec(gateway, STREAMS, "Sum", requests=numbers, httpVersion="2"))
    assert result["ok"], result
    assert result["messages"] == [{"sum": "42", "count": 3}]


async def test_bidi_stream_over_http2(connect_clients: str, gateway: Gateway) -> None:
    lines = [{"text": "one"}, {"text": "two"}]
    result = await node_call(spec(gateway, STREAMS, "Shout", requests=lines, httpVersion="2"))
    assert result["ok"], result
    assert result["messages"] == [{"text": "ONE"}, {"text": "TWO"}, {"text": "bye"}]


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_upstream_error_with_details(
    connect_clients: str, gateway: Gateway, http_version: str
) -> None:
    request = {
        "code": 3,
        "message": "the title is bad ✗",
        "badField": "title",
        "trailers": {"x-why": "because"},
        "headers": {"x-early": "yes"},
    }
    result = await node_call(spec(gateway, KITCHEN, "Fail", request, httpVersion=http_version))
    error = error_of(result, "invalid_argument")
    assert error["message"] == "the title is bad ✗"
    [detail] = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"]))
    assert [(v.field, v.description) for v in bad.field_violations] == [("title", "is bad")]
    assert error["metadata"]["x-why"] == "because"  # the upstream's trailer
    assert error["metadata"]["x-early"] == "yes"  # and its initial metadata


async def test_not_found(connect_clients: str, gateway: Gateway) -> None:
    result = await node_call(spec(gateway, KITCHEN, "Fail", {"code": 5, "message": "no such"}))
    error = error_of(result, "not_found")
    assert error["message"] == "no such"
    assert error["details"] == []


async def test_unknown_method_is_unimplemented(
    connect_clients: str, gateway: Gateway, wider_protos: Path
) -> None:
    result = await node_call(spec(gateway, KITCHEN, "Missing", protos=wider_protos))
    error = error_of(result, "unimplemented")
    assert error["message"] == f"unknown method Missing for service {KITCHEN}"


async def test_unknown_service_is_unimplemented_too(
    connect_clients: str, gateway: Gateway, wider_protos: Path
) -> None:
    result = await node_call(spec(gateway, "edgetest.v1.GhostService", "Boo", protos=wider_protos))
    error = error_of(result, "unimplemented")
    assert error["message"] == "unknown service edgetest.v1.GhostService"


async def test_deadline_from_grpc_timeout(connect_clients: str, gateway: Gateway) -> None:
    result = await node_call(spec(gateway, KITCHEN, "Sleep", {"seconds": 5}, timeoutMs=300))
    error = error_of(result, "deadline_exceeded")
    assert error["message"]


async def test_json_codec_is_refused(connect_clients: str, gateway: Gateway) -> None:
    result = await node_call(spec(gateway, KITCHEN, "Echo", {"stringValue": "j"}, binary=False))
    # HTTP 415, which gRPC's http-grpc-status-mapping.md (and so connect-es) reads as
    # UNKNOWN; the reason is in grpc-message, which connect-es shows even then
    error = error_of(result, "unknown")
    assert "+json" in error["message"]
    assert error["metadata"]["grpc-status"] == "12"


# -- policies -----------------------------------------------------------------------------


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_jwt_required(connect_clients: str, http_version: str) -> None:
    extra = {
        "auth": AUTH,
        "policies": [{"match": [f"{KITCHEN}.Inspect"], "auth": {"require": "token"}}],
    }
    async with kitchen_stack(**extra) as (gateway, kitchen):
        refused = await node_call(spec(gateway, KITCHEN, "Inspect", httpVersion=http_version))
        let_in = await node_call(
            spec(gateway, KITCHEN, "Inspect", headers=bearer(token()), httpVersion=http_version)
        )
        forged = await node_call(
            spec(gateway, KITCHEN, "Inspect", headers=bearer(token(aud="other")))
        )
    error = error_of(refused, "unauthenticated")
    assert error["metadata"]["www-authenticate"] == 'Bearer realm="edge"'
    assert let_in["ok"], let_in
    assert let_in["messages"][0]["metadata"]["x-user-id"] == "alice"  # claims_to_metadata
    error_of(forged, "unauthenticated")
    assert kitchen.inspected == 1  # only the call with a good token got through


async def test_rate_limit(connect_clients: str) -> None:
    extra = {
        "policies": [
            {
                "match": [f"{KITCHEN}.Echo"],
                "rate_limits": [{"algorithm": "token_bucket", "limit": 2, "period": "60s"}],
            }
        ]
    }
    async with kitchen_stack(**extra) as (gateway, kitchen):
        results = [await node_call(spec(gateway, KITCHEN, "Echo")) for _ in range(3)]
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[0]["headers"]["ratelimit-remaining"] == "1"
    error = error_of(results[2], "resource_exhausted")
    assert int(error["metadata"]["retry-after"]) >= 1
    assert error["metadata"]["ratelimit-remaining"] == "0"
    assert len(kitchen.seen) == 2


async def test_deadline_cancels_the_upstream(connect_clients: str) -> None:
    # the deadline reaches the upstream as its own grpc-timeout: it stops working too
    async with kitchen_stack() as (running, kitchen):
        result = await node_call(spec(running, KITCHEN, "Sleep", {"seconds": 5}, timeoutMs=300))
        error_of(result, "deadline_exceeded")
        for _ in range(100):
            if kitchen.cancelled:
                break
            await asyncio.sleep(0.02)
    assert kitchen.cancelled == 1


# -- what the access log says -----------------------------------------------------------


async def test_access_log_names_the_method_code_and_user(
    connect_clients: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.access")
    extra = {
        "auth": AUTH,
        "observability": {"access_log": True},
        "policies": [{"match": [f"{KITCHEN}.Inspect"], "auth": {"require": "token"}}],
    }
    async with kitchen_stack(**extra) as (gateway, _):
        await node_call(spec(gateway, KITCHEN, "Inspect", headers=bearer(token())))
        await node_call(spec(gateway, KITCHEN, "Fail", {"code": 5, "message": "gone"}))
        await node_call(spec(gateway, STREAMS, "Count", {"count": 2}))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edge.access"]
    by_path = {line["path"]: line for line in lines}
    inspect = by_path[f"/{KITCHEN}/Inspect"]
    assert inspect["route"] == f"{KITCHEN}.Inspect"
    assert (inspect["status"], inspect["grpc_code"], inspect["user"]) == (200, 0, "alice")
    failed = by_path[f"/{KITCHEN}/Fail"]
    assert (failed["route"], failed["status"], failed["grpc_code"]) == (f"{KITCHEN}.Fail", 200, 5)
    counted = by_path[f"/{STREAMS}/Count"]
    assert (counted["route"], counted["grpc_code"]) == (f"{STREAMS}.Count", 0)
    assert {line["protocol"] for line in lines} == {"grpc-web"}


# -- in Chromium: grpc-web-text (the official client) and connect-web ------------------


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


@contextlib.asynccontextmanager
async def page_and_gateway(page: Page) -> AsyncIterator[Gateway]:
    """The call page on its own origin, and a gateway that lets that origin call it."""
    async with serve_page() as origin:
        await open_call_page(page, origin)
        cors = {
            "allow_origins": [origin],
            "expose_headers": [
                "grpc-status",
                "grpc-message",
                "grpc-status-details-bin",
                "x-initial",
            ],
        }
        async with kitchen_stack(cors=cors) as (gateway, _):
            yield gateway


async def test_text_mode_in_chromium(connect_clients: str, page: Page) -> None:
    """grpc-web-text (base64 both ways, the stream flushed per message), by grpc-web."""
    async with page_and_gateway(page) as gateway:

        def text(method: str, request: dict[str, Any], service: str = KITCHEN) -> dict[str, Any]:
            return spec(gateway, service, method, request, transport="grpc-web-text", binary=False)

        unary = await browser_call(page, text("Plain", {"stringValue": "ü"}))
        stream = await browser_call(
            page, text("Count", {"count": 4, "intervalSeconds": 0.02}, STREAMS)
        )
        failed = await browser_call(
            page, text("Fail", {"code": 5, "message": "gone ✗", "badField": "shelf"})
        )
        late = await browser_call(
            page, text("Count", {"count": 3, "failAfter": 1, "failCode": 8}, STREAMS)
        )
        slow = await browser_call(page, {**text("Sleep", {"seconds": 5}), "timeoutMs": 300})
    assert unary["ok"], unary
    assert unary["messages"] == [{"stringValue": "ü"}]
    assert unary["headers"]["x-initial"] == "one"
    assert unary["trailers"]["x-trailer"] == "two"
    assert stream["ok"], stream
    assert [m.get("index", 0) for m in stream["messages"]] == [0, 1, 2, 3]
    error = error_of(failed, "not_found")
    assert error["message"] == "gone ✗"
    [detail] = error["details"]
    bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"]))
    assert bad.field_violations[0].field == "shelf"
    assert error_of(late, "resource_exhausted")["message"] == "failed after 1 ticks"
    assert late["messages"] == [{}]
    error_of(slow, "deadline_exceeded")


async def test_binary_in_chromium(connect_clients: str, page: Page) -> None:
    """connect-web's gRPC-Web transport over fetch, and grpc-web's binary format."""
    async with page_and_gateway(page) as gateway:
        connect_web = await browser_call(page, spec(gateway, KITCHEN, "Plain", {"int32Value": 7}))
        official = await browser_call(
            page,
            spec(gateway, STREAMS, "Count", {"count": 2}, transport="grpc-web-text", binary=True),
        )
        refused = await browser_call(
            page, spec(gateway, KITCHEN, "Fail", {"code": 7, "message": "no"})
        )
    assert connect_web["ok"], connect_web
    assert connect_web["messages"] == [{"int32Value": 7}]
    assert connect_web["headers"]["x-initial"] == "one"
    assert official["ok"], official
    assert len(official["messages"]) == 2
    # a Trailers-Only answer, read from headers the page may only see when exposed
    assert error_of(refused, "permission_denied")["message"] == "no"
