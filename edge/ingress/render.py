"""The one place an error becomes what a client's protocol sends.

Every adapter hands its ``EdgeError`` here and gets back its protocol's form: an HTTP
status with a ``google.rpc.Status`` body, an in-stream error item, a WebSocket status
frame and close code (gRPC-Web trailers and Connect errors join them). Whatever the form,
the same things hold: the client reads the error's ``message`` and details, never its
``internal`` text (addresses, exception text), which is logged here, once, with the
request id; and an upstream's ``google.rpc.Status`` details reach the client decoded.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.message import DecodeError

from edge.errors import EdgeError, UpstreamStatus
from edge.ingress import connect_errors, connect_wire
from edge.ingress.asgi import JSON_HEADERS, REQUEST_ID, Scope, Send, send_response
from edge.ingress.grpc_web_reply import (
    ResponseEncoder,
    trailers_only_headers,
)
from edge.ingress.grpc_web_wire import (
    UnsupportedMediaType,
)
from edge.transcode.json_codec import JsonCodec
from edge.transcode.response import decode_details, status_body
from edge.upstream.headers import HeaderPolicy, response_headers

log = logging.getLogger("edge.errors")

INTERNAL_BODY = status_body(13, "internal error")


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def _logged(error: EdgeError) -> None:
    if error.internal is not None:
        log.warning(
            "%s (request %s): %s", error.message, current_request_id() or "-", error.internal
        )


def error_details(error: EdgeError, codec: JsonCodec | None) -> list[dict[str, Any]] | None:
    """The details a client sees: the upstream's own decoded, else the gateway's."""
    if isinstance(error, UpstreamStatus) and codec is not None:
        raw = error.status_details_bin()
        if raw is not None:
            return decode_details(raw, codec)
    return error.details


def error_response(
    error: EdgeError, codec: JsonCodec | None = None, policy: HeaderPolicy | None = None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, ``google.rpc.Status`` body and headers of an HTTP answer to ``error``.

    With ``policy``, an upstream's metadata and trailers come along as headers, as they
    would on success.
    """
    _logged(error)
    headers = list(JSON_HEADERS)
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    )
    if isinstance(error, UpstreamStatus) and policy is not None:
        headers.extend(response_headers(error.initial_metadata, error.trailing_metadata, policy))
    return (
        error.status,
        status_body(error.grpc_code, error.message, error_details(error, codec)),
        headers,
    )


def status_payload(error: EdgeError, codec: JsonCodec | None = None) -> bytes:
    """The ``google.rpc.Status`` JSON of an error reported inside a started stream."""
    _logged(error)
    return status_body(error.grpc_code, error.message, error_details(error, codec))


async def send_error(
    send: Send,
    error: EdgeError,
    codec: JsonCodec | None = None,
    policy: HeaderPolicy | None = None,
) -> None:
    """Answer a request (whose body is read or unwanted) with ``error``."""
    status, body, headers = error_response(error, codec, policy)
    await send_response(send, status, body, headers)


async def send_internal_error(send: Send) -> None:
    """The answer to a bug: INTERNAL, with nothing of the bug in it (it is logged)."""
    await send_response(send, 500, INTERNAL_BODY)


async def refuse_handshake(
    scope: Scope, send: Send, error: EdgeError, close_code: int = 1008
) -> None:
    """Refuse a WebSocket handshake: an HTTP answer with a Status body where possible.

    Without the ``websocket.http.response`` extension the only refusal ASGI has is a
    close before accepting, which the client sees as a 403 with no body; ``close_code`` is
    what a server that reports it would say.
    """
    if "websocket.http.response" in scope.get("extensions", {}):
        status, body, headers = error_response(error)
        out = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": status, "headers": out})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        _logged(error)
        await send({"type": "websocket.close", "code": close_code})


# -- gRPC-Web -------------------------------------------------------------------------
#
# gRPC-Web carries a status as gRPC does: ``grpc-status``, ``grpc-message`` and metadata,
# in the headers of a Trailers-Only answer (an error before any message) or in the
# trailer frame that ends a started body; ``edge.ingress.grpc_web_wire`` writes both. An
# upstream's ``grpc-status-details-bin`` goes on as it came (gRPC-Web clients decode the
# google.rpc.Status themselves); the gateway's own errors carry their headers
# (WWW-Authenticate, Retry-After, RateLimit-*, grpc-accept-encoding) as metadata.


def _grpc_web_metadata(error: EdgeError, *, started: bool) -> list[tuple[str, str | bytes]]:
    """What goes beside the status: the error's headers, an upstream's metadata.

    Once the response has started its headers are gone, so an upstream's initial
    metadata is left out (it was sent, or the stream failed before the upstream sent it).
    """
    metadata: list[tuple[str, str | bytes]] = list(error.headers.items())
    if isinstance(error, UpstreamStatus):
        if not started:
            metadata.extend(error.initial_metadata)
        metadata.extend(error.trailing_metadata)
    return metadata


def grpc_web_trailers_only(
    error: EdgeError, *, text: bool
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """HTTP status and headers of a Trailers-Only gRPC-Web answer to ``error`` (no body).

    200, as for every gRPC status, except for a content type the gateway does not speak:
    415, as gRPC's PROTOCOL-HTTP2 answers one, so no client takes it for a success.
    """
    _logged(error)
    status = 415 if isinstance(error, UnsupportedMediaType) else 200
    metadata = _grpc_web_metadata(error, started=False)
    return status, trailers_only_headers(error.grpc_code, error.message, metadata, text=text)


def grpc_web_trailers(error: EdgeError, encoder: ResponseEncoder) -> bytes:
    """The trailer frame ending a started gRPC-Web response with ``error`` (as written)."""
    _logged(error)
    return encoder.trailers(error.grpc_code, error.message, _grpc_web_metadata(error, started=True))


# -- Connect ------------------------------------------------------------------------------
#
# A unary error is an HTTP status (``connect_status``) and a JSON ``Error`` body; a
# streaming error is the ``error`` of the end-of-stream message. Details are Connect's
# (type name, unpadded base64 bytes, and a ``debug`` JSON rendering for people, as
# connect-go writes it): the upstream's ``grpc-status-details-bin`` entries as they came,
# the gateway's own (JSON ``google.rpc`` details) packed into bytes.

CONNECT_INTERNAL_BODY = connect_errors.error_json(13, "internal error")


def _connect_detail_debug(type_name: str, value: bytes, codec: JsonCodec | None) -> Any:
    """A detail as proto3 JSON, for the ``debug`` key; None when its type is unknown."""
    if codec is None:
        return None
    try:
        descriptor = codec.pool.FindMessageTypeByName(type_name)
        message = message_factory.GetMessageClass(descriptor).FromString(value)
        return codec.to_dict(message)
    except (KeyError, TypeError, ValueError, DecodeError):
        return None


def connect_details(error: EdgeError, codec: JsonCodec | None) -> list[connect_errors.ErrorDetail]:
    """The details a Connect client sees: the upstream's own, else the gateway's.

    ``codec`` (the route's) renders the ``debug`` JSON and resolves the gateway's detail
    types; without one, only the bytes go. A gateway detail whose type cannot be packed is
    left out (it cannot be sent as bytes), never turned into an error of its own.
    """
    if isinstance(error, UpstreamStatus):
        raw = error.status_details_bin()
        if raw is not None:
            return [
                connect_errors.ErrorDetail(
                    detail.type,
                    detail.value,
                    _connect_detail_debug(detail.type, detail.value, codec),
                )
                for detail in connect_errors.details_from_status_bin(raw)
            ]
    pool = codec.pool if codec is not None else None
    details = []
    for detail in error.details:
        packed = any_pb2.Any()
        try:
            json_format.ParseDict(detail, packed, descriptor_pool=pool)
        except (json_format.ParseError, KeyError, TypeError, ValueError):
            continue
        debug = {key: value for key, value in detail.items() if key != "@type"}
        details.append(
            connect_errors.ErrorDetail(packed.type_url.rsplit("/", 1)[-1], packed.value, debug)
        )
    return details


def connect_status(error: EdgeError) -> int:
    """The HTTP status of a unary Connect error: the spec's for its code ("HTTP-Status
    should match Error.code"), unless the gateway's error names an exact status of its own.

    Those are a GET of a method with side effects (405 with Allow, as connect-go and
    connect-es answer it), a body that stalls (408) or is too large (413), a codec the
    server does not speak (the spec's "must respond with ... 415"), a bidi stream over
    HTTP/1.x (505). Connect clients read the code from the body either way; the status is
    for what sits between, where a client's slow body must not look like an upstream's
    504, nor an oversized one like a rate limit.
    """
    if error.http_status is not None:
        return error.http_status
    return connect_errors.http_status_for_code(error.grpc_code or 2)


def _error_header_pairs(error: EdgeError) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]


def connect_unary_error(
    error: EdgeError, codec: JsonCodec | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON ``Error`` body of a unary Connect answer to ``error``.

    The error's own headers (``WWW-Authenticate``, ``Retry-After``, ``RateLimit-*``,
    ``Allow``) come along; an upstream's leading metadata as headers and its trailers as
    ``trailer-`` headers, as on success. ``internal`` text is logged, never sent.
    """
    _logged(error)
    trailers: list[tuple[str, str | bytes]] = []
    leading: list[tuple[bytes, bytes]] = []
    if isinstance(error, UpstreamStatus):
        trailers = connect_wire.response_metadata(error.trailing_metadata)
        leading = connect_wire.leading_headers(error.initial_metadata)
    _, headers, body = connect_errors.unary_error_response(
        error.grpc_code or 2, error.message, connect_details(error, codec), trailers
    )
    headers.extend(leading)
    headers.extend(_error_header_pairs(error))
    return connect_status(error), headers, body


def connect_stream_error_headers(error: EdgeError) -> list[tuple[bytes, bytes]]:
    """Headers of a stream that fails before its first message: the error's own headers
    and an upstream's leading metadata (a Connect client adds them to the error's
    metadata)."""
    headers = _error_header_pairs(error)
    if isinstance(error, UpstreamStatus):
        headers.extend(connect_wire.leading_headers(error.initial_metadata))
    return headers


def connect_end_stream_error(
    error: EdgeError, codec: JsonCodec | None, *, headers_sent: bool = False
) -> bytes:
    """The end-of-stream envelope of a failed stream: its ``error`` and trailers.

    An upstream's trailers are its metadata. ``headers_sent``: the response had started,
    so the error's own headers (``Retry-After``...) can only travel there too.
    """
    _logged(error)
    metadata: list[tuple[str, str | bytes]] = []
    if isinstance(error, UpstreamStatus):
        metadata = connect_wire.response_metadata(error.trailing_metadata)
    if headers_sent:
        metadata.extend((k.lower(), v) for k, v in error.headers.items())
    return connect_errors.end_stream_envelope(
        error.grpc_code or 2, error.message, connect_details(error, codec), metadata
    )


CONNECT_INTERNAL_END_STREAM = connect_errors.end_stream_envelope(13, "internal error")
