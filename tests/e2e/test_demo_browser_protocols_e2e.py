"""The demo from a browser page on another origin, with every browser gRPC client there is.

connect-es in headless Chromium with its gRPC-Web transport (binary) and its Connect
transport (JSON and binary), and the official grpc-web client in text mode, each calling
the demo's LibraryService (``edge.demo.library``) behind a real gateway: a unary GetBook,
a server-streamed StreamBooks, a NOT_FOUND, and all of it behind a JWT that a policy
requires. What a web team would try first, through CORS as a browser enforces it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from browser import Page, chromium, open_page
from conftest import DEMO_PROTOS, Gateway, make_config, run_gateway
from connect_peer import (
    bearer,
    browser_call,
    demo_spec,
    ensure_installed,
    open_call_page,
    serve_page,
)

from edge.demo.library import start_library

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.demo.test"
SECRET = "a-demo-secret-long-enough-for-hs256-signatures"
TRANSPORTS = [
    ("grpc-web", True),  # connect-es, application/grpc-web+proto
    ("grpc-web-text", False),  # the official grpc-web client, application/grpc-web-text
    ("connect", False),  # connect-es, application/json
    ("connect", True),  # connect-es, application/proto
]


def _token() -> str:
    claims = {"iss": ISSUER, "aud": "edge", "sub": "reader", "exp": time.time() + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "demo"})


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    ensure_installed()  # npm ci + the browser bundle (skips under EDGE_SKIP_INTEROP=1)
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with open_page(devtools_port) as opened:
        yield opened


@pytest.fixture
async def origin(page: Page) -> AsyncIterator[str]:
    async with serve_page() as served:
        await open_call_page(page, served)
        yield served


@pytest.fixture
async def gateway(origin: str) -> AsyncIterator[Gateway]:
    server, port = await start_library()
    extra: dict[str, Any] = {
        "auth": {
            "issuers": [
                {
                    "issuer": ISSUER,
                    "algorithms": ["HS256"],
                    "audiences": ["edge"],
                    "keys": [{"kid": "demo", "secret": SECRET}],
                }
            ]
        },
        "policies": [{"match": ["edgedemo.library.v1.*"], "auth": {"require": "token"}}],
        "cors": {"allow_origins": [origin]},
    }
    try:
        async with run_gateway(make_config(port, protos=DEMO_PROTOS, extra=extra)) as running:
            yield running
    finally:
        await server.stop(grace=None)


@pytest.mark.parametrize(("transport", "binary"), TRANSPORTS, ids=lambda v: str(v))
async def test_the_demo_from_a_browser_with_a_token(
    page: Page, gateway: Gateway, transport: str, binary: bool
) -> None:
    async def call(method: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
        spec = demo_spec(
            gateway.base_url, transport, method, request, binary=binary, timeoutMs=5000, **extra
        )
        return await browser_call(page, spec)

    book = await call("GetBook", {"name": "shelves/1/books/2"}, headers=bearer(_token()))
    stream = await call("StreamBooks", {"parent": "shelves/1"}, headers=bearer(_token()))
    missing = await call("GetBook", {"name": "shelves/1/books/99"}, headers=bearer(_token()))
    refused = await call("GetBook", {"name": "shelves/1/books/2"})

    assert book["ok"], book
    assert book["messages"][0]["title"] == "The Guns of August"
    assert stream["ok"], stream
    assert len(stream["messages"]) >= 2
    assert all(m["name"].startswith("shelves/1/books/") for m in stream["messages"])
    assert not missing["ok"]
    assert missing["error"]["code"] == "not_found", missing
    assert missing["error"]["message"] == "shelves/1/books/99 does not exist"
    assert not refused["ok"]
    assert refused["error"]["code"] == "unauthenticated", refused
