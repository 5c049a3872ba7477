"""The plain HTTP proxy adapter: proxied routes by path prefix, host and method.

Asked after the transcoding adapters, so a transcoded route wins over a proxy prefix;
the routes are matched by ``edge.routing.prefix_table``. Each request becomes a ``Call``
through the same pipeline as gRPC calls (route ``proxy:<prefix>``, ``request`` an
``HttpRequest``): the request body is passed on as it arrives and the response body
written as it comes, never buffered. Hop-by-hop headers (and any named in
``Connection``) are dropped both ways; ``X-Forwarded-For`` is appended to,
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are set (``CallFactory.forward_headers``).
WebSocket upgrades on a route with ``websocket: true`` go through the pipeline the same
way and are then relayed frame by frame, close codes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from edge.call import HttpRequest, HttpResponse
from edge.config import PathsConfig
from edge.errors import BadRequest, EdgeError, InternalError, PermissionDenied
from edge.ingress.asgi import (
    Receive,
    Scope,
    Send,
    disconnect_hook,
    request_body,
    stop_watching,
    watch_disconnect,
)
from edge.ingress.calls import CallFactory, request_host
from edge.ingress.render import refuse_handshake, send_error, send_internal_error
from edge.ingress.websocket_policy import WebSocketPolicy, origin_allowed
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.routing.normalize import BadPath, check_proxied_path
from edge.routing.prefix_table import ProxyRoute, ProxyTable

if TYPE_CHECKING:  # the websockets client loads only with proxy routes
    from edge.upstream.http_proxy import UpstreamSocket

log = logging.getLogger("edge.proxy")

# Close codes a peer may receive but no endpoint may send (RFC 6455 7.4.1), and what we
# send instead: 1005 "no status" is a normal close; 1006 "dropped" is 1014 "bad gateway".
_UNSENDABLE_CLOSE = {1005: 1000, 1006: 1014, 1015: 1014}


@dataclass(frozen=True, slots=True)
class _Claim:
    route: ProxyRoute
    path: str  # the normalised path the route matched
    host: str
    refused: BadPath | None  # a path only an upstream would misread: refused, not proxied


class _Gone:
    """The reply's cancel, called when the client goes; remembers that it went."""

    __slots__ = ("_cancel", "seen")

    def __init__(self, cancel: Callable[[], object] | None) -> None:
        self._cancel = cancel
        self.seen = False

    def __call__(self) -> None:
        self.seen = True
        if self._cancel is not None:
            self._cancel()


class ProxyAdapter:
    """Serves http and websocket scopes that match a proxy route."""

    scope_types = frozenset({"http", "websocket"})

    def __init__(
        self,
        routes: ProxyTable,
        chain: Next,
        calls: CallFactory,
        pipeline: Pipeline,
        *,
        websocket_policy: WebSocketPolicy | None = None,
        paths: PathsConfig | None = None,
    ) -> None:
        paths = paths or PathsConfig()
        self.path_rules: dict[str, Any] = {
            "escaped_slashes": paths.escaped_slashes,
            "path_parameters": paths.allow_path_parameters,
            "merge_slashes": paths.merge_slashes,
        }
        self.routes = routes
        self.chain = chain
        self.calls = calls
        self.pipeline = pipeline
        self.websocket_policy = websocket_policy

    def claim(self, scope: Scope, path: str) -> _Claim | None:
        # normalised by the request guard; checked here for what only upstreams misread
        refused: BadPath | None = None
        try:
            path = check_proxied_path(path, **self.path_rules)
        except BadPath as exc:
            refused = exc
        host = request_host(scope)
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else scope["method"]
        route = self.routes.match(path, host, method, websocket)
        return None if route is None else _Claim(route, path, host, refused)

    def route_name(self, claim: _Claim) -> str | None:
        return claim.route.name

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        claim = self.claim({**scope, "type": "http", "method": method}, path)
        return claim.route.name if claim is not None else None

    async def serve(self, claim: _Claim, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = scope["type"] == "websocket"
        if claim.refused is not None:
            # /public/..%2Fadmin or /admin;x would be matched here as one route and served
            # by the upstream as another: a route's policy must cover what the upstream serves
            error = BadRequest(str(claim.refused))
            if websocket:
                await receive()  # websocket.connect
                await refuse_handshake(scope, send, error)
            else:
                await send_error(send, error)
            return
        info = scope.get("edge")
        if info is not None:
            info["route"] = claim.route.name
        if websocket:
            await self._relay_socket(claim, scope, receive, send)
        else:
            await self._proxy(claim, scope, receive, send)

    async def _proxy(self, claim: _Claim, scope: Scope, receive: Receive, send: Send) -> None:
        route = claim.route
        body_done = asyncio.Event()
        request = HttpRequest(
            scope["method"],
            route.upstream_path(claim.path),
            scope["query_string"],
            request_body(receive, None, body_done),
        )
        try:
            call = self.calls.proxied(scope, route, claim.host, request, "http")
            reply = await self.chain(call)
            assert reply.http is not None, "a proxied call must answer with Reply.http"
        except EdgeError as error:
            await send_error(send, error)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error proxying %s %s", scope["method"], claim.path)
            await send_internal_error(send)
            return
        http = reply.http
        headers = [*http.headers, *call.reply_headers] if call.reply_headers else http.headers
        # once the request body is read, a disconnect stops the upstream response at once:
        # told by the server where it can (no task per request), else by a watcher task
        hook = disconnect_hook(scope) if body_done.is_set() else None
        gone = _Gone(reply.cancel)
        if hook is not None:
            take_back, watcher = hook(gone), None
        else:
            take_back, watcher = None, watch_disconnect(receive, gone, body_done)
        try:
            await send({"type": "http.response.start", "status": http.status, "headers": headers})
            async for chunk in http.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except EdgeError as error:
            if not gone.seen:  # the client is still there: cut the response short
                log.warning(
                    "proxied response cut short: %s %s: %s", scope["method"], claim.path, error
                )
            return  # without the final body message, so it never looks complete
        finally:
            if take_back is not None:
                take_back()
            if watcher is not None:
                await stop_watching(watcher)
            # However this ends (a send that raised, a cancelled task), the body is closed
            # now, so the layers counting it (breaker, in-flight budget) hear at once, not
            # whenever the garbage collector gets to it.
            close = getattr(http.body, "aclose", None)
            if close is not None:
                await close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_socket(
        self, claim: _Claim, scope: Scope, receive: Receive, send: Send
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if self.websocket_policy is not None and not origin_allowed(
            scope["headers"], self.websocket_policy
        ):
            # the same Origin rule as the gRPC bridge: a cookie-authenticated socket opened
            # by another site's page would act as the victim
            await refuse_handshake(scope, send, PermissionDenied("origin not allowed"))
            return
        route = claim.route
        request = HttpRequest(
            "GET", route.upstream_path(claim.path), scope["query_string"], _no_body()
        )
        call = self.calls.proxied(scope, route, claim.host, request, "websocket")
        try:
            reply = await self.chain(call)
            http: HttpResponse | None = reply.http
            assert http is not None and http.upgrade is not None
        except EdgeError as error:
            await refuse_handshake(scope, send, error, close_code=1014)
            return
        except Exception:
            log.exception("unhandled error opening a proxied WebSocket on %s", claim.path)
            await refuse_handshake(scope, send, InternalError("internal error"), close_code=1011)
            return
        upstream: UpstreamSocket = http.upgrade
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        pipeline, connection = self.pipeline, uuid.uuid4().hex

        async def check() -> None:  # the route's limit_messages, per connection
            await pipeline.admit_message(call, connection)

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


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
