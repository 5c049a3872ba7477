"""The front door: each request goes to the adapter of the protocol that claims it.

Adapters are asked in order (gRPC-Web and Connect before plain JSON, because their
headers are what tells them apart on a shared path; the proxy last, so a transcoded route
wins over a proxy prefix), and the first claim wins; what nobody claims (health, admin,
documents, unknown paths) falls through to the Quart app. A claim is cheap and has no
effects (a table lookup, a header check), so asking several adapters costs little; the
work starts in ``serve``. Adding a protocol is one adapter module and one line where the
dispatch is built (``edge.app``).

The path an adapter sees is the request guard's normalised ``raw_path``, still
percent-encoded, so what is matched is what is forwarded.

CORS is answered here, for every adapter alike: a preflight is answered by the gateway
before any adapter, pipeline layer or upstream sees it (auth, limits and breakers never
count it), by the policy of the route the real request would take; an actual request
from an origin gets its route's CORS headers on whatever the adapter answers, errors
included (a 401 or 429 a page cannot read looks to it like a network failure). Where no
CORS policy applies, a preflight is served like any request: a proxy route passes it to
its upstream, Quart answers 404 or 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from edge.ingress.asgi import ASGIApp, Message, Receive, Scope, Send, header
from edge.ingress.cors import CorsPolicy, CorsRules, label_response, private_network_requested


class Adapter(Protocol):
    """One client protocol: claims the requests that speak it and serves them."""

    scope_types: frozenset[str]  # the ASGI scope types it serves: "http", "websocket"

    def claim(self, scope: Scope, path: str) -> Any:
        """What ``serve`` needs to serve this request (a route match), or None."""

    def route_name(self, claim: Any) -> str | None:
        """The claimed request's route name (what policies match), if it has one."""

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        """The route a request with ``method`` at ``path`` would take here (for a
        CORS preflight, which names the method and not the body that would follow)."""

    async def serve(self, claim: Any, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a claimed request to its end; never raises for a client's error."""


class Dispatch:
    """The ASGI app in front of Quart: scope -> the adapter that claims it -> Quart."""

    def __init__(
        self, adapters: Sequence[Adapter], fallback: ASGIApp, cors: CorsRules | None = None
    ) -> None:
        self.adapters = tuple(adapters)
        self.fallback = fallback
        self.cors = cors
        self._by_type = {
            kind: tuple(a for a in self.adapters if kind in a.scope_types)
            for kind in ("http", "websocket")
        }

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # not a coroutine: it returns the one that serves the request, so a request (and
        # an open WebSocket, for its whole life) holds one frame less
        adapters = self._by_type.get(scope["type"])
        if adapters:
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else scope["path"]
            if self.cors is not None and scope["type"] == "http":
                origin = header(scope["headers"], b"origin")
                if origin is not None:
                    return self._cross_origin(
                        self.cors, origin, adapters, path, scope, receive, send
                    )
            for adapter in adapters:
                claimed = adapter.claim(scope, path)
                if claimed is not None:
                    return adapter.serve(claimed, scope, receive, send)
        return self.fallback(scope, receive, send)

    async def _cross_origin(
        self,
        cors: CorsRules,
        origin: bytes,
        adapters: tuple[Adapter, ...],
        path: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        headers = scope["headers"]
        asked = header(headers, b"access-control-request-method")
        if scope["method"] == "OPTIONS" and asked is not None:
            method = asked.decode("latin-1")
            route = next(
                (
                    found
                    for adapter in adapters
                    if (found := adapter.preflight_route(scope, path, method)) is not None
                ),
                None,
            )
            policy = cors.for_route(route)
            if policy is not None:
                await _answer_preflight(policy, origin, method, scope, send, route)
                return
        for adapter in adapters:
            claimed = adapter.claim(scope, path)
            if claimed is not None:
                policy = cors.for_route(adapter.route_name(claimed))
                labelled = _labelled(send, policy.actual(origin)) if policy else send
                await adapter.serve(claimed, scope, receive, labelled)
                return
        policy = cors.for_route(None)
        await self.fallback(
            scope, receive, _labelled(send, policy.actual(origin)) if policy else send
        )


async def _answer_preflight(
    policy: CorsPolicy, origin: bytes, method: str, scope: Scope, send: Send, route: str | None
) -> None:
    """The gateway's own answer to a preflight: no adapter, no pipeline, no upstream."""
    headers = scope["headers"]
    answer = policy.preflight(
        origin,
        method,
        header(headers, b"access-control-request-headers"),
        private_network_requested(headers),
    )
    info = scope.get("edge")
    if info is not None:
        info["route"] = route or "cors:preflight"
        info["grpc_code"] = 0 if answer.allowed else 7
    out = list(answer.headers)
    if answer.status != 204:  # a 204 has no body and no Content-Length (RFC 9110 8.6)
        out.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": answer.status, "headers": out})
    await send({"type": "http.response.body", "body": b""})


def _labelled(send: Send, cors: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that puts the CORS headers on the response's start."""

    async def labelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": label_response(message.get("headers", ()), cors)}
        await send(message)

    return labelled
