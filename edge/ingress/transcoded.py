"""The HTTP/JSON transcoding adapter: ``google.api.http`` routes to gRPC calls.

Gateway routes are served here without Quart's per-request machinery (request and
response objects, context locals, signals), which measured as much CPU as Hypercorn
itself. This is the hot path: per request it does one trie lookup, one bind, one
pipeline call and one render, and reads nothing else from config or descriptors.

Streaming: a client-streaming method reads its request body as NDJSON, one message per
line, sent upstream as each line arrives; a server-streaming method writes each upstream
message as it arrives, framed as the ``Accept`` header asks (see ``stream_format``). The
first message is awaited before the response starts, so an early failure still gets its
own HTTP status; once the client disconnects the upstream call is cancelled at once. The
writing of a reply stream (framings, HttpBody downloads, trailers) is
``transcoded_streams``. A route whose replies are ``google.api.HttpBody`` (decided at
load, ``edge.transcode.http_body``) answers with their raw bytes, unary or streamed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from google.protobuf.message import Message

from edge.errors import BodyTooLarge, EdgeError, MethodNotAllowed
from edge.ingress.asgi import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    call_unless_disconnected,
    read_body,
    request_body,
    send_refusal,
    send_response,
    timed_send,
)
from edge.ingress.calls import deadline, grpc_timeout
from edge.ingress.compression import REFUSED_BODIES, CompressingSend
from edge.ingress.render import (
    error_response,
    send_error,
    send_internal_error,
)
from edge.ingress.transcoded_streams import stream_reply
from edge.pipeline.chain import DONE
from edge.routes import TranscodeRoute
from edge.routing.table import NoRoute, RouteMatch, WrongMethod
from edge.state import StateHolder
from edge.upstream.headers import response_headers

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
                checked = state.pipeline.authenticate(call)
                if checked is not DONE:  # DONE: decided at once, nothing to await
                    await checked
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
            answered = await call_unless_disconnected(state.chain, call, receive, body_ended, scope)
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
                await stream_reply(
                    route,
                    reply,
                    call.reply_headers,
                    scope,
                    receive,
                    streaming_send,
                    state.calls.headers,
                    body_ended,
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
        if type(send) is CompressingSend:  # the client asked for an encoding
            send = send.for_whole(len(payload))
        if http_body is not None:
            out = [
                (b"content-type", content_type),
                *response_headers(
                    reply.initial_metadata, reply.trailing_metadata, state.calls.headers
                ),
                *call.reply_headers,
            ]
            await send_response(send, route.success_status, payload, out)
        elif reply.initial_metadata or reply.trailing_metadata:
            policy = state.calls.headers
            out = [
                *JSON_HEADERS,
                *response_headers(reply.initial_metadata, reply.trailing_metadata, policy),
                *call.reply_headers,
            ]
            await send_response(send, route.success_status, payload, out)
        elif call.reply_headers:  # the layers' own (RateLimit-*), and no upstream metadata
            await send_response(
                send, route.success_status, payload, [*JSON_HEADERS, *call.reply_headers]
            )
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
