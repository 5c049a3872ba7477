"""Headers to metadata and back, deadlines seen by the upstream, HTTP/2 clients."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from conftest import client_ssl_context, make_config, run_gateway

pytestmark = pytest.mark.e2e


async def inspect(stack: Any, headers: dict[str, str]) -> dict[str, Any]:
    async with stack.client() as client:
        response = await client.post("/v1/inspect", json={"stringValue": "i"}, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_request_headers_become_metadata_by_allowlist_and_prefix(stack: Any) -> None:
    seen = await inspect(
        stack,
        {
            "authorization": "Bearer abc",
            "x-request-id": "req-1",
            "x-not-listed": "no",
            "grpc-metadata-tenant": "acme",
            "grpc-metadata-blob-bin": base64.b64encode(b"\x00\xff").decode(),
            "x-forwarded-for": "203.0.113.9",
        },
    )
    metadata = seen["metadata"]
    assert metadata["authorization"] == "Bearer abc"
    assert metadata["x-request-id"] == "req-1"
    assert metadata["tenant"] == "acme"
    assert metadata["blob-bin"] == "bin:00ff"
    assert "x-not-listed" not in metadata
    assert metadata["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert metadata["x-forwarded-host"].startswith("127.0.0.1:")
    assert seen["request"] == {"stringValue": "i"}


async def test_hop_by_hop_and_connection_listed_headers_are_not_forwarded(
    stack_factory: Any,
) -> None:
    extra = {"headers": {"forward_request": ["x-request-id", "te", "x-private"]}}
    async with stack_factory(**extra) as stack:
        seen = await inspect(
            stack,
            {"x-request-id": "r", "x-private": "p", "connection": "x-private", "te": "trailers"},
        )
    assert seen["metadata"].get("x-request-id") == "r"
    assert "x-private" not in seen["metadata"]
    assert "te" not in seen["metadata"]
    assert "authorization" not in seen["metadata"]


async def test_bad_binary_metadata_is_400(stack: Any) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/v1/inspect", json={}, headers={"grpc-metadata-key-bin": "not base64!"}
        )
    assert response.status_code == 400
    assert "base64" in response.json()["message"]


async def test_upstream_sees_the_deadline(stack: Any) -> None:
    no_header = await inspect(stack, {})
    assert 4.0 < no_header["deadlineSeconds"] <= 5.1  # the upstream's 5s; gRPC rounds up
    shorter = await inspect(stack, {"grpc-timeout": "1500m"})
    assert 1.0 < shorter["deadlineSeconds"] <= 1.6  # gRPC rounds the wire timeout up
    # the configured timeout is a ceiling a client cannot raise
    longer = await inspect(stack, {"grpc-timeout": "60S"})
    assert longer["deadlineSeconds"] <= 5.1


async def test_response_header_allowlist(stack_factory: Any) -> None:
    async with stack_factory(headers={"forward_response": ["x-shard"]}) as stack:
        async with stack.client() as client:
            response = await client.post(
                "/v1/fail", json={"code": 5, "message": "m", "headers": {"x-shard": "3"}}
            )
    assert response.headers["x-shard"] == "3"
    assert "grpc-metadata-x-shard" not in response.headers


async def test_h2c_prior_knowledge(stack: Any) -> None:
    async with httpx.AsyncClient(
        base_url=stack.gateway.base_url, http1=False, http2=True
    ) as client:
        response = await client.get("/v1/kitchen/h2")
    assert response.http_version == "HTTP/2"
    assert response.json() == {"stringValue": "h2"}


async def test_h2_over_tls(kitchen_upstream: Any, tls_files: Any) -> None:
    cert, key = tls_files
    port, _ = kitchen_upstream
    async with run_gateway(make_config(port), certfile=cert, keyfile=key) as gateway:
        async with httpx.AsyncClient(
            base_url=gateway.base_url, http2=True, verify=client_ssl_context(cert)
        ) as client:
            response = await client.post("/v1/kitchen", json={"stringValue": "tls"})
            missing = await client.get("/nope")
    assert response.http_version == "HTTP/2"
    assert response.json() == {"stringValue": "tls"}
    assert missing.status_code == 404 and missing.json()["code"] == 5


async def test_forwarded_headers_cannot_be_forged_through_the_metadata_prefix(stack: Any) -> None:
    seen = await inspect(
        stack,
        {"grpc-metadata-x-forwarded-for": "6.6.6.6", "grpc-metadata-x-forwarded-host": "evil"},
    )
    metadata = seen["metadata"]
    assert metadata["x-forwarded-for"] == "127.0.0.1"
    assert metadata["x-forwarded-host"].startswith("127.0.0.1:")
