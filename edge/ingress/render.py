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

from edge.errors import EdgeError, UpstreamStatus
from edge.ingress.asgi import JSON_HEADERS, REQUEST_ID, Scope, Send, send_response
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
