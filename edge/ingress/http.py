"""The HTTP/JSON transcoding ingress: a lean ASGI handler in front of the Quart app.

Gateway routes are served here without Quart's per-request machinery (request and
response objects, context locals, signals), which measured as much CPU as Hypercorn
itself; everything else (health, admin, unknown paths) falls through to Quart. This is
the hot path: per request it does one trie lookup, one bind, one pipeline call and one
render, and reads nothing else from config or descriptors.

Streaming: a client-streaming method reads its request body as NDJSON, one message per
line, sent upstream as each line arrives; a server-streaming method writes each upstream
message as it arrives, framed as the ``Accept`` header asks (see ``stream_format``). The
first message is awaited before the response starts, so an early failure still gets its
own HTTP status; once the client disconnects the upstream call is cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from edge.call import Call, Reply
from edge.errors import BodyTooLarge, ClientDisconnected, EdgeError, MethodNotAllowed
from edge.ingress.asgi import (
    JSON_HEADERS,
    ASGIApp,
    Receive,
    Scope,
    Send,
    close_stream,
    error_response,
    read_body,
    send_refusal,
    send_response,
    timed_send,
)
from edge.ingress.websocket import serve_websocket
from edge.ingress.websocket_policy import WebSocketPolicy
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.pipeline.credentials import find_token
from edge.routes import Routes, TranscodeRoute
from edge.routing.table import NoRoute, RouteMatch, WrongMethod
from edge.transcode.response import status_body
from edge.transcode.stream_format import StreamFormat, choose_format
from edge.upstream.headers import (
    HeaderPolicy,
    parse_grpc_timeout,
    request_metadata,
    response_headers,
)

log = logging.getLogger("edge.http")


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Everything the hot path reads; replaced as a whole, never mutated, on reload."""

    routes: Routes
    chain: Next
    policy: HeaderPolicy
    max_body_bytes: int
    websocket: WebSocketPolicy
    pipeline: Pipeline
    token_query: str | None = None  # auth.token_query_parameter
    token_cookie: str | None = None  # auth.token_cookie
    send_timeout: float | None = None  # server.send_timeout, for streams


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
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
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

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.holder.current
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        found = state.routes.ws_table.match("GET", path)
        if type(found) is not RouteMatch:
            await self.fallback(scope, receive, send)
            return
        info = scope.get("edge")
        if info is not None:  # metrics and access logs name the method, as for HTTP
            info["route"] = found.target.method.full_name
        await serve_websocket(
            found.target,
            found,
            scope,
            receive,
            send,
            state.chain,
            state.policy,
            state.websocket,
            state.pipeline,
        )

    async def _transcode(
        self,
        state: GatewayState,
        found: RouteMatch[TranscodeRoute],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        route = found.target
        method = route.method
        body_unread = False  # an answer given before the body is read must drain it
        try:
            client = scope.get("client")
            headers = scope["headers"]
            timeout = route.timeout
            for name, value in headers:
                if name == b"grpc-timeout":
                    asked = parse_grpc_timeout(value.decode("latin-1"))
                    timeout = asked if timeout is None else min(asked, timeout)
            address = client[0] if client else None
            query = scope["query_string"]
            call = Call(
                upstream=route.upstream,
                route=method.full_name,
                metadata=request_metadata(headers, state.policy, address),
                timeout=timeout,
                method=method,
                client=address,
                headers=headers,
                query=query,
                token=find_token(headers, query, state.token_query, state.token_cookie),
            )
            if route.binder.takes_body or method.client_streaming:
                auth = state.pipeline.auth
                if auth is not None:
                    # credentials first, as Envoy's jwt_authn runs before its transcoder: a
                    # client without them is refused before its body is read (after
                    # Expect: 100-continue, before it is even invited)
                    body_unread = True
                    await auth.authenticate(call)
            body_ended: asyncio.Event | None = None
            if method.client_streaming:
                body_ended = asyncio.Event()  # then a disconnect can be watched for
                call.request = _ndjson_requests(
                    route, found, scope, receive, state.max_body_bytes, body_ended
                )
            elif route.binder.takes_body:
                body = await read_body(scope, receive, state.max_body_bytes)
                body_unread = False
                call.request = route.binder.bind(found.bindings, query.decode(), body)
            else:
                call.request = route.binder.bind(found.bindings, query.decode(), b"")
            body_unread = False
            info = scope.get("edge")
            if info is not None:  # for the access log and the request metrics
                info["route"] = method.full_name
            # (a client stream's own reader sees a disconnect until its body has ended)
            answered = await _call_unless_disconnected(state.chain, call, receive, body_ended)
            if answered is None:
                if info is not None:
                    info["grpc_code"] = 1  # CANCELLED; the access log says 499
                return
            reply = answered
            if info is not None:
                info["grpc_code"] = 0
                claims = call.state.get("claims")
                if claims:
                    info["user"] = claims.get("sub")
            if reply.stream is not None:
                streaming_send = timed_send(send, state.send_timeout, scope)
                await _stream_reply(
                    route, reply, scope, receive, streaming_send, state.policy, body_ended
                )
                return
            assert reply.message is not None
            payload = route.renderer.render(reply.message)
        except EdgeError as error:
            status, payload, error_headers = error_response(error, route.codec, state.policy)
            info = scope.get("edge")
            if info is not None:
                info["grpc_code"] = error.grpc_code
            if isinstance(error, BodyTooLarge) or body_unread:  # the client may still be sending
                await send_refusal(scope, receive, send, status, payload, error_headers)
            else:
                await send_response(send, status, payload, error_headers)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            await send_response(send, 500, status_body(13, "internal error"))
            return
        if reply.initial_metadata or reply.trailing_metadata or reply.headers:
            out = [
                *JSON_HEADERS,
                *response_headers(reply.initial_metadata, reply.trailing_metadata, state.policy),
                *reply.headers,
            ]
            await send_response(send, route.success_status, payload, out)
        else:
            await send_response(send, route.success_status, payload)


async def _call_unless_disconnected(
    chain: Next, call: Call, receive: Receive, body_ended: asyncio.Event | None = None
) -> Reply | None:
    """Run the chain, cancelling it if the client hangs up first; None means it did.

    Hypercorn tells an app about a lost client only through ``receive``, and never cancels
    it, so without a watcher a client that gives up leaves its upstream call running to
    its deadline: wasted upstream work that Envoy and grpc-gateway would have cancelled.
    The watcher cancels this very task rather than running the chain in a child task,
    which would cost a second task per request. The cancel always lands inside the chain:
    the watcher is cancelled in the same step that the chain returns, so it cannot fire
    after. For a client stream (``body_ended`` given), the request stream's reader sees a
    disconnect while the body lasts; the watcher takes over once it has ended.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.get_running_loop().create_task(
        _cancel_task_on_disconnect(receive, task, body_ended)
    )
    try:
        return await chain(call)
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and watcher.result():
            task.uncancel()
            return None
        raise
    finally:
        watcher.cancel()


async def _cancel_task_on_disconnect(
    receive: Receive, task: asyncio.Task[Any], body_ended: asyncio.Event | None
) -> bool:
    if body_ended is not None:
        await body_ended.wait()
    while True:  # an empty request's own http.request event may still be unread
        event = await receive()
        if event["type"] == "http.disconnect":
            task.cancel()
            return True


async def _ndjson_requests(
    route: TranscodeRoute,
    found: RouteMatch[TranscodeRoute],
    scope: Scope,
    receive: Receive,
    max_line_bytes: int,
    ended: asyncio.Event,
) -> AsyncIterator[Message]:
    """Request messages from an NDJSON body, each bound as it arrives (a client stream).

    Linear in the body: a chunk of many short lines is split by scanning one buffer, and a
    long line arriving in many chunks is only searched in its new bytes. (Re-slicing the
    rest after every line was quadratic: tens of MB copied for one 64 KiB chunk of short
    lines.) Every line is held to ``max_line_bytes``, complete or not.
    """
    query = scope["query_string"].decode()
    buffer = bytearray()
    too_big = f"a request message exceeds the limit of {max_line_bytes} bytes"
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise ClientDisconnected("the client went away while sending its stream")
        scan_from = len(buffer)  # the bytes before have no newline
        buffer += event.get("body", b"")
        start = 0
        while (end := buffer.find(b"\n", scan_from)) >= 0:
            if end - start > max_line_bytes:
                raise BodyTooLarge(too_big)
            line = bytes(buffer[start:end])
            start = scan_from = end + 1
            if line.strip():
                yield route.binder.bind(found.bindings, query, line)
        if start:
            del buffer[:start]
        if len(buffer) > max_line_bytes:
            raise BodyTooLarge(too_big)
        if not event.get("more_body", False):
            break
    ended.set()  # from here on the disconnect watchers read ``receive``
    if buffer.strip():
        yield route.binder.bind(found.bindings, query, bytes(buffer))


async def _stream_reply(
    route: TranscodeRoute,
    reply: Reply,
    scope: Scope,
    receive: Receive,
    send: Send,
    policy: HeaderPolicy,
    body_ended: asyncio.Event | None,
) -> None:
    """Write a server stream; raises EdgeError only before the response has started.

    The disconnect watcher starts before the first message is awaited: a client that
    leaves while the upstream is still silent cancels the call at once, not when the first
    message finally comes. For a bidi stream it starts watching once the request body has
    ended (until then the request stream's reader sees the disconnect).
    """
    assert reply.stream is not None
    stream = reply.stream
    accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
    framing = choose_format(accept, route.stream_format)
    watcher = asyncio.create_task(_cancel_on_disconnect(receive, reply, body_ended))
    try:
        first: Message | None = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _stop(watcher)
        await close_stream(stream)
        raise
    headers = [
        (b"content-type", framing.content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # tell nginx not to buffer the stream
        *response_headers(reply.initial_metadata, (), policy),
        *reply.headers,
    ]
    try:
        await send(
            {"type": "http.response.start", "status": route.success_status, "headers": headers}
        )
        await _write_items(route, framing, stream, first, send)
    finally:
        await _stop(watcher)
        await close_stream(stream)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _write_items(
    route: TranscodeRoute,
    framing: StreamFormat,
    stream: AsyncIterator[Message],
    first: Message | None,
    send: Send,
) -> None:
    chunk = framing.opening
    count = 0
    try:
        if first is not None:
            chunk += framing.item(route.renderer.render(first), first=True)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk, count = b"", 1
            async for message in stream:
                body = framing.item(route.renderer.render(message), first=False)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                count += 1
    except ClientDisconnected:
        return  # stalled: the connection is gone, nothing more can be written
    except EdgeError as error:
        _, payload, _ = error_response(error, route.codec, None)
        chunk += framing.error(payload, first=count == 0)
    except Exception:
        # the response has started: a bug can only end the stream, in-band, as INTERNAL
        log.exception("unhandled error writing a stream for %s", route.method.full_name)
        chunk += framing.error(status_body(13, "internal error"), first=count == 0)
    with contextlib.suppress(ClientDisconnected):  # stalled at the very end
        await send(
            {"type": "http.response.body", "body": chunk + framing.closing, "more_body": False}
        )


async def _cancel_on_disconnect(
    receive: Receive, reply: Reply, body_ended: asyncio.Event | None
) -> None:
    if body_ended is not None:
        await body_ended.wait()
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            if reply.cancel is not None:
                reply.cancel()
            return
