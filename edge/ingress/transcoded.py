"""The HTTP/JSON transcoding adapter: ``google.api.http`` routes to gRPC calls.

Gateway routes are served here without Quart's per-request machinery (request and
response objects, context locals, signals), which measured as much CPU as Hypercorn
itself. This is the hot path: per request it does one trie lookup, one bind, one
pipeline call and one render, and reads nothing else from config or descriptors.

Streaming: a client-streaming method reads its request body as NDJSON, one message per
line, sent upstream as each line arrives; a server-streaming method writes each upstream
message as it arrives, framed as the ``Accept`` header asks (see ``stream_format``). The
first message is awaited before the response starts, so an early failure still gets its
own HTTP status; once the client disconnects the upstream call is cancelled at once. A
stream ends with HTTP trailers (``grpc-status``...) for a client that asked for them
(``http_trailers``). A route whose replies are ``google.api.HttpBody`` (decided at load,
``edge.transcode.http_body``) answers with their raw bytes, unary or streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from edge.call import Reply
from edge.errors import BodyTooLarge, ClientDisconnected, EdgeError, MethodNotAllowed
from edge.ingress.asgi import (
    ABORT_EXTENSION,
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    call_unless_disconnected,
    close_stream,
    first_message,
    read_body,
    request_body,
    send_refusal,
    send_response,
    stop_watching,
    timed_send,
)
from edge.ingress.calls import deadline, grpc_timeout
from edge.ingress.compression import REFUSED_BODIES
from edge.ingress.http_trailers import (
    INTERNAL_TRAILERS,
    error_trailers,
    status_trailers,
    wants_trailers,
)
from edge.ingress.render import (
    INTERNAL_BODY,
    error_response,
    send_error,
    send_internal_error,
    status_payload,
)
from edge.routes import TranscodeRoute
from edge.routing.table import NoRoute, RouteMatch, WrongMethod
from edge.state import StateHolder
from edge.transcode.http_body import DEFAULT_CONTENT_TYPE, HttpBodyReply
from edge.transcode.stream_format import StreamFormat, choose_format
from edge.upstream.headers import HeaderPolicy, response_headers

log = logging.getLogger("edge.http")


class TranscodedAdapter:
    """Serves the requests the route table matches (a 405 for a known path, wrong method)."""

    scope_types = frozenset({"http"})

    def __init__(self, holder: StateHolder) -> None:
        self.holder = holder

    def claim(self, scope: Scope, path: str) -> RouteMatch[TranscodeRoute] | WrongMethod | None:
        found = self.holder.current.routes.table.match(scope["method"], path)
        return None if type(found) is NoRoute else found  # type: ignore[return-value]

    def route_name(self, found: RouteMatch[TranscodeRoute] | WrongMethod) -> str | None:
        return found.target.method.full_name if type(found) is RouteMatch else None

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        found = self.holder.current.routes.table.match(method, path)
        return found.target.method.full_name if type(found) is RouteMatch else None

    async def serve(
        self,
        found: RouteMatch[TranscodeRoute] | WrongMethod,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if isinstance(found, WrongMethod):
            error = MethodNotAllowed(
                f"method {scope['method']} is not allowed on this path",
                headers={"allow": ", ".join(found.allowed)},
            )
            await send_error(send, error)
            return
        # one coroutine per request, not a second for the transcoding (measured: a frame
        # and an await per request)
        state = self.holder.current
        route = found.target
        method = route.method
        if state.compression is not None:  # no wrapper unless the request asks for one
            send, receive = state.compression.wrap(scope, route, send, receive)
        body_unread = False  # an answer given before the body is read must drain it
        try:
            call = state.calls.grpc(
                scope,
                upstream=route.upstream,
                method=method,
                timeout=deadline(route.timeout, grpc_timeout(scope["headers"])),
            )
            if state.pipeline.checks_credentials and (
                route.binder.takes_body or method.client_streaming
            ):
                # credentials first, as Envoy's jwt_authn runs before its transcoder: a
                # client without them is refused before its body is read (after
                # Expect: 100-continue, before it is even invited)
                body_unread = True
                await state.pipeline.authenticate(call)
            body_ended: asyncio.Event | None = None
            query = call.query
            if method.client_streaming:
                body_ended = asyncio.Event()  # then a disconnect can be watched for
                call.request = _ndjson_requests(
                    route, found, scope, receive, state.max_body_bytes, body_ended
                )
            elif route.binder.takes_body:
                body = await read_body(scope, receive, state.max_body_bytes)
                body_unread = False
                call.request = route.binder.bind(
                    found.bindings, query.decode(), body, headers=scope["headers"]
                )
            else:
                call.request = route.binder.bind(found.bindings, query.decode(), b"")
            body_unread = False
            info = scope.get("edge")
            if info is not None:  # for the access log and the request metrics
                info["route"] = method.full_name
            # (a client stream's own reader sees a disconnect until its body has ended)
            answered = await call_unless_disconnected(state.chain, call, receive, body_ended)
            if answered is None:
                if info is not None:
                    info["grpc_code"] = 1  # CANCELLED; the access log says 499
                return
            reply = answered
            if info is not None:
                info["grpc_code"] = 0
                if call.subject is not None:
                    info["user"] = call.subject
            if reply.stream is not None:
                streaming_send = timed_send(send, state.send_timeout, scope)
                await _stream_reply(
                    route, reply, scope, receive, streaming_send, state.calls.headers, body_ended
                )
                return
            assert reply.message is not None
            http_body = route.renderer.http_body
            if http_body is None:
                payload = route.renderer.render(reply.message)
            else:  # google.api.HttpBody: its bytes are the body, its content type the type
                content_type, payload = http_body.parts(reply.message)
        except EdgeError as error:
            status, payload, error_headers = error_response(error, route.codec, state.calls.headers)
            info = scope.get("edge")
            if info is not None:
                info["grpc_code"] = error.grpc_code
            if isinstance(error, REFUSED_BODIES) or body_unread:  # the client may still be sending
                await send_refusal(scope, receive, send, status, payload, error_headers)
            else:
                await send_response(send, status, payload, error_headers)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            await send_internal_error(send)
            return
        if http_body is not None:
            out = [
                (b"content-type", content_type),
                *response_headers(
                    reply.initial_metadata, reply.trailing_metadata, state.calls.headers
                ),
                *reply.headers,
            ]
            await send_response(send, route.success_status, payload, out)
        elif reply.initial_metadata or reply.trailing_metadata or reply.headers:
            policy = state.calls.headers
            out = [
                *JSON_HEADERS,
                *response_headers(reply.initial_metadata, reply.trailing_metadata, policy),
                *reply.headers,
            ]
            await send_response(send, route.success_status, payload, out)
        else:
            await send_response(send, route.success_status, payload)


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
    lines.) Every line is held to ``max_line_bytes``, complete or not; the body as a whole
    has no limit, since its lines go upstream as they come.
    """
    query = scope["query_string"].decode()
    buffer = bytearray()
    too_big = f"a request message exceeds the limit of {max_line_bytes} bytes"
    # ``ended`` is set after the last chunk: from then on the disconnect watchers read
    async for chunk in request_body(receive, None, ended):
        scan_from = len(buffer)  # the bytes before have no newline
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", scan_from)) >= 0:
            if end - start > max_line_bytes:
                raise BodyTooLarge(too_big)
            line = bytes(buffer[start:end])
            start = scan_from = end + 1
            if line.strip():
                yield route.binder.bind(found.bindings, query, line, headers=scope["headers"])
        if start:
            del buffer[:start]
        if len(buffer) > max_line_bytes:
            raise BodyTooLarge(too_big)
    if buffer.strip():
        yield route.binder.bind(found.bindings, query, bytes(buffer), headers=scope["headers"])


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

    The status goes out with the first message, so a later one can only be told in the
    body (the stream format's in-band error) and, for a client that sent ``TE: trailers``
    where the server can send them (HTTP/2), in HTTP trailers (``http_trailers``). An
    ``HttpBody`` stream has no in-band form: without trailers, a late error cuts the body
    on HTTP/1.1 (the connection is dropped before the last chunk, so the client sees an
    incomplete download, never a complete one); HTTP/2 without trailers can only end it.
    """
    assert reply.stream is not None
    stream = reply.stream
    http_body = route.renderer.http_body
    first, watcher = await first_message(reply, receive, body_ended)
    trailers = wants_trailers(scope)
    framing: StreamFormat | None = None
    if http_body is None:
        accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
        framing = choose_format(accept, route.stream_format)
        content_type = framing.content_type
    elif first is not None:
        content_type = http_body.content_type(first)  # the first message's, as grpc-gateway
    else:
        content_type = DEFAULT_CONTENT_TYPE
    headers = [
        (b"content-type", content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # tell nginx not to buffer the stream
        *response_headers(reply.initial_metadata, (), policy),
        *reply.headers,
    ]
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": route.success_status,
        "headers": headers,
    }
    if trailers:
        start["trailers"] = True
    try:
        await send(start)
        if framing is not None:
            outcome = await _write_items(route, framing, stream, first, send)
        else:
            assert http_body is not None
            # HTTP/1.x drops the connection when the body is left unended; elsewhere only
            # a server that offers edge.abort can cut one (Hypercorn's HTTP/2 cannot)
            cut = not trailers and (
                scope.get("http_version", "1.1").startswith("1")
                or ABORT_EXTENSION in (scope.get("extensions") or {})
            )
            outcome = await _write_bodies(route, http_body, stream, first, send, scope, cut)
        if trailers and outcome is not _GONE:
            with contextlib.suppress(ClientDisconnected):  # stalled at the very end
                await send(
                    {
                        "type": "http.response.trailers",
                        "headers": _trailers(outcome, reply, policy),
                        "more_trailers": False,
                    }
                )
    finally:
        await stop_watching(watcher)
        await close_stream(stream)


# How a stream's writing ended: completely, with an error (EdgeError, or a bug's
# Exception), or with the client gone (nothing more can be written).
_DONE = object()
_GONE = object()


def _trailers(outcome: object, reply: Reply, policy: HeaderPolicy) -> list[tuple[bytes, bytes]]:
    if outcome is _DONE:
        return status_trailers(0, "", reply.trailing_metadata, policy)
    if isinstance(outcome, EdgeError):
        return error_trailers(outcome, policy)
    return INTERNAL_TRAILERS


async def _write_items(
    route: TranscodeRoute,
    framing: StreamFormat,
    stream: AsyncIterator[Message],
    first: Message | None,
    send: Send,
) -> object:
    chunk = framing.opening
    count = 0
    outcome: object = _DONE
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
        return _GONE  # stalled: the connection is gone, nothing more can be written
    except EdgeError as error:
        chunk += framing.error(status_payload(error, route.codec), first=count == 0)
        outcome = error
    except Exception as error:
        # the response has started: a bug can only end the stream, in-band, as INTERNAL
        log.exception("unhandled error writing a stream for %s", route.method.full_name)
        chunk += framing.error(INTERNAL_BODY, first=count == 0)
        outcome = error
    try:
        await send(
            {"type": "http.response.body", "body": chunk + framing.closing, "more_body": False}
        )
    except ClientDisconnected:  # stalled at the very end
        return _GONE
    return outcome


async def _write_bodies(
    route: TranscodeRoute,
    http_body: HttpBodyReply,
    stream: AsyncIterator[Message],
    first: Message | None,
    send: Send,
    scope: Scope,
    cut: bool,
) -> object:
    """Each message's ``data`` as it arrives, unframed (an HttpBody stream: a download).

    With ``cut``, a late error drops the connection instead of ending the body, so that
    a client without trailers cannot take a broken download for a whole one.
    """
    outcome: object = _DONE
    try:
        if first is not None:
            data = http_body.data(first)
            await send({"type": "http.response.body", "body": data, "more_body": True})
            async for message in stream:
                data = http_body.data(message)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
    except ClientDisconnected:
        return _GONE
    except EdgeError as error:
        status_payload(error, route.codec)  # logged once, as every error is
        outcome = error
    except Exception as error:
        log.exception("unhandled error writing a stream for %s", route.method.full_name)
        outcome = error
    if outcome is not _DONE and cut:
        abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
        if abort is not None:
            abort()
        # returning with the body unended makes Hypercorn close the connection anyway
        return _GONE
    try:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except ClientDisconnected:
        return _GONE
    return outcome
