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
from collections.abc import AsyncIterator, Callable, Sequence
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
from edge.ingress.steps import finish_step
from edge.routes import TranscodeRoute
from edge.transcode.http_body import DEFAULT_CONTENT_TYPE, HttpBodyReply
from edge.transcode.stream_format import StreamFormat, choose_format
from edge.upstream.headers import HeaderPolicy, response_headers

log = logging.getLogger("edge.http")


async def stream_reply(
    route: TranscodeRoute,
    reply: Reply,
    layer_headers: Sequence[tuple[bytes, bytes]],
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
        *layer_headers,
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
    render = route.renderer.render
    item = framing.item
    pull: _Pull | None = None
    try:
        if first is not None:
            chunk += item(render(first), first=True)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk, count = b"", 1
            pull = _Pull(stream, lambda message: item(render(message), first=False))
            while True:
                bodies = await pull.next_ready()
                if bodies:
                    body = bodies[0] if len(bodies) == 1 else b"".join(bodies)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if pull.ended is not None:
                    if pull.ended is not _DONE:
                        raise pull.ended
                    break
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
    finally:
        if pull is not None:
            pull.close()
    try:
        await send(
            {"type": "http.response.body", "body": chunk + framing.closing, "more_body": False}
        )
    except ClientDisconnected:  # stalled at the very end
        return _GONE
    return outcome


_BATCH = 64 * 1024  # bytes in one body chunk, about (a message past it ends the chunk)


class _Pull:
    """A reply stream read in batches: the next message, and every one ready with it.

    Every message of a stream written one ``send`` each cost the server's whole send
    path per message (timeouts, HTTP framing, a transport write: most of the gateway's
    time per streamed message). Messages that have already arrived (the lean client
    queues all that one read from the upstream brought) go out in one chunk instead;
    one that has not arrived is never waited for while others are held, so a slow
    stream is still written message by message, as it comes.

    Whether the next message is ready is learnt by starting its ``__anext__`` by hand:
    if it finishes at once, the message was there; if it suspends, it is kept (never
    dropped: that would abandon the read half-way) and finished by ``finish_step`` on the
    next call, which waits for what it waits for and resumes it as the task would have.
    The stream is still read by this one task, one message at a time, and only after
    the previous chunk was sent, so backpressure is unchanged. ``close`` ends a read
    left suspended as a cancelled task would (the stream's own cleanup runs).
    """

    __slots__ = ("_encode", "_parked", "_stream", "ended")

    def __init__(self, stream: AsyncIterator[Message], encode: Callable[[Message], bytes]) -> None:
        self._stream = stream
        self._encode = encode
        self._parked: tuple[Any, Any] | None = None  # (a suspended __anext__, its future)
        # None while the stream goes on; then _DONE, or the exception it ended with
        self.ended: Any = None

    async def next_ready(self) -> list[bytes]:
        """At least one message (waiting for it) and those ready after it, encoded; an
        empty list only when the stream has ended (``ended`` says how)."""
        encode = self._encode
        parked, self._parked = self._parked, None
        try:
            if parked is not None:
                first = await finish_step(*parked)
            else:
                first = await self._stream.__anext__()
        except StopAsyncIteration:
            self.ended = _DONE
            return []
        bodies = [encode(first)]
        size = len(bodies[0])
        while size < _BATCH:
            step: Any = self._stream.__anext__()
            try:
                waiting = step.send(None)
            except StopIteration as ready:
                body = encode(ready.value)
                bodies.append(body)
                size += len(body)
                continue
            except StopAsyncIteration:
                self.ended = _DONE
                break
            except Exception as error:  # told after the messages before it
                self.ended = error
                break
            self._parked = (step, waiting)
            break
        return bodies

    def close(self) -> None:
        parked, self._parked = self._parked, None
        if parked is not None:
            with contextlib.suppress(BaseException):
                parked[0].throw(asyncio.CancelledError())


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
