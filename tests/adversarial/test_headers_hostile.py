"""Hostile headers: forged claim headers in every spelling, smuggling framings, forged hops.

The upstreams record every value they receive (the kitchen joins repeated metadata keys),
so a forged value that rides along next to the verified one is seen, not hidden behind it.
"""

from __future__ import annotations

import json

import pytest
from recording import body_of, raw_request, start_edge, status_of, token

pytestmark = pytest.mark.e2e

FORGERIES = {
    "X-User-Id": "mallory",
    "x-user-id": "mallory",
    "X-USER-ID": "mallory",
    "X_User_Id": "mallory",
    "x_user_id": "mallory",
    "Grpc-Metadata-X-User-Id": "mallory",
    "Grpc-Metadata-X_User_Id": "mallory",
}


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: edge.test", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def forged_lines() -> list[str]:
    return [f"{name}: {value}" for name, value in FORGERIES.items()]


def user_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every header an upstream could read as X-User-Id: CGI folds case and ``_`` into one,
    and a grpc-gateway upstream reads ``Grpc-Metadata-X-User-Id`` as that metadata."""
    return [
        (n, v)
        for n, v in headers
        if n.lower().replace("_", "-").removeprefix("grpc-metadata-") == "x-user-id"
    ]


@pytest.mark.parametrize("underscores", ["drop", "allow"])
async def test_forged_claim_headers_never_reach_a_proxied_upstream(underscores: str) -> None:
    headers = {"forward_request": ["authorization", "x-user-id"], "underscores": underscores}
    async with start_edge(headers=headers) as edge:
        answer = await raw_request(
            edge.gateway.port,
            request("GET", "/api/admin/x", f"Authorization: Bearer {token()}", *forged_lines()),
        )
    assert status_of(answer) == 200
    assert user_headers(edge.http.headers_of()) == [("x-user-id", "alice")]


async def test_underscored_header_names_can_be_refused() -> None:
    headers = {"forward_request": ["authorization"], "underscores": "reject"}
    async with start_edge(headers=headers) as edge:
        answer = await raw_request(
            edge.gateway.port,
            request("GET", "/api/x", "X_Anything: 1"),
        )
        clean = await raw_request(edge.gateway.port, request("GET", "/api/x", "X-Anything: 1"))
    assert status_of(answer) == 400
    assert json.loads(body_of(answer))["code"] == 3
    assert status_of(clean) == 200
    assert edge.http.paths() == ["/api/x"]  # only the clean request arrived


async def test_forged_claim_headers_never_reach_a_grpc_upstream() -> None:
    headers = {"forward_request": ["authorization", "x-user-id"], "underscores": "allow"}
    async with start_edge(headers=headers) as edge:
        answer = await raw_request(
            edge.gateway.port,
            request(
                "POST",
                "/v1/inspect",
                f"Authorization: Bearer {token()}",
                "Content-Type: application/json",
                "Content-Length: 2",
                *forged_lines(),
                body=b"{}",
            ),
        )
    assert status_of(answer) == 200
    metadata = json.loads(body_of(answer))["metadata"]
    assert {k: v for k, v in metadata.items() if "user-id" in k.replace("_", "-")} == {
        "x-user-id": "alice"
    }
    (method, pairs) = edge.kitchen.received[-1]
    assert method.endswith("/Inspect")
    assert [(k, v) for k, v in pairs if "user-id" in k.replace("_", "-")] == [
        ("x-user-id", "alice")
    ]


@pytest.mark.parametrize(
    "framing",
    [
        ["Content-Length: 4", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: chunked", "Content-Length: 4"],
        ["Content-Length: 100", "Transfer-Encoding: chunked"],
    ],
)
@pytest.mark.parametrize("path", ["/api/x", "/v1/kitchen"])
async def test_content_length_with_transfer_encoding_is_refused(
    framing: list[str], path: str
) -> None:
    async with start_edge() as edge:
        answer = await raw_request(
            edge.gateway.port,
            request("POST", path, *framing, "Content-Type: application/json"),
            body=b'5\r\n{"a":\r\n0\r\n\r\n',
        )
    assert status_of(answer) == 400
    assert "Transfer-Encoding" in json.loads(body_of(answer))["message"]
    assert edge.http.requests == []
    assert edge.kitchen.received == []


async def test_differing_content_lengths_never_reach_an_upstream() -> None:
    async with start_edge() as edge:
        answer = await raw_request(
            edge.gateway.port,
            request("POST", "/api/x", "Content-Length: 2", "Content-Length: 3", body=b"abc"),
        )
    assert status_of(answer) == 400
    assert edge.http.requests == []


async def test_forwarded_and_real_ip_from_a_client_are_replaced() -> None:
    async with start_edge() as edge:
        answer = await raw_request(
            edge.gateway.port,
            request(
                "GET",
                "/api/x",
                "Forwarded: for=203.0.113.9;proto=https",
                "X-Real-IP: 203.0.113.9",
                "X-Forwarded-Proto: https",
                "X-Forwarded-Host: bank.example",
            ),
        )
    assert status_of(answer) == 200
    seen = dict(edge.http.headers_of())
    assert "forwarded" not in seen
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "edge.test"
    assert seen["x-forwarded-for"].split(", ")[-1] == "127.0.0.1"  # the real peer is last


async def test_forwarded_and_real_ip_from_a_trusted_proxy_are_believed() -> None:
    limiting = {"trusted_proxies": ["127.0.0.0/8"]}
    async with start_edge(rate_limiting=limiting) as edge:
        answer = await raw_request(
            edge.gateway.port,
            request(
                "GET",
                "/api/x",
                "Forwarded: for=198.51.100.7",
                "X-Forwarded-For: 198.51.100.7",
                "X-Real-IP: 10.9.9.9",
            ),
        )
    assert status_of(answer) == 200
    seen = edge.http.headers_of()
    assert ("forwarded", "for=198.51.100.7") in seen
    assert ("x-real-ip", "198.51.100.7") in seen  # the client the trusted proxy named
    assert [v for n, v in seen if n == "x-real-ip"] == ["198.51.100.7"]
