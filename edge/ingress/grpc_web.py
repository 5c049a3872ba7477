"""The gRPC-Web adapter: ``application/grpc-web*`` POSTs at a method's gRPC path.

What browsers' gRPC clients speak (gRPC's ``doc/PROTOCOL-WEB.md``): the request body is
gRPC's length-prefixed messages, binary or base64 (``-text``); the response is HTTP 200
with the messages and then a trailer frame carrying ``grpc-status``, or, for an error
known before any message, a Trailers-Only answer (the status in the headers, no body).
The bytes are the wire core's (``edge.ingress.grpc_web_wire``); this module moves them
between ASGI and the one pipeline, and the error forms come from ``edge.ingress.render``.

Every kind of method is served: a unary request body must hold exactly one message
(read, limited and parsed before the call starts); a client-streaming body is decoded
and sent upstream message by message as it arrives (each message limited, as JSON's
NDJSON lines are): a browser sends it whole, an HTTP/2 client may stream it. A response
stream is written message by message, each write its own padded base64 chunk in text
mode, so it is flushed at once; it starts only when the first message (or the end)
arrives, so an early failure is still a Trailers-Only answer, and a client that hangs
up cancels the upstream call at once.

A gRPC-Web request at any other path is claimed too and answered UNIMPLEMENTED, as a
gRPC server answers a method it does not have, rather than left to fall to the JSON 404:
grpc-web reads a 404 as NOT_FOUND, and the 404 is sent without reading the body, so over
HTTP/1.1 a client still uploading it sees a broken pipe instead of any answer. The one
exception is a path the proxy would take (``proxied``): a proxy route may forward
gRPC-Web to another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.call import Call, Reply
from edge.errors import ClientDisconnected, EdgeError, InternalError, Unimplemented
from edge.ingress.asgi import (
    Receive,
    Scope,
    Send,
    call_unless_disconnected,
    close_stream,
    first_message,
    first_values,
    send_refusal,
    send_response,
    stop_watching,
    timed_send,
)
from edge.ingress.calls import deadline
from edge.ingress.grpc_web_reply import (
    ResponseEncoder,
    metadata_entries,
)
from edge.ingress.grpc_web_requests import (
    body_limit,
    parse_message,
    read_message,
    request_stream,
)
from edge.ingress.grpc_web_wire import (
    RequestDecoder,
    UnsupportedMediaType,
    check_grpc_encoding,
    is_grpc_web,
    parse_content_type,
    wants_text_response,
)
from edge.ingress.render import grpc_web_trailers, grpc_web_trailers_only
from edge.pipeline.chain import DONE
from edge.routes import TranscodeRoute
from edge.state import GatewayState, StateHolder
from edge.upstream.headers import parse_grpc_timeout

log = logging.getLogger("edge.grpc_web")

# the request headers a call reads, found in one pass
_CALL_HEADERS = frozenset(
    {b"accept", b"content-type", b"content-encoding", b"grpc-encoding", b"grpc-timeout"}
)

_BUG = InternalError("internal error")


@dataclass(frozen=True, slots=True)
class _Claim:
    state: GatewayState  # the state the request was claimed in, and is served with
    route: TranscodeRoute | None  # None: no routed method at this path
    path: str


class GrpcWebAdapter:
    """Serves every gRPC-Web POST: routed methods, and UNIMPLEMENTED for the rest.

    ``proxied(scope, path)`` says whether the proxy would take a request (the proxy
    adapter's ``claim``): such a request is left to it unless the path is a routed method.
    """

    scope_types = frozenset({"http"})

    def __init__(
        self, holder: StateHolder, proxied: Callable[[Scope, str], bool] | None = None
    ) -> None:
        self.holder = holder
        self.proxied = proxied

    def claim(self, scope: Scope, path: str) -> _Claim | None:
        if scope["method"] != "POST":
            return None
        content_type = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
                break
        if not is_grpc_web(content_type):
            return None
        state = self.holder.current
        route = state.routes.rpcs.get(path)
        if route is None and self.proxied is not None and self.proxied(scope, path):
            return None
        return _Claim(state, route, path)

    def route_name(self, claim: _Claim) -> str | None:
        return claim.route.method.full_name if claim.route is not None else None

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        """A preflight names no content type: any POST to a routed gRPC path may be ours."""
        if method != "POST":
            return None
        route = self.holder.current.routes.rpcs.get(path)
        return route.method.full_name if route is not None else None

    def _unknown(self, claim: _Claim) -> Unimplemented:
        """UNIMPLEMENTED in grpc-go's words: an unknown service, or an unknown method."""
        service, slash, method = claim.path[1:].partition("/")
        if not slash or not service or not method or "/" in method:
            return Unimplemented("no gRPC method at this path")
        if service in claim.state.routes.rpc_services:
            return Unimplemented(f"unknown method {method} for service {service}")
        return Unimplemented(f"unknown service {service}")

    async def serve(self, claim: _Claim, scope: Scope, receive: Receive, send: Send) -> None:
        _note(scope, "protocol", "grpc-web")  # the access log's and the metrics' label
        named = first_values(scope["headers"], _CALL_HEADERS)  # one pass over the headers
        accept = named.get(b"accept")
        try:
            text = parse_content_type(named.get(b"content-type"))
            _check_content_encoding(named.get(b"content-encoding"))
        except EdgeError as refused:
            await _refuse(scope, receive, send, refused, wants_text_response(False, accept), True)
            return
        text_response = wants_text_response(text, accept)
        if claim.route is None:
            await _refuse(scope, receive, send, self._unknown(claim), text_response, True)
            return
        await _serve_call(
            claim.state, claim.route, scope, receive, send, named, text, text_response
        )


def _check_content_encoding(value: bytes | None) -> None:
    """Refuse a compressed request body (415 with ``Accept-Encoding``, RFC 9110 12.5.3).

    PROTOCOL-WEB leaves whole-body compression to the browser's Content-Encoding, but
    browsers do not compress request bodies, and the gateway does not inflate them: a
    gzip body read as frames would be a confusing INTERNAL instead of a clear refusal.
    """
    if value is None or value.strip().lower() in (b"", b"identity"):
        return
    raise UnsupportedMediaType(
        f"content-encoding {value.decode('latin-1')!r} is not supported for gRPC-Web "
        "requests: send the body uncompressed",
        headers={"accept-encoding": "identity"},
    )


def _note(scope: Scope, key: str, value: object) -> None:
    """For the access log and the request metrics (``scope["edge"]``, when observed)."""
    info = scope.get("edge")
    if info is not None:
        info[key] = value


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: EdgeError,
    text: bool,
    body_unread: bool,
) -> None:
    """A Trailers-Only answer, the rest of the body drained when it may still be coming."""
    _note(scope, "grpc_code", error.grpc_code)
    status, headers = grpc_web_trailers_only(error, text=text)
    if body_unread:
        await send_refusal(scope, receive, send, status, b"", headers)
    else:
        await send_response(send, status, b"", headers)


async def _serve_call(
    state: GatewayState,
    route: TranscodeRoute,
    scope: Scope,
    receive: Receive,
    send: Send,
    named: dict[bytes, bytes],
    text: bool,
    text_response: bool,
) -> None:
    method = route.method
    _note(scope, "route", method.full_name)
    body_ended = asyncio.Event()  # set once the last chunk is in: no refusal need drain it
    call = None
    try:
        check_grpc_encoding(named.get(b"grpc-encoding"))
        asked = named.get(b"grpc-timeout")
        call = state.calls.grpc(
            scope,
            upstream=route.upstream,
            method=method,
            timeout=deadline(
                route.timeout,
                None if asked is None else parse_grpc_timeout(asked.decode("latin-1")),
            ),
            protocol="grpc-web",
        )
        # credentials first: a client without them is refused before its body is read
        if state.pipeline.checks_credentials:
            checked = state.pipeline.authenticate(call)
            if checked is not DONE:  # DONE: decided at once, nothing to await
                await checked
        decoder = RequestDecoder(text=text, max_message_bytes=state.max_body_bytes)
        streamed: asyncio.Event | None = None  # a client stream: read while the call runs
        if method.client_streaming:
            streamed = body_ended
            call.request = request_stream(route, receive, decoder, body_ended)
        else:
            limit = body_limit(text, state.max_body_bytes)
            data = await read_message(scope, receive, decoder, limit, body_ended)
            call.request = parse_message(route, data)
        answered = await call_unless_disconnected(state.chain, call, receive, streamed, scope)
        if answered is None:
            _note(scope, "grpc_code", 1)  # CANCELLED; the access log says 499
            return
        reply = answered
        _note_user(scope, call)
        encoder = ResponseEncoder(text_response)
        if reply.stream is not None:
            streaming_send = timed_send(send, state.send_timeout, scope)
            code = await _stream_reply(
                reply, call.reply_headers, receive, streaming_send, encoder, streamed
            )
            _note(scope, "grpc_code", code)
            return
        assert reply.message is not None
        body = encoder.message(reply.message.SerializeToString())
        body += encoder.trailers(0, "", reply.trailing_metadata)
    except EdgeError as error:
        if call is not None:
            _note_user(scope, call)
        await _refuse(scope, receive, send, error, text_response, not body_ended.is_set())
        return
    except Exception:
        # the one broad except: a bug must cost one request, never the worker
        log.exception("unhandled error serving gRPC-Web %s", method.full_name)
        await _refuse(scope, receive, send, _BUG, text_response, False)
        return
    _note(scope, "grpc_code", 0)
    headers = [(b"content-type", encoder.content_type.encode("ascii"))]
    if reply.initial_metadata:
        headers += _metadata_headers(reply.initial_metadata)
    headers += call.reply_headers
    await send_response(send, 200, body, headers)


def _note_user(scope: Scope, call: Call) -> None:
    if call.subject is not None:
        _note(scope, "user", call.subject)


def _metadata_headers(metadata: Sequence[tuple[str, str | bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream metadata as response headers, as gRPC sends it (``-bin`` in base64)."""
    return [
        (name.encode("ascii"), value.encode("ascii")) for name, value in metadata_entries(metadata)
    ]


async def _stream_reply(
    reply: Reply,
    layer_headers: Sequence[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    encoder: ResponseEncoder,
    body_ended: asyncio.Event | None,
) -> int:
    """Write a server stream and its trailer frame; returns the status code it ended with.

    Raises EdgeError only before the response has started (then the caller answers
    Trailers-Only). The disconnect watcher starts before the first message is awaited,
    so a client that leaves while the upstream is silent cancels the call at once; for a
    bidi stream it starts once the request body has ended (until then the request
    stream's reader sees the disconnect).
    """
    assert reply.stream is not None
    stream = reply.stream
    first, watcher = await first_message(reply, receive, body_ended)
    headers = [
        (b"content-type", encoder.content_type.encode("ascii")),
        (b"x-accel-buffering", b"no"),  # tell nginx not to buffer the stream
        *_metadata_headers(reply.initial_metadata),
        *layer_headers,
    ]
    code = 0
    try:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if first is not None:
                body = encoder.message(first.SerializeToString())
                await send({"type": "http.response.body", "body": body, "more_body": True})
                async for message in stream:
                    body = encoder.message(message.SerializeToString())
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            end = encoder.trailers(0, "", reply.trailing_metadata)
        except ClientDisconnected:
            return 1  # stalled or gone: nothing more can be written
        except EdgeError as error:
            code = error.grpc_code
            end = grpc_web_trailers(error, encoder)
        except Exception:
            # the response has started: a bug can only end the stream, in-band, as INTERNAL
            log.exception("unhandled error writing a gRPC-Web stream")
            code = _BUG.grpc_code
            end = grpc_web_trailers(_BUG, encoder)
        with contextlib.suppress(ClientDisconnected):  # stalled at the very end
            await send({"type": "http.response.body", "body": end, "more_body": False})
        return code
    finally:
        await stop_watching(watcher)
        await close_stream(stream)
