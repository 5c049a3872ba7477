"""The plain HTTP proxy ingress: proxied routes by path prefix, host and method.

A pure ASGI app in front of the Quart app (after the transcoding ingress, so a transcoded
route wins over a proxy prefix). Routes are compiled once into a dict keyed by prefix;
a request walks its own path's segment prefixes from the longest down (``/a/b/c``,
``/a/b``, ``/a``, the root), one dict lookup each, so matching costs the path's depth,
not the number of routes, and a prefix only ever matches whole segments (``/api``
matches ``/api`` and ``/api/x``, never ``/apix``). Among routes with the same prefix,
the first in the config whose host and method filters accept the request wins.

Each request becomes a ``Call`` through the same pipeline as gRPC calls (route
``proxy:<prefix>``, ``request`` an ``HttpRequest``): the request body is passed on as it
arrives and the response body written as it comes, never buffered. Hop-by-hop headers
(and any named in ``Connection``) are dropped both ways; ``X-Forwarded-For`` is appended
to, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are set. WebSocket upgrades on a
route with ``websocket: true`` go through the pipeline the same way and are then relayed
frame by frame, close codes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from edge.call import Call, HttpRequest, HttpResponse
from edge.config import HttpUpstreamConfig, PathsConfig, ProxyRouteConfig
from edge.errors import BadRequest, ClientDisconnected, EdgeError, PermissionDenied
from edge.ingress.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    error_response,
    refuse_handshake,
    send_response,
)
from edge.ingress.websocket_policy import WebSocketPolicy, origin_allowed
from edge.pipeline.chain import Next
from edge.pipeline.credentials import (
    Network,
    client_address,
    find_token,
    is_trusted,
    unmapped,
)
from edge.pipeline.ratelimit import RateLimitLayer
from edge.routing.normalize import BadPath, check_proxied_path
from edge.transcode.response import status_body
from edge.upstream.http_proxy import UpstreamSocket, clean_headers

log = logging.getLogger("edge.proxy")

# Close codes a peer may receive but no endpoint may send (RFC 6455 7.4.1), and what we
# send instead: 1005 "no status" is a normal close; 1006 "dropped" is 1014 "bad gateway".
_UNSENDABLE_CLOSE = {1005: 1000, 1006: 1014, 1015: 1014}
# Request headers a WebSocket handshake to the upstream makes for itself.
# Request headers the proxy writes itself, whatever the client sent.
_SET_BY_GATEWAY = frozenset({b"host", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip"})
_HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions"}
)


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One compiled ``proxy_routes`` entry."""

    name: str  # proxy:<prefix>, the Call's route name for limits, breakers and logs
    prefix: str  # without a trailing slash; "" for the root
    upstream: str
    host: str | None  # lower-case
    methods: frozenset[str] | None  # upper-case
    replacement: str  # what replaces the prefix in the upstream path
    timeout: float | None
    websocket: bool

    def accepts(self, host: str, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is None:
            return True
        if host == self.host:
            return True
        # a configured host without a port matches the Host header on any port
        bare = host[: host.index("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
        return bare == self.host

    def upstream_path(self, path: str) -> str:
        rest = path[len(self.prefix) :]
        out = self.replacement + rest
        if not out.startswith("/"):
            out = "/" + out
        return out


class ProxyTable:
    """Proxy routes by prefix, compiled once; ``match`` walks the path's segment prefixes."""

    __slots__ = ("_by_prefix",)

    def __init__(self, routes: Sequence[ProxyRoute]) -> None:
        by_prefix: dict[str, list[ProxyRoute]] = {}
        for route in routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        self._by_prefix = {prefix: tuple(found) for prefix, found in by_prefix.items()}

    def match(self, path: str, host: str, method: str, websocket: bool) -> ProxyRoute | None:
        candidate = path
        while True:
            found = self._by_prefix.get(candidate)
            if found is not None:
                for route in found:
                    if (route.websocket or not websocket) and route.accepts(host, method):
                        return route
            if not candidate:
                return None
            candidate = candidate[: candidate.rfind("/")]


def compile_proxy_routes(
    routes: Sequence[ProxyRouteConfig], upstreams: Mapping[str, HttpUpstreamConfig]
) -> ProxyTable:
    """The table for ``proxy_routes``; a route's timeout defaults to its upstream's."""
    compiled = []
    for config in routes:
        prefix = config.prefix.rstrip("/")
        if config.rewrite_prefix is not None:
            replacement = config.rewrite_prefix.rstrip("/")
        else:
            replacement = "" if config.strip_prefix else prefix
        timeout = config.timeout
        if timeout is None:
            timeout = upstreams[config.upstream].timeout
        compiled.append(
            ProxyRoute(
                name=f"proxy:{config.prefix}",
                prefix=prefix,
                upstream=config.upstream,
                host=config.host.lower() if config.host else None,
                methods=frozenset(m.upper() for m in config.methods) if config.methods else None,
                replacement=replacement,
                timeout=timeout,
                websocket=config.websocket,
            )
        )
    return ProxyTable(compiled)


class ProxyASGI:
    """Serves http and websocket scopes that match a proxy route; the rest go to ``fallback``."""

    def __init__(
        self,
        routes: ProxyTable,
        chain: Next,
        fallback: ASGIApp,
        *,
        token_query: str | None = None,
        token_cookie: str | None = None,
        websocket_policy: WebSocketPolicy | None = None,
        limiter: RateLimitLayer | None = None,
        paths: PathsConfig | None = None,
        trusted: Sequence[Network] = (),
    ) -> None:
        self.trusted = tuple(trusted)
        paths = paths or PathsConfig()
        self.path_rules: dict[str, Any] = {
            "escaped_slashes": paths.escaped_slashes,
            "path_parameters": paths.allow_path_parameters,
            "merge_slashes": paths.merge_slashes,
        }
        self.routes = routes
        self.chain = chain
        self.fallback = fallback
        self.token_query = token_query
        self.token_cookie = token_cookie
        self.websocket_policy = websocket_policy
        self.limiter = limiter

    def _identity(self, scope: Scope) -> dict[str, Any]:
        """What the policy layers read: the client's raw headers, query and token."""
        headers, query = scope["headers"], scope["query_string"]
        return {
            "headers": headers,
            "query": query,
            "token": find_token(headers, query, self.token_query, self.token_cookie),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.fallback(scope, receive, send)
            return
        raw_path = scope.get("raw_path")
        # normalised by the request guard; checked here for what only upstreams misread
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        refused: BadPath | None = None
        try:
            path = check_proxied_path(path, **self.path_rules)
        except BadPath as exc:
            refused = exc
        host = _host(scope)
        websocket = kind == "websocket"
        method = "GET" if websocket else scope["method"]
        route = self.routes.match(path, host, method, websocket)
        if route is None:
            await self.fallback(scope, receive, send)
            return
        if refused is not None:
            # /public/..%2Fadmin or /admin;x would be matched here as one route and served
            # by the upstream as another: a route's policy must cover what the upstream serves
            error = BadRequest(str(refused))
            status, payload, headers = error_response(error, None, None)
            if websocket:
                await receive()  # websocket.connect
                await refuse_handshake(scope, send, status, payload, headers)
            else:
                await send_response(send, status, payload, headers)
            return
        info = scope.get("edge")
        if info is not None:
            info["route"] = route.name
        if websocket:
            await self._relay_socket(route, path, host, scope, receive, send)
        else:
            await self._proxy(route, path, host, scope, receive, send)

    async def _proxy(
        self, route: ProxyRoute, path: str, host: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers, client = _forward_headers(scope, host, self.trusted)
        body_done = asyncio.Event()
        call = Call(
            upstream=route.upstream,
            route=route.name,
            metadata=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            timeout=route.timeout,
            request=HttpRequest(
                scope["method"],
                route.upstream_path(path),
                scope["query_string"],
                _request_body(receive, body_done),
            ),
            client=client,
            **self._identity(scope),
        )
        try:
            reply = await self.chain(call)
            assert reply.http is not None, "a proxied call must answer with Reply.http"
        except EdgeError as error:
            status, payload, error_headers = error_response(error, None, None)
            await send_response(send, status, payload, error_headers)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error proxying %s %s", scope["method"], path)
            await send_response(send, 500, status_body(13, "internal error"))
            return
        http = reply.http
        headers = [*http.headers, *reply.headers] if reply.headers else http.headers
        watcher = asyncio.create_task(_watch_disconnect(receive, body_done, reply.cancel))
        try:
            await send({"type": "http.response.start", "status": http.status, "headers": headers})
            async for chunk in http.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except EdgeError as error:
            if not watcher.done():  # the client is still there: cut the response short
                log.warning("proxied response cut short: %s %s: %s", scope["method"], path, error)
            return  # without the final body message, so it never looks complete
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            # However this ends (a send that raised, a cancelled task), the body is closed
            # now, so the layers counting it (breaker, in-flight budget) hear at once, not
            # whenever the garbage collector gets to it.
            close = getattr(http.body, "aclose", None)
            if close is not None:
                await close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_socket(
        self, route: ProxyRoute, path: str, host: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if self.websocket_policy is not None and not origin_allowed(
            scope["headers"], self.websocket_policy
        ):
            # the same Origin rule as the gRPC bridge: a cookie-authenticated socket opened
            # by another site's page would act as the victim
            error = PermissionDenied("origin not allowed")
            status, payload, error_headers = error_response(error, None, None)
            await refuse_handshake(scope, send, status, payload, error_headers)
            return
        headers, client = _forward_headers(scope, host, self.trusted)
        headers = [(n, v) for n, v in headers if n not in _HANDSHAKE_HEADERS]
        call = Call(
            upstream=route.upstream,
            route=route.name,
            metadata=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            timeout=route.timeout,
            request=HttpRequest(
                "GET", route.upstream_path(path), scope["query_string"], _no_body()
            ),
            protocol="websocket",
            client=client,
            **self._identity(scope),
        )
        try:
            reply = await self.chain(call)
            http: HttpResponse | None = reply.http
            assert http is not None and isinstance(http.upgrade, UpstreamSocket)
        except EdgeError as error:
            status, payload, error_headers = error_response(error, None, None)
            await refuse_handshake(scope, send, status, payload, error_headers, close_code=1014)
            return
        except Exception:
            log.exception("unhandled error opening a proxied WebSocket on %s", path)
            await refuse_handshake(
                scope, send, 500, status_body(13, "internal error"), [], close_code=1011
            )
            return
        upstream: UpstreamSocket = http.upgrade
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        check = None
        if self.limiter is not None:
            limiter, connection = self.limiter, uuid.uuid4().hex

            async def check() -> None:  # the route's limit_messages, per connection
                await limiter.check_message(call, connection)

        await _relay(upstream, receive, send, check)


async def _relay(
    upstream: UpstreamSocket,
    receive: Receive,
    send: Send,
    check: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Frames both ways until either side closes; the other side gets the same close code.

    ``check`` runs before each client frame goes up (message limits); when it refuses,
    both sides are closed with 1008 (policy violation) and the reason.
    """

    async def to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                if check is not None:
                    try:
                        await check()
                    except EdgeError as refused:
                        await send(
                            {
                                "type": "websocket.close",
                                "code": 1008,
                                "reason": refused.message[:120],
                            }
                        )
                        await upstream.close(1008, "client over its message limit")
                        return
                text = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")
            elif message["type"] == "websocket.disconnect":
                code: int = message.get("code") or 1000
                await upstream.close(_UNSENDABLE_CLOSE.get(code, code), message.get("reason") or "")
                return

    async def to_client() -> None:
        try:
            while True:
                frame = await upstream.recv()
                if isinstance(frame, str):
                    await send({"type": "websocket.send", "text": frame})
                else:
                    await send({"type": "websocket.send", "bytes": frame})
        except ConnectionClosed:
            code = upstream.close_code or 1006
            await send(
                {
                    "type": "websocket.close",
                    "code": _UNSENDABLE_CLOSE.get(code, code),
                    "reason": upstream.close_reason,
                }
            )

    upward = asyncio.create_task(to_upstream())
    downward = asyncio.create_task(to_client())
    try:
        await asyncio.wait((upward, downward), return_when=asyncio.FIRST_COMPLETED)
        if upward.done() and not downward.done():
            # the client closed; wait (briefly) for the upstream's closing handshake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(downward), 5)
    finally:
        for task in (upward, downward):
            task.cancel()
        for task in (upward, downward):
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task
        await upstream.close()


def _host(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host" or name == b":authority":
            host: str = value.decode("latin-1").lower()
            return host
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def _forward_headers(
    scope: Scope, host: str, trusted: Sequence[Network]
) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """End-to-end request headers plus X-Forwarded-* and X-Real-IP; the peer's address.

    ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Real-IP`` are always the
    gateway's own (X-Real-IP is the client address believed through ``trusted`` proxies);
    a ``Forwarded`` header passes only from a trusted proxy, since from anyone else it is
    whatever the client chose to claim. ``X-Forwarded-For`` is appended to, as nginx's
    ``$proxy_add_x_forwarded_for`` does: its last entry is always the real peer.
    """
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


async def _request_body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client went away while sending its body")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            break
    done.set()


async def _watch_disconnect(
    receive: Receive, body_done: asyncio.Event, cancel: object | None
) -> None:
    """Once the request body is read, a disconnect stops the upstream response at once."""
    await body_done.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
    if callable(cancel):
        cancel()


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
