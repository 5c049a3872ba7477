"""The one Call factory and the front door's dispatch, without a network.

Every adapter makes its Call through ``CallFactory``; these tables pin what reaches the
pipeline from a scope: the peer, the forwarded headers a client cannot forge, the token
and the deadline. The dispatch asks adapters in order and falls through to the app.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from google.protobuf import empty_pb2

from edge.call import HttpRequest
from edge.descriptors.registry import MethodInfo
from edge.errors import BadRequest
from edge.ingress.calls import CallFactory, deadline, grpc_timeout, request_host
from edge.ingress.dispatch import Dispatch
from edge.routing.prefix_table import ProxyRoute
from edge.upstream.headers import HeaderPolicy

METHOD = MethodInfo(
    service="pkg.Svc",
    name="Get",
    input_type=empty_pb2.Empty,
    output_type=empty_pb2.Empty,
    client_streaming=False,
    server_streaming=False,
    http_rules=(),
    source_file="pkg/svc.proto",
)
ROUTE = ProxyRoute(
    name="proxy:/api",
    prefix="/api",
    upstream="web",
    host=None,
    methods=None,
    replacement="/api",
    timeout=3.0,
    websocket=True,
)
FACTORY = CallFactory(
    HeaderPolicy.of(["x-trace"], []),
    token_query="access_token",
    token_cookie="session",
    trusted=(ipaddress.ip_network("10.0.0.0/8"),),
)


def scope(headers: list[tuple[bytes, bytes]], client: str = "203.0.113.9", **more: Any) -> Any:
    return {
        "type": "http",
        "headers": headers,
        "query_string": more.pop("query", b""),
        "client": (client, 5555),
        "server": ("127.0.0.1", 8080),
        **more,
    }


@pytest.mark.parametrize(
    ("route", "asked", "expected"),
    [
        (None, None, None),
        (5.0, None, 5.0),
        (None, 2.0, 2.0),
        (5.0, 2.0, 2.0),
        (5.0, 9.0, 5.0),  # a client can shorten its deadline, never lengthen it
    ],
)
def test_the_deadline_is_the_shorter_of_route_and_client(
    route: float | None, asked: float | None, expected: float | None
) -> None:
    assert deadline(route, asked) == expected


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [([], None), ([(b"grpc-timeout", b"250m")], 0.25), ([(b"grpc-timeout", b"2S")], 2.0)],
)
def test_grpc_timeout_header(headers: list[tuple[bytes, bytes]], seconds: float | None) -> None:
    assert grpc_timeout(headers) == seconds


@pytest.mark.parametrize("value", [b"", b"1", b"S", b"123456789S", b"-1S", b"1x", b"1.5S"])
def test_a_malformed_grpc_timeout_is_a_bad_request(value: bytes) -> None:
    with pytest.raises(BadRequest):
        grpc_timeout([(b"grpc-timeout", value)])


def test_a_grpc_call_carries_peer_metadata_token_and_the_forwarded_chain() -> None:
    call = FACTORY.grpc(
        scope(
            [
                (b"host", b"api.example.com"),
                (b"authorization", b"Bearer tok"),
                (b"x-trace", b"t1"),
                (b"x-forwarded-for", b"198.51.100.1"),
                (b"grpc-metadata-tenant", b"acme"),
                (b"cookie", b"session=other"),
            ]
        ),
        upstream="up",
        method=METHOD,
        timeout=1.5,
    )
    assert (call.upstream, call.route, call.timeout, call.protocol) == (
        "up",
        "pkg.Svc.Get",
        1.5,
        "http",
    )
    assert call.client == "203.0.113.9"
    assert call.token == "tok"  # the header wins over the cookie
    assert ("x-trace", "t1") in call.metadata
    assert ("tenant", "acme") in call.metadata
    assert ("x-forwarded-for", "198.51.100.1, 203.0.113.9") in call.metadata
    assert ("x-forwarded-host", "api.example.com") in call.metadata
    assert not any(k == "authorization" for k, _ in call.metadata)  # not allowlisted


@pytest.mark.parametrize(
    ("headers", "query", "token"),
    [
        ([], b"access_token=q", "q"),
        ([(b"cookie", b"a=1; session=c")], b"", "c"),
        ([(b"authorization", b"Basic abc")], b"", None),
        ([], b"", None),
    ],
)
def test_the_token_is_found_in_the_configured_places(
    headers: list[tuple[bytes, bytes]], query: bytes, token: str | None
) -> None:
    call = FACTORY.grpc(scope(headers, query=query), upstream="u", method=METHOD, timeout=None)
    assert call.token == token


def test_a_malformed_bin_header_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        FACTORY.grpc(
            scope([(b"grpc-metadata-trace-bin", b"%%%")]), upstream="u", method=METHOD, timeout=None
        )


def _proxied(headers: list[tuple[bytes, bytes]], client: str, protocol: str = "http") -> Any:
    request = HttpRequest("GET", "/api/x", b"", _empty())
    return FACTORY.proxied(
        scope(headers, client=client), ROUTE, "api.example.com", request, protocol
    )


async def _empty() -> Any:
    return
    yield


def test_a_proxied_call_gets_the_gateways_own_forwarded_headers() -> None:
    call = _proxied(
        [
            (b"host", b"api.example.com"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"x-forwarded-proto", b"https"),  # forged: the gateway says what it saw
            (b"x-forwarded-host", b"evil.example"),
            (b"x-real-ip", b"1.1.1.1"),
            (b"forwarded", b"for=1.1.1.1"),  # from an untrusted peer: dropped
            (b"connection", b"x-drop"),
            (b"x-drop", b"1"),
            (b"keep-alive", b"5"),
            (b"x-keep", b"yes"),
        ],
        client="203.0.113.9",
    )
    metadata = dict(call.metadata)
    assert metadata["x-forwarded-for"] == "198.51.100.1, 203.0.113.9"
    assert metadata["x-forwarded-proto"] == "http"
    assert metadata["x-forwarded-host"] == "api.example.com"
    assert metadata["x-real-ip"] == "203.0.113.9"
    assert metadata["x-keep"] == "yes"
    for gone in ("forwarded", "x-drop", "keep-alive", "connection", "host"):
        assert gone not in metadata
    assert (call.route, call.upstream, call.timeout, call.client) == (
        "proxy:/api",
        "web",
        3.0,
        "203.0.113.9",
    )


def test_a_trusted_proxy_may_pass_forwarded_and_names_the_real_client() -> None:
    call = _proxied(
        [(b"forwarded", b"for=198.51.100.7"), (b"x-forwarded-for", b"198.51.100.7")],
        client="::ffff:10.1.2.3",  # IPv4-mapped: the trusted 10/8 proxy
    )
    metadata = dict(call.metadata)
    assert metadata["forwarded"] == "for=198.51.100.7"
    assert metadata["x-real-ip"] == "198.51.100.7"
    assert metadata["x-forwarded-for"] == "198.51.100.7, 10.1.2.3"
    assert call.client == "10.1.2.3"


def test_a_proxied_handshake_leaves_the_upstream_handshake_headers_to_the_client_library() -> None:
    call = _proxied(
        [(b"sec-websocket-key", b"k"), (b"sec-websocket-protocol", b"chat")],
        client="203.0.113.9",
        protocol="websocket",
    )
    metadata = dict(call.metadata)
    assert "sec-websocket-key" not in metadata
    assert metadata["sec-websocket-protocol"] == "chat"
    assert call.protocol == "websocket"


@pytest.mark.parametrize(
    ("headers", "host"),
    [
        ([(b"host", b"API.Example.com:8080")], "api.example.com:8080"),
        ([(b":authority", b"h2.example")], "h2.example"),
        ([], "127.0.0.1:8080"),
    ],
)
def test_request_host(headers: list[tuple[bytes, bytes]], host: str) -> None:
    assert request_host(scope(headers)) == host


class _Adapter:
    def __init__(self, name: str, kinds: set[str], claims: set[str], served: list[str]) -> None:
        self.name, self.scope_types, self.claims, self.served = (
            name,
            frozenset(kinds),
            claims,
            served,
        )

    def claim(self, scope: Any, path: str) -> Any:
        return path if path in self.claims else None

    async def serve(self, claim: Any, scope: Any, receive: Any, send: Any) -> None:
        self.served.append(f"{self.name}:{claim}")


async def test_the_first_adapter_that_claims_serves_and_the_rest_fall_through() -> None:
    served: list[str] = []
    first = _Adapter("first", {"http"}, {"/a"}, served)
    second = _Adapter("second", {"http", "websocket"}, {"/a", "/b"}, served)

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        served.append(f"quart:{scope['path']}")

    dispatch = Dispatch([first, second], fallback)
    for kind, path in [
        ("http", "/a"),
        ("http", "/b"),
        ("websocket", "/a"),
        ("http", "/c"),
        ("lifespan", "/a"),
    ]:
        await dispatch({"type": kind, "path": path, "raw_path": path.encode()}, None, None)  # type: ignore[arg-type]
    assert served == ["first:/a", "second:/b", "second:/a", "quart:/c", "quart:/a"]


async def test_adapters_match_the_raw_still_encoded_path() -> None:
    served: list[str] = []
    adapter = _Adapter("a", {"http"}, {"/x%2Fy"}, served)
    dispatch = Dispatch([adapter], None)  # type: ignore[arg-type]
    await dispatch({"type": "http", "path": "/x/y", "raw_path": b"/x%2Fy"}, None, None)  # type: ignore[arg-type]
    assert served == ["a:/x%2Fy"]
