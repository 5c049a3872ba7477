"""A Connect call's messages: decoded and encoded by codec, enveloped for streams.

What the Connect adapter (``edge.ingress.connect``) hands a streaming call: the request
messages read from their envelopes as they arrive (one for a server stream, each held to
the size limit before it is buffered), and the reply written envelope by envelope,
flushed per message, ending with the one end-of-stream message that carries the status
and the trailers (always 200: a stream's error is in-band).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from google.protobuf.message import DecodeError, Message

from edge.call import Call, Reply
from edge.errors import (
    BadRequest,
    ClientDisconnected,
    EdgeError,
)
from edge.ingress.asgi import (
    Receive,
    Scope,
    Send,
    close_stream,
    first_message,
    request_body,
    stop_watching,
)
from edge.ingress.connect_errors import (
    end_stream_envelope,
)
from edge.ingress.connect_wire import (
    Codec,
    ConnectProtocolError,
    EnvelopeDecoder,
    content_type_for,
    encode_envelope,
    leading_headers,
    response_metadata,
)
from edge.ingress.render import (
    CONNECT_INTERNAL_END_STREAM,
    connect_end_stream_error,
)
from edge.routes import TranscodeRoute

log = logging.getLogger("edge.connect")

Decode = Callable[[bytes], Message]  # one request message's bytes -> the message
Encode = Callable[[Message], bytes]  # a reply message -> its bytes in the call's codec
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx not to buffer the stream
)


def record(scope: Scope, code: int, call: Call | None = None) -> None:
    """The call's gRPC code (and user) for the access log and the request metrics."""
    info = scope.get("edge")
    if info is None:
        return
    info["grpc_code"] = code
    if call is not None and call.subject is not None:
        info["user"] = call.subject


def decoder(route: TranscodeRoute, codec: Codec) -> Decode:
    """Bytes of one request message -> the message; BadRequest (invalid_argument) if not.

    JSON goes through the route's binder (the whole body is the message), so the
    transcoding options (``unknown_fields``...) and wording hold here too.
    """
    if codec == "json":
        binder = route.binder

        def from_json(data: bytes) -> Message:
            return binder.bind((), "", data)

        return from_json
    input_type = route.method.input_type
    name = route.method.input_type.DESCRIPTOR.full_name

    def from_proto(data: bytes) -> Message:
        try:
            return input_type.FromString(data)
        except DecodeError as exc:
            raise BadRequest(
                f"the request is not a binary {name} message", internal=str(exc)
            ) from exc

    return from_proto


def decode_message(route: TranscodeRoute, codec: Codec, data: bytes) -> Message:
    """``decoder(route, codec)(data)`` for a unary call's one message, with no closure."""
    if codec == "json":
        return route.binder.bind((), "", data)
    return decoder(route, codec)(data)


def encode_message(route: TranscodeRoute, codec: Codec, message: Message) -> bytes:
    """``encoder(route, codec)(message)`` for a unary call's one message."""
    if codec == "json":
        return route.renderer.render(message)
    return message.SerializeToString()


def encoder(route: TranscodeRoute, codec: Codec) -> Encode:
    if codec == "json":
        return route.renderer.render
    return serialized


def serialized(message: Message) -> bytes:
    return message.SerializeToString()


async def single_request(decode: Decode, receive: Receive, max_message_bytes: int) -> Message:
    """The one request message of a server stream, from its enveloped body.

    Read chunk by chunk through the envelope decoder, so an oversized length prefix is
    refused before its message is buffered, and a second message as soon as it is seen;
    with connect-es's words for a missing or extra one.
    """
    decoder = EnvelopeDecoder(max_message_bytes)
    messages: list[bytes] = []
    async for chunk in request_body(receive):
        messages.extend(decoder.messages(chunk))
        if len(messages) > 1:
            raise ConnectProtocolError(
                "protocol error: received extra input message for server-streaming method"
            )
    decoder.finish()
    if not messages:
        raise ConnectProtocolError(
            "protocol error: missing input message for server-streaming method"
        )
    return decode(messages[0])


async def envelope_requests(
    decode: Decode, receive: Receive, max_message_bytes: int, ended: asyncio.Event
) -> AsyncIterator[Message]:
    """A client stream's request messages, each decoded as its envelope completes.

    Every message is held to ``max_message_bytes`` (refused at its length prefix); the
    body as a whole has no limit, since its messages go upstream as they come.
    """
    decoder = EnvelopeDecoder(max_message_bytes)
    # ``ended`` is set after the last chunk: from then on the disconnect watchers read
    async for chunk in request_body(receive, None, ended):
        for data in decoder.messages(chunk):
            yield decode(data)
    decoder.finish()


async def read_ahead(requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
    """``requests`` with its first message already read (errors raised now)."""
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        return no_messages()
    return prepended(first, requests)


async def no_messages() -> AsyncIterator[Message]:
    return
    yield  # an async generator that yields nothing


async def prepended(first: Message, rest: AsyncIterator[Message]) -> AsyncIterator[Message]:
    yield first
    async for message in rest:
        yield message


async def stream_reply(
    route: TranscodeRoute,
    codec: Codec,
    reply: Reply,
    layer_headers: Sequence[tuple[bytes, bytes]],
    scope: Scope,
    receive: Receive,
    send: Send,
    body_ended: asyncio.Event | None,
) -> None:
    """Write a streaming response; raises EdgeError only before it has started.

    The first message is awaited before the headers go, so a stream that fails at once is
    answered with its error and the upstream's leading metadata as headers (connect-es
    reads them into the error). The disconnect watcher starts before that wait, so a
    client that leaves while the upstream is silent cancels the call at once; for a bidi
    stream, once the request body has ended (until then its reader sees a disconnect).
    """
    encode = encoder(route, codec)
    content_type = (b"content-type", content_type_for(codec, stream=True).encode("ascii"))
    if reply.stream is None:  # a client stream's single answer
        assert reply.message is not None
        start = [content_type, *leading_headers(reply.initial_metadata), *layer_headers]
        body = encode_envelope(encode(reply.message)) + end_stream_envelope(
            0, metadata=response_metadata(reply.trailing_metadata)
        )
        with contextlib.suppress(ClientDisconnected):
            await send({"type": "http.response.start", "status": 200, "headers": start})
            await send({"type": "http.response.body", "body": body})
        return
    stream = reply.stream
    first, watcher = await first_message(reply, receive, body_ended)
    headers = [
        content_type,
        *STREAM_HEADERS,
        *leading_headers(reply.initial_metadata),
        *layer_headers,
    ]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await write_messages(route, encode, reply, stream, first, scope, send)
    except ClientDisconnected:
        return  # stalled before the first byte: the connection is gone
    finally:
        await stop_watching(watcher)
        await close_stream(stream)


async def write_messages(
    route: TranscodeRoute,
    encode: Encode,
    reply: Reply,
    stream: AsyncIterator[Message],
    first: Message | None,
    scope: Scope,
    send: Send,
) -> None:
    """Each message in its envelope as it comes, then the end-of-stream message."""
    try:
        if first is not None:
            body = encode_envelope(encode(first))
            await send({"type": "http.response.body", "body": body, "more_body": True})
            async for message in stream:
                body = encode_envelope(encode(message))
                await send({"type": "http.response.body", "body": body, "more_body": True})
        end = end_stream_envelope(0, metadata=response_metadata(reply.trailing_metadata))
    except ClientDisconnected:
        record(scope, 1)
        return  # stalled: the connection is gone, nothing more can be written
    except EdgeError as error:
        record(scope, error.grpc_code)
        end = connect_end_stream_error(error, route.codec, headers_sent=True)
    except Exception:
        # the response has started: a bug can only end the stream, in-band, as internal
        log.exception("unhandled error writing a Connect stream for %s", route.method.full_name)
        record(scope, 13)
        end = CONNECT_INTERNAL_END_STREAM
    with contextlib.suppress(ClientDisconnected):  # stalled at the very end
        await send({"type": "http.response.body", "body": end, "more_body": False})
