"""A transcoded server stream written to the client: framed items, or a raw download.

The status went out with the first message, so a later error can only be told in the
body (the stream format's in-band error: the last NDJSON line, SSE event or array
element) and, for a client that sent ``TE: trailers`` where the server can send them
(HTTP/2), in HTTP trailers (``http_trailers``). A ``google.api.HttpBody`` stream is a
download with no framing: without trailers a late error cuts it on HTTP/1.1, so a client
never takes a broken download for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from edge.call import Reply
from edge.errors import ClientDisconnected, EdgeError
from edge.ingress.asgi import (
    ABORT_EXTENSION,
    Receive,
    Scope,
    Send,
    close_stream,
    first_message,
    stop_watching,
)
from edge.ingress.http_trailers import (
    INTERNAL_TRAILERS,
    error_trailers,
    status_trailers,
    wants_trailers,
)
from edge.ingress.render import (
    INTERNAL_BODY,
    status_payload,
)
from edge.routes import TranscodeRoute
from edge.transcode.http_body import DEFAULT_CONTENT_TYPE, HttpBodyReply
from edge.transcode.stream_format import StreamFormat, choose_format
from edge.upstream.headers import HeaderPolicy, response_headers

log = logging.getLogger("edge.http")


async def stream_reply(
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
