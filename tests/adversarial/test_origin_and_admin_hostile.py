"""Hostile origins and admin callers: who may open a socket, and who may see /admin.

**Origins** (docs/websocket.md, Origins): a browser always sends ``Origin``; only the
origins in ``websocket.allowed_origins`` may open a socket (by default ``same-origin``:
the Origin's host and port are the request's ``Host``), on the gRPC bridge and the proxy's
WebSocket relay alike. A refused handshake is a 403 with a ``google.rpc.Status`` body
(code 7), decided before credentials, so nothing reaches an upstream. A client that sends
no Origin is not a browser and is let through.

**Admin** (docs/operations.md, Admin endpoints): with ``admin.token`` set, only
``Authorization: Bearer <admin.token>`` opens ``/admin/*``, from anywhere; without it,
only loopback clients, decided by the connection's own peer address, never by a header a
client can write. A refusal is a 403 with a Status body (code 7). A test on loopback
cannot be a remote client; it connects from ``127.0.0.2`` instead, which the admin rule
does not count as loopback (it admits exactly ``127.0.0.1`` and ``::1``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from recording import (
    SECRET,
    Edge,
    answer_headers,
    body_of,
    handshake,
    raw_request,
    rpc_status,
    start_edge,
    status_of,
    token,
)
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ALLOWED = "https://example.com"
ADMIN_TOKEN = "an-admin-token-0f3c9a"
PROTOCOL = "edge.grpc-ws.v1"
NOT_LOOPBACK = "127.0.0.2"  # a peer the admin rule does not count as loopback
# Hypercorn's ping loop of a closed socket holds the gateway's shutdown until it next
# wakes (edge/cli.py, Drain): short, so the module's teardown does not wait for it
QUICK_CLOSE = {"ping_interval": "100ms"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def listed() -> AsyncIterator[Edge]:
    """``allowed_origins: [https://example.com]`` and an admin token."""
    async with start_edge(
        websocket={"allowed_origins": [ALLOWED], **QUICK_CLOSE}, admin={"token": ADMIN_TOKEN}
    ) as edge:
        yield edge


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def default() -> AsyncIterator[Edge]:
    """The defaults: same-origin sockets, admin for loopback clients."""
    async with start_edge(websocket=QUICK_CLOSE) as edge:
        yield edge


def cleared(edge: Edge) -> Edge:
    edge.http.requests.clear()
    edge.kitchen.received.clear()
    return edge


@pytest.fixture
def with_list(listed: Edge) -> Edge:
    return cleared(listed)


@pytest.fixture
def same_origin(default: Edge) -> Edge:
    return cleared(default)


# -- WebSocket origins --------------------------------------------------------------------

# (path, what to add to the handshake): the bridge and the proxy relay, public and guarded
SOCKETS: dict[str, tuple[str, dict[str, Any]]] = {
    "bridge": ("/ws/edgetest.v1.KitchenService/Echo", {"subprotocols": [PROTOCOL]}),
    "bridge-guarded": (
        "/ws/edgetest.v1.KitchenService/Inspect",
        {"subprotocols": [PROTOCOL], "additional_headers": {"Authorization": f"Bearer {token()}"}},
    ),
    "bridge-guarded-no-token": (
        "/ws/edgetest.v1.KitchenService/Inspect",
        {"subprotocols": [PROTOCOL]},
    ),
    "proxy": ("/api/x", {}),
    "proxy-guarded": (
        "/api/admin/x",
        {"additional_headers": {"Authorization": f"Bearer {token()}"}},
    ),
    "proxy-guarded-no-token": ("/api/admin/x", {}),
}


async def open_with_origin(edge: Edge, socket: str, origin: str | None) -> tuple[int, bytes]:
    path, extra = SOCKETS[socket]
    headers = dict(extra.get("additional_headers", {}))
    if origin is not None:
        headers["Origin"] = origin
    kwargs = {**extra, "additional_headers": list(headers.items())}
    status, _, body = await handshake(f"ws://127.0.0.1:{edge.gateway.port}{path}", **kwargs)
    return status, body


def assert_origin_refused(answer: tuple[int, bytes], edge: Edge) -> None:
    status, body = answer
    assert status == 403, answer
    assert rpc_status(body, 7)["message"] == "origin not allowed"
    assert edge.http.requests == []
    assert edge.kitchen.received == []


REFUSED_BY_THE_LIST = [
    "null",
    "",
    "*",
    "https://evil-example.com",
    "https://example.com.evil.net",
    "https://evil.net/https://example.com",
    "https://example.com@evil.net",
    "https://evil.net#https://example.com",
    "https://sub.example.com",
    "https://example.co",
    "https://example.com.",
    "https://examp1e.com",
    "http://example.com",
    "wss://example.com",
    "ws://example.com",
    "https://example.com:443",
    "https://example.com:8443",
    "https://example.com/path",
    "https://user@example.com",
    "https://example.com, https://evil.net",
    "https://evil.net, https://example.com",
    "example.com",
]


# every origin at the public sockets; at the guarded ones (with and without a token: the
# origin is decided first) a few, to show the rule does not depend on the route
ORIGIN_CASES = [
    pytest.param(socket, origin, id=f"{origin or 'empty'}-{socket}")
    for origin in REFUSED_BY_THE_LIST
    for socket in SOCKETS
    if socket in ("bridge", "proxy") or origin in ("null", "https://example.com.evil.net")
]


@pytest.mark.parametrize(("socket", "origin"), ORIGIN_CASES)
async def test_an_origin_not_on_the_list_is_refused_403(
    with_list: Edge, socket: str, origin: str
) -> None:
    assert_origin_refused(await open_with_origin(with_list, socket, origin), with_list)


@pytest.mark.parametrize(
    "origin",
    [ALLOWED, "HTTPS://EXAMPLE.COM", "https://Example.com", ALLOWED + "/", None],
    ids=["exact", "upper-case", "mixed-case", "trailing-slash", "no-origin"],
)
@pytest.mark.parametrize("socket", ["bridge", "bridge-guarded", "proxy", "proxy-guarded"])
async def test_a_listed_origin_or_none_opens_the_socket(
    with_list: Edge, socket: str, origin: str | None
) -> None:
    """The control: scheme and host are compared without case (RFC 6454 4), nothing else."""
    status, body = await open_with_origin(with_list, socket, origin)
    assert status == 101, body
    if socket.startswith("proxy"):
        assert len(with_list.http.requests) == 1  # relayed: the upstream's handshake


async def test_a_refused_origin_never_makes_a_call_that_an_allowed_one_makes(
    with_list: Edge,
) -> None:
    """On the bridge an open socket calls upstream only at its first frame: send one."""
    url = f"ws://127.0.0.1:{with_list.gateway.port}/ws/edgetest.v1.KitchenService/Echo"
    protocols = [Subprotocol(PROTOCOL)]
    async with connect(url, subprotocols=protocols, origin=Origin(ALLOWED), open_timeout=5) as ws:
        await ws.send(json.dumps({"message": {"stringValue": "hi"}}))
        reply = json.loads(await ws.recv())
    assert reply == {"message": {"stringValue": "hi"}}
    assert [method for method, _ in with_list.kitchen.received] == [
        "/edgetest.v1.KitchenService/Echo"
    ]
    with_list.kitchen.received.clear()
    assert_origin_refused(await open_with_origin(with_list, "bridge", "null"), with_list)


def same_origin_refusals(port: int) -> list[str]:
    return [
        "null",
        "",
        f"http://127.0.0.1:{port + 1}",
        "http://127.0.0.1",
        f"http://localhost:{port}",
        f"http://[::1]:{port}",
        f"http://127.0.0.2:{port}",
        f"http://user@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}@evil.net",
        f"http://127.0.0.1:{port}.evil.net",
        f"http://evil.net#@127.0.0.1:{port}",
        f"http://evil.net/127.0.0.1:{port}",
        f"127.0.0.1:{port}",
        f"http://127.0.0.1:0{port}",
    ]


@pytest.mark.parametrize("socket", ["bridge", "proxy", "bridge-guarded", "proxy-guarded"])
async def test_same_origin_refuses_every_other_host_and_port(
    same_origin: Edge, socket: str
) -> None:
    port = same_origin.gateway.port
    for origin in same_origin_refusals(port):
        answer = await open_with_origin(same_origin, socket, origin)
        assert answer[0] == 403, (origin, answer)
        assert_origin_refused(answer, same_origin)


@pytest.mark.parametrize("socket", ["bridge", "proxy", "bridge-guarded", "proxy-guarded"])
async def test_same_origin_opens_for_the_gateways_own_origin(
    same_origin: Edge, socket: str
) -> None:
    port = same_origin.gateway.port
    for origin in (f"http://127.0.0.1:{port}", f"HTTP://127.0.0.1:{port}", None):
        status, body = await open_with_origin(same_origin, socket, origin)
        assert status == 101, (origin, body)


# -- admin, with admin.token --------------------------------------------------------------


def request(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: edge.test", "Connection: close", *headers]
    if method == "POST":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def request_from(address: str, port: int, data: bytes) -> bytes:
    """Like ``raw_request``, from the given local address."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def assert_admin_refused(answer: bytes) -> None:
    assert status_of(answer) == 403, answer
    status = rpc_status(body_of(answer), 7)
    assert status["message"] == "the admin endpoints need the admin token"


ENDPOINTS = [
    ("GET", "/admin/routes"),
    ("GET", "/admin/descriptors"),
    ("GET", "/admin/pipeline"),
    ("GET", "/admin/config"),
    ("GET", "/admin/explain?method=POST&path=/v1/inspect"),
    ("POST", "/admin/explain?method=POST&path=/v1/inspect"),
    ("POST", "/admin/reload"),
]
BASIC = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
WRONG_CREDENTIALS = {
    "none": [],
    "wrong-token": ["Authorization: Bearer not-the-token"],
    "token-upper-case": [f"Authorization: Bearer {ADMIN_TOKEN.upper()}"],
    "token-capitalised": [f"Authorization: Bearer {ADMIN_TOKEN.capitalize()}"],
    "token-prefix": [f"Authorization: Bearer {ADMIN_TOKEN[:-1]}"],
    "token-extended": [f"Authorization: Bearer {ADMIN_TOKEN}x"],
    "two-spaces": [f"Authorization: Bearer  {ADMIN_TOKEN}"],
    "no-scheme": [f"Authorization: {ADMIN_TOKEN}"],
    "token-scheme": [f"Authorization: Token {ADMIN_TOKEN}"],
    "basic": [f"Authorization: Basic {BASIC}"],
    "a-jwt": [f"Authorization: Bearer {token()}"],
    "other-header": [f"X-Admin-Token: {ADMIN_TOKEN}"],
    "cookie": [f"Cookie: token={ADMIN_TOKEN}; admin_token={ADMIN_TOKEN}"],
    "forged-loopback": ["X-Forwarded-For: 127.0.0.1", "Forwarded: for=127.0.0.1"],
}


# every endpoint without credentials; every wrong credential at a reader and a writer
ADMIN_CASES = [
    pytest.param(method, path, credentials, id=f"{credentials}-{method}-{path.split('?')[0]}")
    for credentials in WRONG_CREDENTIALS
    for method, path in ENDPOINTS
    if credentials == "none" or path in ("/admin/config", "/admin/reload")
]


@pytest.mark.parametrize(("method", "path", "credentials"), ADMIN_CASES)
async def test_admin_without_the_token_is_refused_403(
    with_list: Edge, method: str, path: str, credentials: str
) -> None:
    """Also from loopback: with a token set, the address no longer admits anyone."""
    answer = await raw_request(
        with_list.gateway.port, request(method, path, *WRONG_CREDENTIALS[credentials])
    )
    assert_admin_refused(answer)


@pytest.mark.parametrize(
    "query",
    [
        f"?token={ADMIN_TOKEN}",
        f"?access_token={ADMIN_TOKEN}",
        f"?admin_token={ADMIN_TOKEN}",
        f"?authorization=Bearer%20{ADMIN_TOKEN}",
    ],
)
async def test_the_admin_token_in_the_query_is_refused_403(with_list: Edge, query: str) -> None:
    """A URL ends up in logs and browser history: only the header carries the token."""
    answer = await raw_request(with_list.gateway.port, request("GET", "/admin/config" + query))
    assert_admin_refused(answer)


@pytest.mark.parametrize(
    "path",
    ["/%61dmin/config", "/admin/./config", "//admin//config", "/api/../admin/config"],
)
async def test_spellings_of_an_admin_path_get_the_admin_rule(with_list: Edge, path: str) -> None:
    refused = await raw_request(with_list.gateway.port, request("GET", path))
    allowed = await raw_request(
        with_list.gateway.port, request("GET", path, f"Authorization: Bearer {ADMIN_TOKEN}")
    )
    assert_admin_refused(refused)
    assert status_of(allowed) == 200
    assert with_list.http.requests == []  # /api/../admin is not the proxy's to forward


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
async def test_admin_head_and_options_are_refused_too(with_list: Edge, method: str) -> None:
    answer = await raw_request(with_list.gateway.port, request(method, "/admin/config"))
    assert status_of(answer) == 403
    if method == "OPTIONS":
        assert_admin_refused(answer)
    assert "allow" not in answer_headers(answer)  # nothing said about the route


@pytest.mark.parametrize("address", ["127.0.0.1", NOT_LOOPBACK])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS[:5])
async def test_admin_with_the_token_is_served_from_anywhere(
    with_list: Edge, address: str, method: str, path: str
) -> None:
    answer = await request_from(
        address,
        with_list.gateway.port,
        request(method, path, f"Authorization: Bearer {ADMIN_TOKEN}"),
    )
    assert status_of(answer) == 200, answer[:300]
    assert answer_headers(answer)["content-type"] == "application/json"
    json.loads(body_of(answer))


async def test_admin_config_never_shows_the_secrets(with_list: Edge) -> None:
    answer = await raw_request(
        with_list.gateway.port,
        request("GET", "/admin/config", f"Authorization: Bearer {ADMIN_TOKEN}"),
    )
    assert status_of(answer) == 200
    shown = body_of(answer).decode()
    assert ADMIN_TOKEN not in shown
    assert SECRET not in shown
    assert json.loads(shown)["admin"]["token"] == "***"


# -- admin, loopback only (no admin.token) ------------------------------------------------

FORGED_LOOPBACK = {
    "nothing": [],
    "x-forwarded-for": ["X-Forwarded-For: 127.0.0.1"],
    "x-forwarded-for-v6": ["X-Forwarded-For: ::1"],
    "x-forwarded-for-chain": ["X-Forwarded-For: 203.0.113.9, 127.0.0.1"],
    "forwarded": ["Forwarded: for=127.0.0.1"],
    "forwarded-v6": ['Forwarded: for="[::1]"'],
    "x-real-ip": ["X-Real-IP: 127.0.0.1"],
    "x-client-ip": ["X-Client-IP: 127.0.0.1", "True-Client-IP: 127.0.0.1"],
    "host-localhost": ["X-Forwarded-Host: localhost"],
}


@pytest.mark.parametrize(("method", "path"), [ENDPOINTS[3], ENDPOINTS[6]])
@pytest.mark.parametrize("forged", FORGED_LOOPBACK)
async def test_a_non_loopback_client_cannot_claim_to_be_loopback(
    same_origin: Edge, method: str, path: str, forged: str
) -> None:
    answer = await request_from(
        NOT_LOOPBACK,
        same_origin.gateway.port,
        request(method, path, *FORGED_LOOPBACK[forged]),
    )
    assert_admin_refused(answer)


async def test_a_non_loopback_client_is_refused_even_with_a_token_when_none_is_set(
    same_origin: Edge,
) -> None:
    """Without admin.token no token admits anyone: a made-up one is not a way in."""
    answer = await request_from(
        NOT_LOOPBACK,
        same_origin.gateway.port,
        request("GET", "/admin/config", f"Authorization: Bearer {ADMIN_TOKEN}"),
    )
    assert_admin_refused(answer)


async def test_a_loopback_client_is_served_without_a_token(same_origin: Edge) -> None:
    """The control: the peer address, not the request, decides."""
    answer = await request_from(
        "127.0.0.1", same_origin.gateway.port, request("GET", "/admin/config")
    )
    assert status_of(answer) == 200


# -- admin on a listener of its own (admin.bind) ------------------------------------------


@pytest.mark.parametrize(
    "credentials", [[], [f"Authorization: Bearer {ADMIN_TOKEN}"]], ids=["no-token", "token"]
)
async def test_off_the_admin_listener_admin_paths_are_an_unknown_path(
    credentials: list[str],
) -> None:
    """``admin.bind``: on the other listeners ``/admin/*`` is a 404 like any unknown path.

    The admin listener itself is not served here (the test gateway listens on one socket);
    the port named is one nothing listens on.
    """
    admin = {"bind": "127.0.0.1:9", "token": ADMIN_TOKEN}
    async with start_edge(admin=admin) as edge:
        unknown = await raw_request(edge.gateway.port, request("GET", "/nothing/here"))
        answers = [
            await raw_request(edge.gateway.port, request(method, path, *credentials))
            for method, path in ENDPOINTS
            if method == "GET"
        ]
    assert status_of(unknown) == 404
    rpc_status(body_of(unknown), 5)
    for answer in answers:
        assert status_of(answer) == 404, answer
        assert body_of(answer) == body_of(unknown)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/config"), ("GET", "/admin/reload"), ("PUT", "/admin/routes")],
)
async def test_off_the_admin_listener_a_wrong_method_is_an_unknown_path_too(
    method: str, path: str
) -> None:
    async with start_edge(admin={"bind": "127.0.0.1:9"}) as edge:
        unknown = await raw_request(edge.gateway.port, request(method, "/nothing/here"))
        answer = await raw_request(edge.gateway.port, request(method, path))
    assert status_of(answer) == 404, answer
    assert body_of(answer) == body_of(unknown)
