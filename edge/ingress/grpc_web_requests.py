"""A gRPC-Web request's messages, decoded as its body arrives (the request side).

A unary method's body must hold exactly one message, limited before it is buffered: an
honest oversized body by its Content-Length, a length prefix over the limit as soon as
its five bytes are in; a client stream's messages go upstream one by one as their frames
complete. The framing is ``grpc_web_wire``'s; this module adds ASGI's ``receive``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError, Message

from edge.errors import BodyTooLarge, EdgeError
from edge.ingress.asgi import Receive, Scope, declared_length, replayed, request_body
from edge.ingress.grpc_web_wire import PREFIX_SIZE, RequestDecoder
from edge.routes import TranscodeRoute

# Added to a text body's bound, for clients that pad and flush mid-message (a few
# characters per flush); the decoded message is held to the exact limit in any case.
_TEXT_SLACK = 1024


class WrongMessageCount(EdgeError):
    """A unary method's request body with no message or more than one.

    UNIMPLEMENTED: gRPC's ``doc/statuscodes.md``, "Request cardinality violation (method
    requires exactly one request but client sent some other number of requests)".
    """

    grpc_code = 12  # UNIMPLEMENTED


class InvalidMessage(EdgeError):
    """A request message that does not parse as the method's input type.

    INTERNAL, as gRPC servers answer it (grpc-go "error unmarshalling request", grpc-java
    "Invalid protobuf byte sequence", gRPC's ``doc/statuscodes.md``: "Error parsing
    request proto"), and so what a client behind Envoy's grpc_web filter, which passes the
    bytes on, would get from the upstream itself.
    """

    grpc_code = 13  # INTERNAL


def body_limit(text: bool, max_message_bytes: int) -> int:
    """The most a unary request body may hold: one frame, base64 in text mode (4/3)."""
    frame = PREFIX_SIZE + max_message_bytes
    return 4 * -(-frame // 3) + _TEXT_SLACK if text else frame


async def read_message(
    scope: Scope, receive: Receive, decoder: RequestDecoder, limit: int, ended: asyncio.Event
) -> bytes:
    """The one request message of a unary call, decoded as the body arrives.

    A body over ``limit`` (by its Content-Length, before a byte is read) is BodyTooLarge;
    a length prefix over the limit is refused as soon as its five bytes are in. No message,
    or the start of a second one, is WrongMessageCount (UNIMPLEMENTED); a body cut inside a
    frame is FramingError (INTERNAL). ``ended`` is set once the last chunk is in, so that
    a refusal then answers at once instead of draining.
    """
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    first = await receive()
    if first["type"] == "http.request" and not first.get("more_body", False):
        # the whole body in one event, as a small unary call's is: no reader needed
        whole = first.get("body", b"")
        if len(whole) > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        ended.set()
        message = _take(decoder, whole, None)
    else:
        message = None
        async for chunk in request_body(replayed(first, receive), limit, ended):
            message = _take(decoder, chunk, message)
    decoder.finish()
    if message is None:
        raise WrongMessageCount(
            "the gRPC-Web request body holds no message: a unary method takes one"
        )
    return message


def _take(decoder: RequestDecoder, chunk: bytes, message: bytes | None) -> bytes | None:
    """The one message so far once ``chunk`` is in; the start of a second is refused."""
    for data in decoder.feed(chunk):
        if message is not None:
            raise _second_message()
        message = data
    if message is not None and decoder.buffered:
        raise _second_message()
    return message


def _second_message() -> WrongMessageCount:
    return WrongMessageCount(
        "the gRPC-Web request body holds more than one message: a unary method takes one"
    )


def parse_message(route: TranscodeRoute, data: bytes) -> Message:
    input_type = route.method.input_type
    try:
        return input_type.FromString(data)
    except DecodeError:
        raise InvalidMessage(
            f"the request message is not a valid {input_type.DESCRIPTOR.full_name}"
        ) from None


async def request_stream(
    route: TranscodeRoute, receive: Receive, decoder: RequestDecoder, ended: asyncio.Event
) -> AsyncIterator[Message]:
    """A client stream's messages, each parsed and sent on as its frame completes.

    ``ended`` is set after the last chunk: from then on the disconnect watchers read.
    """
    async for chunk in request_body(receive, None, ended):
        for data in decoder.feed(chunk):
            yield parse_message(route, data)
    decoder.finish()
