"""Small ASGI helpers shared by the ingress handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any

from edge.errors import BodyTooLarge, ClientStalled, EdgeError, UpstreamStatus
from edge.transcode.json_codec import JsonCodec
from edge.transcode.response import decode_details, status_body
from edge.upstream.headers import HeaderPolicy, response_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = ((b"content-type", b"application/json"),)
log = logging.getLogger("edge.errors")
# The request id of the request this task serves (set by the observe middleware), so an
# error logged deep in an ingress can be matched with the access log line and the client.
REQUEST_ID: ContextVar[str | None] = ContextVar("edge_request_id", default=None)


# The scope extension through which the server lets the app drop a connection at once
# (set by edge.ingress.h11_continue for Hypercorn's HTTP/1.1 connections).
ABORT_EXTENSION = "edge.abort"


def timed_send(send: Send, timeout: float | None, scope: Scope) -> Send:
    """``send`` for a long answer (a stream, a WebSocket): a write stalled ``timeout`` s ends it.

    A client that stops reading fills its connection's send buffer; every write then waits
    for it, the close included, and the connection with its upstream call lives for ever.
    On the timeout the connection is aborted (where the server offers ``edge.abort``) and
    ``ClientStalled`` raised, so the caller ends its call as for a client that left.
    """
    if timeout is None:
        return send
    extensions = scope.get("extensions") or {}
    abort = extensions.get(ABORT_EXTENSION)

    async def send_timed(message: Message) -> None:
        try:
            async with asyncio.timeout(timeout):
                await send(message)
        except TimeoutError:
            if abort is not None:
                abort()
            raise ClientStalled(f"the client read nothing for {timeout:g}s") from None

    return send_timed


def current_request_id() -> str | None:
    return REQUEST_ID.get()


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413.

    ``Content-Length`` is checked before reading, so an honest oversized request is
    refused without its body being received at all.
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > limit:
                raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # http.disconnect: answer with what we have; the send is dropped anyway
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# How much of a refused request body is read and dropped after the 413, and for how long.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 10.0
LINGER_IDLE_SECONDS = 2.0  # a client that stops sending is not waited for (nginx: 5 s)


async def send_refusal(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> None:
    """Answer a request whose body is refused (413) while the client may still send it.

    The answer goes out at once, but on HTTP/1.1 its end is held back while the rest of
    the body is read and dropped, within bounds: Hypercorn closes the connection when a
    response ends before its request has, and a client that reads only after sending
    everything would then write into a closed connection and lose the answer (nginx's
    "lingering close" is for the same). The client has every byte of the answer from the
    start (its Content-Length is met); only the connection's fate waits. Not for
    ``Expect: 100-continue``, whose client waits for our answer before sending and must
    not be invited to send it all for nothing; HTTP/2 resets just the stream.
    """
    linger = scope.get("http_version") == "1.1" and not any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )
    if not linger:
        await send_response(send, status, body, headers)
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    drained = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while drained <= LINGER_BYTES:
                async with asyncio.timeout(LINGER_IDLE_SECONDS):
                    message = await receive()
                if message["type"] != "http.request":
                    break
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_response(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_response(
    error: EdgeError, codec: JsonCodec | None, policy: HeaderPolicy | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, google.rpc.Status body and headers for any gateway or upstream error.

    What the error keeps for the operator (``internal``: addresses, exception text) is
    logged here, once, with the request id; the body carries only ``message``.
    """
    if error.internal is not None:
        log.warning(
            "%s (request %s): %s", error.message, current_request_id() or "-", error.internal
        )
    headers = list(JSON_HEADERS)
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    )
    details = error.details
    if isinstance(error, UpstreamStatus):
        raw = error.status_details_bin()
        if raw is not None and codec is not None:
            details = decode_details(raw, codec)
        if policy is not None:
            headers.extend(
                response_headers(error.initial_metadata, error.trailing_metadata, policy)
            )
    return error.status, status_body(error.grpc_code, error.message, details), headers


async def refuse_handshake(
    scope: Scope,
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = JSON_HEADERS,
    close_code: int = 1008,
) -> None:
    """Refuse a WebSocket handshake with an HTTP answer where the server can send one.

    Without the ``websocket.http.response`` extension the only refusal ASGI has is a
    close before accepting, which the client sees as a 403 with no body; ``close_code`` is
    what a server that reports it would say.
    """
    if "websocket.http.response" in scope.get("extensions", {}):
        out = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": status, "headers": out})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": close_code})


async def close_stream(stream: Any) -> None:
    """End a reply stream however we stopped reading it: records its outcome, frees the call."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
