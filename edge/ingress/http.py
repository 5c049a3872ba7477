"""The HTTP/JSON transcoding ingress: a lean ASGI handler in front of the Quart app.

Gateway routes are served here without Quart's per-request machinery (request and
response objects, context locals, signals), which measured as much CPU as Hypercorn
itself; everything else (health, admin, unknown paths) falls through to Quart. This is
the hot path: per request it does one trie lookup, one bind, one pipeline call and one
render, and reads nothing else from config or descriptors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge.call import Call
from edge.errors import EdgeError, MethodNotAllowed
from edge.ingress.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    error_response,
    read_body,
    send_response,
)
from edge.pipeline.chain import Next
from edge.routes import Routes, TranscodeRoute
from edge.routing.table import NoRoute, RouteMatch, WrongMethod
from edge.transcode.response import status_body
from edge.upstream.headers import (
    HeaderPolicy,
    parse_grpc_timeout,
    request_metadata,
    response_headers,
)

log = logging.getLogger("edge.http")

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Everything the hot path reads; replaced as a whole, never mutated, on reload."""

    routes: Routes
    chain: Next
    policy: HeaderPolicy
    max_body_bytes: int


class StateHolder:
    """A single reference to the current state: swapping it is atomic for new requests."""

    __slots__ = ("current",)

    def __init__(self, state: GatewayState) -> None:
        self.current = state


class TranscodingASGI:
    def __init__(self, holder: StateHolder, fallback: ASGIApp) -> None:
        self.holder = holder
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        state = self.holder.current
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        found = state.routes.table.match(scope["method"], path)
        if type(found) is RouteMatch:
            await self._transcode(state, found, scope, receive, send)
        elif type(found) is WrongMethod:
            error = MethodNotAllowed(
                f"method {scope['method']} is not allowed on {path}",
                headers={"allow": ", ".join(found.allowed)},
            )
            status, body, headers = error_response(error, None, None)
            await send_response(send, status, body, headers)
        else:
            assert type(found) is NoRoute
            await self.fallback(scope, receive, send)

    async def _transcode(
        self,
        state: GatewayState,
        found: RouteMatch[TranscodeRoute],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        route = found.target
        try:
            body = (
                await read_body(scope, receive, state.max_body_bytes)
                if route.binder.takes_body
                else b""
            )
            request = route.binder.bind(
                found.bindings, scope["query_string"].decode("latin-1"), body
            )
            client = scope.get("client")
            headers = scope["headers"]
            timeout = route.timeout
            for name, value in headers:
                if name == b"grpc-timeout":
                    asked = parse_grpc_timeout(value.decode("latin-1"))
                    timeout = asked if timeout is None else min(asked, timeout)
            call = Call(
                method=route.method,
                upstream=route.upstream,
                request=request,
                metadata=request_metadata(headers, state.policy, client[0] if client else None),
                timeout=timeout,
                client=client[0] if client else None,
            )
            reply = await state.chain(call)
            payload = route.renderer.render(reply.message)
        except EdgeError as error:
            status, payload, error_headers = error_response(error, route.codec, state.policy)
            await send_response(send, status, payload, error_headers)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            await send_response(send, 500, status_body(13, "internal error"))
            return
        if reply.initial_metadata or reply.trailing_metadata:
            out = [
                _JSON,
                *response_headers(reply.initial_metadata, reply.trailing_metadata, state.policy),
            ]
            await send_response(send, 200, payload, out)
        else:
            await send_response(send, 200, payload)
