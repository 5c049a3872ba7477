"""The one place a client request becomes a ``Call``, whatever protocol carried it.

Every adapter asks this factory, so the peer address, the ``X-Forwarded-*`` the upstream
sees, the metadata, the bearer token and the deadline are found by one rule: a gRPC call
made from a JSON POST, a gRPC-Web frame or a WebSocket handshake cannot differ in what
identity or deadline reaches the pipeline. Built once from config; pure apart from
reading the ASGI scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.call import Call, HttpRequest
from edge.descriptors.registry import MethodInfo
from edge.ingress.asgi import Scope
from edge.pipeline.credentials import (
    Network,
    bearer_token,
    client_address,
    find_token,
    is_trusted,
    unmapped,
)
from edge.routing.prefix_table import ProxyRoute
from edge.upstream.headers import HeaderPolicy, clean_headers, parse_grpc_timeout, request_metadata

Headers = Sequence[tuple[bytes, bytes]]

# Request headers the proxy writes itself, whatever the client sent.
_SET_BY_GATEWAY = frozenset({b"host", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip"})
# Request headers a WebSocket handshake to the upstream makes for itself.
_HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions"}
)


def deadline(route_timeout: float | None, asked: float | None) -> float | None:
    """The call's timeout: the route's, shortened (never lengthened) by the client's ask."""
    if asked is None:
        return route_timeout
    return asked if route_timeout is None else min(asked, route_timeout)


def grpc_timeout(headers: Headers) -> float | None:
    """The client's ``grpc-timeout`` (seconds), if it sent one; BadRequest if malformed."""
    for name, value in headers:
        if name == b"grpc-timeout":
            return parse_grpc_timeout(value.decode("latin-1"))
    return None


def request_host(scope: Scope) -> str:
    """The authority the client asked for (``Host`` or ``:authority``), lower-case."""
    for name, value in scope["headers"]:
        if name == b"host" or name == b":authority":
            host: str = value.decode("latin-1").lower()
            return host
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


@dataclass(frozen=True, slots=True)
class CallFactory:
    """How requests become calls under one config: header policy, token places, proxies."""

    headers: HeaderPolicy
    token_query: str | None = None  # auth.token_query_parameter
    token_cookie: str | None = None  # auth.token_cookie
    trusted: tuple[Network, ...] = ()  # rate_limiting.trusted_proxies

    def grpc(
        self,
        scope: Scope,
        *,
        upstream: str,
        method: MethodInfo,
        timeout: float | None,
        protocol: str = "http",
        request: object = None,
    ) -> Call:
        """A call to a gRPC method; ``timeout`` is the deadline (see ``deadline``).

        Raises BadRequest for a malformed ``Grpc-Metadata-*-bin`` header.
        """
        headers = scope["headers"]
        query = scope["query_string"]
        client = scope.get("client")
        address = client[0] if client else None
        return Call(
            upstream=upstream,
            route=method.full_name,
            metadata=request_metadata(headers, self.headers, address),
            timeout=timeout,
            method=method,
            request=request,
            protocol=protocol,
            client=address,
            headers=headers,
            query=query,
            token=find_token(headers, query, self.token_query, self.token_cookie),
        )

    def socket(
        self,
        scope: Scope,
        *,
        upstream: str,
        method: MethodInfo,
        timeout: float | None,
        token: str | None,
    ) -> Call:
        """A WebSocket bridge's call to a gRPC method.

        ``token`` is the one the socket carried in its own forms (the subprotocol, the
        query or a cookie: ``websocket_policy.socket_token``): it wins over an
        ``Authorization`` header and reaches the upstream as one. Without it only that
        header counts; the HTTP routes' token query parameter and cookie are not the
        socket's (a socket has its own, in ``websocket:``).
        """
        call = self.grpc(
            scope, upstream=upstream, method=method, timeout=timeout, protocol="websocket"
        )
        if token:
            call.metadata = [(k, v) for k, v in call.metadata if k != "authorization"]
            call.metadata.append(("authorization", f"Bearer {token}"))
            call.token = token
        else:
            call.token = bearer_token(scope["headers"])
        return call

    def proxied(
        self, scope: Scope, route: ProxyRoute, host: str, request: HttpRequest, protocol: str
    ) -> Call:
        """A call to a plain HTTP upstream: end-to-end headers plus the gateway's own."""
        headers, client = self.forward_headers(scope, host)
        if protocol == "websocket":
            headers = [(n, v) for n, v in headers if n not in _HANDSHAKE_HEADERS]
        raw = scope["headers"]
        query = scope["query_string"]
        return Call(
            upstream=route.upstream,
            route=route.name,
            metadata=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            timeout=route.timeout,
            request=request,
            protocol=protocol,
            client=client,
            headers=raw,
            query=query,
            token=find_token(raw, query, self.token_query, self.token_cookie),
        )

    def forward_headers(
        self, scope: Scope, host: str
    ) -> tuple[list[tuple[bytes, bytes]], str | None]:
        """End-to-end request headers plus X-Forwarded-* and X-Real-IP; the peer's address.

        ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Real-IP`` are always the
        gateway's own (X-Real-IP is the client address believed through ``trusted``
        proxies); a ``Forwarded`` header passes only from a trusted proxy, since from
        anyone else it is whatever the client chose to claim. ``X-Forwarded-For`` is
        appended to, as nginx's ``$proxy_add_x_forwarded_for`` does: its last entry is
        always the real peer.
        """
        trusted = self.trusted
        peer = scope.get("client")
        client = unmapped(peer[0]) if peer else None
        from_proxy = client is not None and bool(trusted) and is_trusted(client, trusted)
        forwarded_for = b""
        headers = []
        for name, value in clean_headers(scope["headers"]):
            if name == b"x-forwarded-for":
                forwarded_for = forwarded_for + b", " + value if forwarded_for else value
            elif name == b"forwarded":
                if from_proxy:
                    headers.append((name, value))
            elif name not in _SET_BY_GATEWAY:
                headers.append((name, value))
        if client:
            address = client.encode("latin-1")
            forwarded_for = forwarded_for + b", " + address if forwarded_for else address
            real = client_address(client, scope["headers"], trusted) or client
            headers.append((b"x-real-ip", real.encode("latin-1")))
        if forwarded_for:
            headers.append((b"x-forwarded-for", forwarded_for))
        scheme = scope.get("scheme", "http")
        headers.append((b"x-forwarded-proto", b"https" if scheme in ("https", "wss") else b"http"))
        if host:
            headers.append((b"x-forwarded-host", host.encode("latin-1")))
        return headers, client
