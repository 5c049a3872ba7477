"""The Connect protocol adapter: connect-es and connect-go clients at a method's gRPC path.

Every routed method is served at ``/package.Service/Method`` (``routes.rpcs``) in the
forms of the Connect protocol reference: a unary POST with a bare JSON or binary message,
a unary GET of a ``NO_SIDE_EFFECTS`` method with the message in the query, and streams of
enveloped messages (``application/connect+json`` / ``+proto``) for server, client and,
over HTTP/2, bidirectional streaming. Which requests are Connect at all is the wire core's
rule (``connect_wire.connect_kind``): on a path that is also a generic JSON route, the
Connect headers decide (``Connect-Protocol-Version``, ``application/proto``, an
``application/connect+`` type, a GET's ``connect=v1``); a plain JSON POST without them
stays with JSON transcoding.

This module only translates: the Call comes from the one factory with protocol
``connect`` (deadline from ``Connect-Timeout-Ms``), credentials are checked before a body
is read, the call goes through the same chain as every other, and errors take their
Connect form in ``edge.ingress.render``. Unary answers carry the upstream's leading
metadata as headers and its trailers as ``trailer-`` headers; a stream ends with the
end-of-stream message, which holds its trailers (and its error). A stream's HTTP status is
200 whatever happens, as the spec has it, except for a content type the server cannot
speak (415) and a bidirectional stream over HTTP/1.x (505).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from edge.call import Call
from edge.config import ConnectConfig
from edge.errors import (
    BodyTooLarge,
    EdgeError,
    MethodNotAllowed,
    Unimplemented,
)
from edge.ingress.asgi import (
    Receive,
    Scope,
    Send,
    call_unless_disconnected,
    first_values,
    header,
    read_body,
    send_refusal,
    send_response,
    timed_send,
)
from edge.ingress.calls import deadline
from edge.ingress.connect_get import parse_get_query
from edge.ingress.connect_streams import (
    decode_message,
    decoder,
    encode_message,
    envelope_requests,
    read_ahead,
    record,
    single_request,
    stream_reply,
)
from edge.ingress.connect_wire import (
    Codec,
    CompressionUnsupported,
    ConnectKind,
    HttpVersionNotSupported,
    check_protocol_version,
    connect_kind,
    content_type_for,
    leading_headers,
    parse_content_type,
    parse_timeout_ms,
    response_metadata,
    unary_trailer_headers,
)
from edge.ingress.grpc_web_wire import (
    UnsupportedMediaType,
)
from edge.ingress.render import (
    CONNECT_INTERNAL_BODY,
    CONNECT_INTERNAL_END_STREAM,
    connect_end_stream_error,
    connect_stream_error_headers,
    connect_unary_error,
)
from edge.pipeline.chain import DONE
from edge.routes import TranscodeRoute
from edge.state import GatewayState, StateHolder

log = logging.getLogger("edge.connect")
# the request headers a call reads, found in one pass
_CALL_HEADERS = frozenset(
    {
        b"content-type",
        b"connect-protocol-version",
        b"content-encoding",
        b"connect-content-encoding",
        b"connect-timeout-ms",
    }
)
# a unary answer's Content-Type by codec, encoded once
_UNARY_CONTENT_TYPES = {
    codec: content_type_for(codec, stream=False).encode("ascii") for codec in ("json", "proto")
}

Headers = Sequence[tuple[bytes, bytes]]

# the answers whose HTTP status is the protocol's own, so a stream answers them as a unary
# error would: a content type the server cannot speak, a bidi stream over HTTP/1.x
_NOT_STREAMABLE_STATUSES = frozenset({415, 505})


@dataclass(frozen=True, slots=True)
class ConnectClaim:
    """A claimed request: the state it started on, the method's route, its Connect form."""

    state: GatewayState
    route: TranscodeRoute | None  # None: an unknown method of a service the gateway routes
    kind: ConnectKind
    path: str


class ConnectAdapter:
    """Serves Connect requests at routed gRPC paths (and unknown methods of routed services).

    A Connect request for an unknown method of a routed service gets Connect's
    ``unimplemented``, which its client can read; other paths are left to the others (a
    proxy route may lead to a Connect server of its own).
    """

    scope_types = frozenset({"http"})

    def __init__(self, holder: StateHolder, config: ConnectConfig) -> None:
        self.holder = holder
        self.config = config

    def claim(self, scope: Scope, path: str) -> ConnectClaim | None:
        state = self.holder.current
        route = state.routes.rpcs.get(path)
        if route is None:
            service, slash, method = path[1:].partition("/")
            if not (slash and method and "/" not in method):
                return None
            if service not in state.routes.rpc_services:
                return None
        kind = connect_kind(scope["method"], scope["headers"], scope["query_string"])
        if kind is None:
            return None
        return ConnectClaim(state, route, kind, path)

    def route_name(self, claim: ConnectClaim) -> str | None:
        return claim.route.method.full_name if claim.route is not None else None

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        """A preflight names no content type: a POST to a routed gRPC path may be ours, a
        GET too where the method has no side effects."""
        route = self.holder.current.routes.rpcs.get(path)
        if route is None:
            return None
        if method == "POST" or (method == "GET" and route.method.no_side_effects):
            return route.method.full_name
        return None

    async def serve(self, claim: ConnectClaim, scope: Scope, receive: Receive, send: Send) -> None:
        route = claim.route
        info = scope.get("edge")
        if info is not None:  # the access log's and the metrics' label
            info["protocol"] = "connect"
        if route is None:
            await _unknown(claim, scope, receive, send)
            return
        if info is not None:  # for the access log and the request metrics
            info["route"] = route.method.full_name
        if claim.kind == "stream":
            await self._stream(claim.state, route, scope, receive, send)
        else:
            await self._unary(claim.state, route, claim.kind == "get", scope, receive, send)

    # -- unary: POST and GET ----------------------------------------------------------

    async def _unary(
        self,
        state: GatewayState,
        route: TranscodeRoute,
        get: bool,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        method = route.method
        named = first_values(scope["headers"], _CALL_HEADERS)  # one pass over the headers
        body_unread = not get  # an answer given before the body is read must drain it
        try:
            if get:
                if method.client_streaming or method.server_streaming or not method.no_side_effects:
                    raise MethodNotAllowed(
                        f"{method.full_name} has side effects: Connect GET is only for "
                        "methods declared idempotency_level = NO_SIDE_EFFECTS; use POST",
                        headers={"allow": "POST"},
                    )
                query = parse_get_query(scope["query_string"])
                codec, data = query.codec, query.message
            else:
                codec = parse_content_type(named.get(b"content-type")).codec
                if method.client_streaming or method.server_streaming:
                    raise UnsupportedMediaType(
                        f"{method.full_name} is a streaming method: send "
                        f"{content_type_for(codec, stream=True)}"
                    )
                check_protocol_version(
                    named.get(b"connect-protocol-version"),
                    required=self.config.require_protocol_version,
                )
                _check_encoding(named.get(b"content-encoding"), "content-encoding", stream=False)
            call = self._call(state, route, scope, named.get(b"connect-timeout-ms"))
            if get:
                if len(data) > state.max_body_bytes:
                    raise BodyTooLarge(
                        f"the request message exceeds the limit of {state.max_body_bytes} bytes"
                    )
            else:
                # credentials first: a client without them is refused before its body is
                # read (after Expect: 100-continue, before it is even invited)
                if state.pipeline.checks_credentials:
                    checked = state.pipeline.authenticate(call)
                    if checked is not DONE:  # DONE: decided at once, nothing to await
                        await checked
                data = await read_body(scope, receive, state.max_body_bytes)
                body_unread = False
            call.request = decode_message(route, codec, data)
            reply = await call_unless_disconnected(state.chain, call, receive, None, scope)
            if reply is None:
                record(scope, 1)  # CANCELLED; the access log says 499
                return
            record(scope, 0, call)
            assert reply.message is not None
            payload = encode_message(route, codec, reply.message)
        except EdgeError as error:
            status, error_headers, body = connect_unary_error(error, route.codec)
            record(scope, error.grpc_code)
            if isinstance(error, BodyTooLarge) or body_unread:  # the client may still be sending
                await send_refusal(scope, receive, send, status, body, error_headers)
            else:
                await send_response(send, status, body, error_headers)
            return
        except Exception:
            # the one broad except: a bug must cost one request, never the worker
            log.exception("unhandled error serving Connect %s %s", scope["method"], scope["path"])
            record(scope, 13)
            await send_response(send, 500, CONNECT_INTERNAL_BODY)
            return
        out = [
            (b"content-type", _UNARY_CONTENT_TYPES[codec]),
            *(leading_headers(reply.initial_metadata) if reply.initial_metadata else ()),
            *(
                unary_trailer_headers(response_metadata(reply.trailing_metadata))
                if reply.trailing_metadata
                else ()
            ),
            *call.reply_headers,
        ]
        await send_response(send, 200, payload, out)

    # -- streams ----------------------------------------------------------------------

    async def _stream(
        self, state: GatewayState, route: TranscodeRoute, scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = route.method
        named = first_values(scope["headers"], _CALL_HEADERS)  # one pass over the headers
        codec: Codec = "json"
        body_unread = True
        try:
            codec = parse_content_type(named.get(b"content-type")).codec
            if not (method.client_streaming or method.server_streaming):
                raise UnsupportedMediaType(
                    f"{method.full_name} is a unary method: send "
                    f"{content_type_for(codec, stream=False)}"
                )
            if (
                method.client_streaming
                and method.server_streaming
                and str(scope.get("http_version", "1.1")).startswith("1")
            ):
                raise HttpVersionNotSupported(
                    f"{method.full_name} streams both ways, which needs HTTP/2"
                )
            check_protocol_version(
                named.get(b"connect-protocol-version"),
                required=self.config.require_protocol_version,
            )
            _check_encoding(
                named.get(b"connect-content-encoding"), "connect-content-encoding", stream=True
            )
            _check_encoding(named.get(b"content-encoding"), "content-encoding", stream=True)
            call = self._call(state, route, scope, named.get(b"connect-timeout-ms"))
            if state.pipeline.checks_credentials:  # before a byte of the body is read
                await state.pipeline.authenticate(call)
            decode = decoder(route, codec)
            body_ended: asyncio.Event | None = None
            if method.client_streaming:
                body_ended = asyncio.Event()  # then a disconnect can be watched for
                requests = envelope_requests(decode, receive, state.max_body_bytes, body_ended)
                if not method.server_streaming:
                    # a client stream's first message is read before the call starts, so a
                    # bad first envelope never reaches the upstream (a bidi client may
                    # wait for the server's first message, so its stream is not held up)
                    requests = await read_ahead(requests)
                call.request = requests
            else:
                call.request = await single_request(decode, receive, state.max_body_bytes)
            body_unread = False
            # (a client stream's own reader sees a disconnect until its body has ended)
            reply = await call_unless_disconnected(state.chain, call, receive, body_ended, scope)
            if reply is None:
                record(scope, 1)
                return
            record(scope, 0, call)
            streaming_send = timed_send(send, state.send_timeout, scope)
            await stream_reply(
                route, codec, reply, call.reply_headers, scope, receive, streaming_send, body_ended
            )
        except EdgeError as error:
            record(scope, error.grpc_code)
            if error.http_status in _NOT_STREAMABLE_STATUSES:
                status, out, body = connect_unary_error(error, route.codec)
            else:
                status, body = 200, connect_end_stream_error(error, route.codec)
                out = [
                    (b"content-type", content_type_for(codec, stream=True).encode("ascii")),
                    *connect_stream_error_headers(error),
                ]
            if isinstance(error, BodyTooLarge) or body_unread:
                await send_refusal(scope, receive, send, status, body, out)
            else:
                await send_response(send, status, body, out)
        except Exception:
            log.exception("unhandled error serving Connect %s %s", scope["method"], scope["path"])
            record(scope, 13)
            out = [(b"content-type", content_type_for(codec, stream=True).encode("ascii"))]
            await send_response(send, 200, CONNECT_INTERNAL_END_STREAM, out)

    def _call(
        self, state: GatewayState, route: TranscodeRoute, scope: Scope, timeout_ms: bytes | None
    ) -> Call:
        """The call through the one factory; raises ConnectProtocolError for a bad
        ``Connect-Timeout-Ms`` (and BadRequest for a bad ``-bin`` metadata header)."""
        asked = None if timeout_ms is None else parse_timeout_ms(timeout_ms)
        return state.calls.grpc(
            scope,
            upstream=route.upstream,
            method=route.method,
            timeout=deadline(route.timeout, asked),
            protocol="connect",
        )


# -- helpers ------------------------------------------------------------------------------


async def _unknown(claim: ConnectClaim, scope: Scope, receive: Receive, send: Send) -> None:
    """Connect's ``unimplemented`` for an unknown method of a routed service (501, or the
    end of a stream); its body, if any, is not read."""
    service, _, name = claim.path[1:].partition("/")
    error = Unimplemented(f"{service}/{name} is not implemented")
    record(scope, error.grpc_code)
    if claim.kind == "stream":
        status, body = 200, connect_end_stream_error(error, None)
        out = [(b"content-type", _stream_content_type(scope["headers"]))]
    else:
        status, out, body = connect_unary_error(error, None)
    if claim.kind == "get":
        await send_response(send, status, body, out)
    else:
        await send_refusal(scope, receive, send, status, body, out)


def _stream_content_type(headers: Headers) -> bytes:
    """A stream response's Content-Type for the request's codec (JSON if it has none)."""
    try:
        codec = parse_content_type(header(headers, b"content-type")).codec
    except EdgeError:
        codec = "json"
    return content_type_for(codec, stream=True).encode("ascii")


def _check_encoding(value: bytes | None, name: str, *, stream: bool) -> None:
    """Refuse a body compression: the gateway accepts identity only, for now.

    The spec: "If the client uses an unsupported Content-Encoding, servers should return
    an error with code unimplemented and a message listing the supported encodings".
    """
    if value is None:
        return
    coding = value.decode("latin-1").strip().lower()
    if coding in ("", "identity"):
        return
    raise CompressionUnsupported(
        f"{name} {coding[:40]!r} is not supported: supported are identity",
        stream=stream,
    )
