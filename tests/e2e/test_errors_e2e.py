"""Every error a client can meet, each as a google.rpc.Status body with the right status."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import make_config, run_gateway

pytestmark = pytest.mark.e2e

# gRPC code -> HTTP status, as grpc-gateway v2 and Envoy map them
CODE_TO_HTTP = [
    (1, 499),
    (2, 500),
    (3, 400),
    (4, 504),
    (5, 404),
    (6, 409),
    (7, 403),
    (8, 429),
    (9, 400),
    (10, 409),
    (11, 400),
    (12, 501),
    (13, 500),
    (14, 503),
    (15, 500),
    (16, 401),
]


@pytest.mark.parametrize(("code", "http_status"), CODE_TO_HTTP)
async def test_upstream_status_maps_to_http(stack: Any, code: int, http_status: int) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/fail", json={"code": code, "message": f"failed {code}"})
    assert response.status_code == http_status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": code, "message": f"failed {code}", "details": []}


async def test_error_details_and_metadata_reach_the_client(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/fail",
            json={
                "code": 3,
                "message": "bad title",
                "badField": "book.title",
                "trailers": {"x-trace": "t1"},
                "headers": {"x-shard": "7"},
            },
        )
    assert response.status_code == 400
    assert response.json() == {
        "code": 3,
        "message": "bad title",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "book.title", "description": "is bad"}],
            }
        ],
    }
    assert response.headers["grpc-trailer-x-trace"] == "t1"
    assert response.headers["grpc-metadata-x-shard"] == "7"
    assert "grpc-trailer-grpc-status-details-bin" not in response.headers


async def test_unknown_route_is_404(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.get("/v2/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"code": 5, "message": "no route for this path", "details": []}


async def test_wrong_method_is_405_with_allow(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/literal/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    body = response.json()
    assert body["code"] == 12 and "POST" in body["message"] and body["details"] == []


async def test_oversized_body_is_413(stack_factory: Any) -> None:
    async with stack_factory(transcoding={"max_body_bytes": "1KiB"}) as stack:
        async with stack.client() as client:
            small = await client.post("/v1/kitchen", json={"stringValue": "x" * 900})
            large = await client.post("/v1/kitchen", json={"stringValue": "x" * 2000})

            async def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
                for _ in range(4):
                    yield b" " * 512

            streamed = await client.post("/v1/kitchen", content=chunks())
    assert small.status_code == 200
    assert large.status_code == 413
    assert large.json()["code"] == 8
    assert "limit" in large.json()["message"]
    assert streamed.status_code == 413


@pytest.mark.parametrize("declared", [True, False])
async def test_a_client_that_sends_all_before_reading_gets_its_413(
    stack_factory: Any, declared: bool
) -> None:
    # The 413 goes out while the upload goes on; the gateway keeps reading (and dropping)
    # the rest, so this client's writes do not fail and the answer is there to read.
    async with stack_factory(transcoding={"max_body_bytes": "1KiB"}) as stack:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway.port)
        body = b" " * (8 * 1024 * 1024)
        length = f"Content-Length: {len(body)}" if declared else "Transfer-Encoding: chunked"
        head = f"POST /v1/kitchen HTTP/1.1\r\nHost: x\r\n{length}\r\n\r\n".encode()
        writer.write(head)
        piece = 64 * 1024
        for start in range(0, len(body), piece):
            chunk = body[start : start + piece]
            writer.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()  # raises if the gateway stopped reading and reset us
        if not declared:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 413")


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return int(port)


async def test_dead_upstream_is_503() -> None:
    async with run_gateway(make_config(closed_port())) as gateway, gateway.client() as client:
        response = await client.get("/v1/kitchen/x")
        again = await client.get("/v1/kitchen/x")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 14 and body["message"] and body["details"] == []
    assert again.status_code == 503  # the worker survived and answers the same way


async def test_deadline_from_grpc_timeout_header_is_504(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/sleep", json={"seconds": 2}, headers={"grpc-timeout": "100m"}
        )
    assert response.status_code == 504
    assert response.json()["code"] == 4


async def test_deadline_from_method_config_is_504(stack_factory: Any) -> None:
    extra = {"methods": {"edgetest.v1.KitchenService.Sleep": {"timeout": "100ms"}}}
    async with stack_factory(**extra) as stack, stack.client() as client:
        slow = await client.post("/v1/sleep", json={"seconds": 2})
        fast = await client.post("/v1/sleep", json={"seconds": 0.01})
    assert slow.status_code == 504
    assert fast.status_code == 200 and fast.json() == {}


async def test_malformed_grpc_timeout_is_400(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post("/v1/sleep", json={}, headers={"grpc-timeout": "soon"})
    assert response.status_code == 400
    assert "grpc-timeout" in response.json()["message"]
