"""Shared parts of the adversarial suite: upstreams that record what reached them.

Every attack here asserts three things: the exact status, a ``google.rpc.Status`` body,
and that nothing the gateway refused reached an upstream (the HTTP upstream below and
the kitchen gRPC upstream's ``received`` list record every request they get).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from conftest import Gateway, make_config, run_gateway
from http_upstream import Message, Receive, Send, serve_asgi, upstream_app
from kitchen_upstream import Kitchen, start_kitchen

ISSUER = "https://issuer.adversarial.test"
SECRET = "an-adversarial-secret-long-enough-for-hs256"


def token(**claims: Any) -> str:
    # an hour: some modules mint theirs at import, minutes before their tests run
    payload = {"iss": ISSUER, "aud": "edge", "sub": "alice", "exp": time.time() + 3600}
    payload.update(claims)
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": "hs"})


AUTH = {
    "issuers": [
        {
            "issuer": ISSUER,
            "algorithms": ["HS256"],
            "audiences": ["edge"],
            "keys": [{"kid": "hs", "secret": SECRET}],
        }
    ],
    "claims_to_metadata": {"x-user-id": "sub"},
}


@dataclass
class Recorded:
    """What the HTTP upstream received: (method, raw path, headers) per request."""

    requests: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def headers_of(self, index: int = -1) -> list[tuple[str, str]]:
        return self.requests[index][2]


@contextlib.asynccontextmanager
async def recording_upstream() -> AsyncIterator[tuple[int, Recorded]]:
    recorded = Recorded()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = scope.get("raw_path") or scope["path"].encode()
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
            recorded.requests.append((scope.get("method", "WS"), raw.decode("latin-1"), headers))
        await upstream_app(scope, receive, send)

    async with serve_asgi(app) as port:
        yield port, recorded


@dataclass
class Edge:
    gateway: Gateway
    http: Recorded
    kitchen: Kitchen


@contextlib.asynccontextmanager
async def start_edge(**extra: Any) -> AsyncIterator[Edge]:
    """A gateway in front of a recording HTTP upstream and the kitchen gRPC upstream.

    The proxy has a public ``/api`` and a nested ``/api/admin`` that needs a token, the
    shape in which a path the gateway and the upstream read differently is a bypass.
    ``extra`` replaces top-level config sections.
    """
    server, grpc_port, kitchen = await start_kitchen()
    try:
        async with recording_upstream() as (http_port, recorded):
            data: dict[str, Any] = {
                "auth": AUTH,
                "headers": {"forward_request": ["authorization", "x-user-id"]},
                "http_upstreams": {"web": {"url": f"http://127.0.0.1:{http_port}"}},
                "proxy_routes": [
                    {"prefix": "/api", "upstream": "web"},
                    {"prefix": "/api/admin", "upstream": "web"},
                ],
                "policies": [
                    {"match": ["proxy:/api/admin"], "auth": {"require": "token"}},
                    {
                        "match": ["edgetest.v1.KitchenService.Inspect"],
                        "auth": {"require": "token"},
                    },
                ],
            }
            data.update(extra)
            async with run_gateway(make_config(grpc_port, extra=data)) as gateway:
                yield Edge(gateway, recorded, kitchen)
    finally:
        await server.stop(None)


async def raw_request(port: int, head: bytes, body: bytes = b"", read_timeout: float = 5) -> bytes:
    """Send bytes exactly as given (no client normalises them) and read the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(read_timeout):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def answer_headers(answer: bytes) -> dict[str, str]:
    """The response headers of a raw answer, names lower-cased (the last of repeated ones)."""
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    pairs = (line.partition(":") for line in head.split("\r\n")[1:])
    return {name.strip().lower(): value.strip() for name, _, value in pairs}


def rpc_status(body: bytes | bytearray, code: int) -> dict[str, Any]:
    """The ``google.rpc.Status`` an error body holds: exactly code, message and details.

    Fails unless the body is that shape with the given code, a message and a details list.
    """
    import json

    status = json.loads(body)
    assert isinstance(status, dict), body
    assert set(status) == {"code", "message", "details"}, status
    assert status["code"] == code, status
    assert isinstance(status["message"], str) and status["message"], status
    assert isinstance(status["details"], list), status
    return status


async def handshake(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """Open a WebSocket and close it again: (101, ...) if it opened, else the refusal.

    The refusal is the handshake's HTTP status, its headers (names lower-cased) and body.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, open_timeout=5, **kwargs) as socket:
            response = socket.response
            assert response is not None
            headers = {name.lower(): value for name, value in response.headers.raw_items()}
            return response.status_code, headers, b""
    except InvalidStatus as refused:
        response = refused.response
        headers = {name.lower(): value for name, value in response.headers.raw_items()}
        return response.status_code, headers, bytes(response.body or b"")
