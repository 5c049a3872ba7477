"""The gRPC-Web wire format, sans-IO: content types, request frames, response frames.

The gRPC-Web adapter calls these with bytes and strings and gets values back; nothing
here reads a socket, awaits or knows ASGI. The rules are those of gRPC's
``doc/PROTOCOL-WEB.md`` (a delta on ``doc/PROTOCOL-HTTP2.md``), checked against the two
clients that matter, the official grpc-web JavaScript client (``GrpcWebStreamParser``,
``GrpcWebClientReadableStream``) and connect-es's gRPC-Web transport:

* Messages are gRPC's Length-Prefixed-Message: one flag byte, a 4-byte big-endian length,
  the message. In a response, a frame whose flag byte has the top bit set (``0x80``)
  carries the trailers as an HTTP/1 header block (``name: value\\r\\n`` lines, lower-case
  names) and is the last frame of the body.
* ``application/grpc-web-text``: the body is base64. A sender may flush a padded base64
  chunk at any point, so a text body is a concatenation of padded base64 chunks, not one
  base64 text; requests are decoded that way (``Base64ChunkDecoder``) and every response
  write is encoded on its own, padded, so a streamed response can be flushed per message
  (the JS client decodes whatever multiple of four characters it has, and its base64
  decoder accepts ``=`` padding in mid-stream).
* Trailers-only responses put ``grpc-status`` (and ``grpc-message``) in the HTTP headers
  with an empty body (``trailers_only_headers``); both clients look there first.

The length-prefixed decoder is shared with the Connect protocol's envelopes
(``edge.ingress.connect_wire``), which copy gRPC's framing with other flag bits.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from edge.errors import BodyTooLarge, EdgeError

Metadata = Iterable[tuple[str, str | bytes]]

FLAG_COMPRESSED = 0x01
FLAG_TRAILERS = 0x80
PREFIX_SIZE = 5
MAX_LENGTH = 0xFFFFFFFF  # what the 4-byte length can say
_PREFIX = struct.Struct(">BI")

CONTENT_TYPE_BINARY = "application/grpc-web+proto"
CONTENT_TYPE_TEXT = "application/grpc-web-text+proto"

_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/=]*")


# -- errors ---------------------------------------------------------------------------


class UnsupportedMediaType(EdgeError):
    """A content type of the protocol that the gateway does not speak (415).

    UNIMPLEMENTED, as gRPC answers an unsupported compression: the request is well formed
    but asks for something this server does not do.
    """

    grpc_code = 12  # UNIMPLEMENTED
    http_status = 415


class FramingError(EdgeError):
    """The body is not a sequence of length-prefixed messages (truncated, bad flags).

    INTERNAL, as gRPC reports a framing violation (``doc/statuscodes.md``: "Error parsing
    request proto", "Flow-control protocol violation"); nothing reached the upstream.
    """

    grpc_code = 13  # INTERNAL


class InvalidBase64(FramingError):
    """A ``grpc-web-text`` body that is not padded base64 chunks."""


class MessageTooLarge(BodyTooLarge):
    """A message whose length prefix is over the limit: refused before it is buffered."""

    grpc_code = 8  # RESOURCE_EXHAUSTED, as gRPC reports an over-size message


class CompressionUnsupported(EdgeError):
    """A compressed message, or a ``grpc-encoding`` other than identity.

    The gateway accepts no message compression on gRPC-Web requests yet (browsers compress
    whole bodies with Content-Encoding instead, as PROTOCOL-WEB expects), so the flag is
    answered as gRPC answers an encoding the server lacks: UNIMPLEMENTED, with
    ``grpc-accept-encoding: identity`` telling the client what it may send.
    """

    grpc_code = 12  # UNIMPLEMENTED

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"grpc-accept-encoding": "identity"})


# -- content types --------------------------------------------------------------------


def _media_type(value: str | bytes | None) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.split(";", 1)[0].strip().lower()


def is_grpc_web(content_type: str | bytes | None) -> bool:
    """Whether a request says it is gRPC-Web at all (any ``application/grpc-web*``).

    For the dispatch: such a request belongs to the gRPC-Web adapter even when
    ``parse_content_type`` then refuses its codec, so the client gets a gRPC-Web answer.
    """
    if isinstance(content_type, bytes):  # the ASGI form, asked of every POST: no decoding
        if content_type == b"application/json":  # the commonest POST, told by one comparison
            return False
        return content_type.lstrip()[:20].lower() == b"application/grpc-web"
    return _media_type(content_type).startswith("application/grpc-web")


def parse_content_type(content_type: str | bytes | None) -> bool:
    """Whether a gRPC-Web request is text mode (base64), from its Content-Type.

    Accepts ``application/grpc-web``, ``application/grpc-web+proto``,
    ``application/grpc-web-text`` and ``application/grpc-web-text+proto``, in any case and
    with any parameters (``; charset=utf-8`` is ignored, as both clients do). Raises
    ``UnsupportedMediaType`` for everything else, naming what was sent: ``+json`` and
    other codecs are gRPC-Web, but the gateway forwards protobuf only.
    """
    media = _media_type(content_type)
    base, plus, codec = media.partition("+")
    if base not in ("application/grpc-web", "application/grpc-web-text"):
        raise UnsupportedMediaType(
            f"content type {media or '(none)'!r} is not gRPC-Web: send "
            f"{CONTENT_TYPE_BINARY} or {CONTENT_TYPE_TEXT}"
        )
    if plus and codec != "proto":
        what = f"+{codec} messages" if codec else "an empty codec"
        raise UnsupportedMediaType(
            f"gRPC-Web with {what} ({media!r}) is not supported: the gateway forwards "
            f"protobuf; send {CONTENT_TYPE_BINARY} or {CONTENT_TYPE_TEXT}"
        )
    return base == "application/grpc-web-text"


def response_content_type(text: bool) -> str:
    """The Content-Type of a response: the request's mode, with the codec spelled out.

    The JS client picks its decoder by prefix (``application/grpc-web-text`` means base64,
    any other ``application/grpc`` binary), connect-es by the same regex it sends.
    """
    return CONTENT_TYPE_TEXT if text else CONTENT_TYPE_BINARY


def wants_text_response(text_request: bool, accept: str | bytes | None) -> bool:
    """Whether to answer in text mode: a text request, or ``Accept: application/grpc-web-text``.

    PROTOCOL-WEB lets a client ask for a text response with Accept; the official client
    sends both Content-Type and Accept as ``application/grpc-web-text`` in text mode.
    """
    if text_request:
        return True
    if accept is None:
        return False
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    return any(
        _media_type(item).startswith("application/grpc-web-text") for item in accept.split(",")
    )


def check_grpc_encoding(value: str | bytes | None) -> None:
    """Refuse a ``grpc-encoding`` request header other than identity.

    Raises ``CompressionUnsupported`` (UNIMPLEMENTED). The header alone is not an error
    when it says identity; a compressed frame is refused by the decoder in any case.
    """
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value.strip().lower() not in ("", "identity"):
        raise CompressionUnsupported(
            f"grpc-encoding {value!r} is not supported for gRPC-Web requests: "
            "the gateway accepts identity only"
        )


# -- length-prefixed frames -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One length-prefixed message: its flag byte and its bytes."""

    flags: int
    data: bytes


def encode_frame(flags: int, data: bytes) -> bytes:
    """A length-prefixed frame (flag byte, 4-byte big-endian length, ``data``)."""
    if len(data) > MAX_LENGTH:
        raise ValueError(f"a frame holds at most {MAX_LENGTH} bytes, not {len(data)}")
    return _PREFIX.pack(flags, len(data)) + data


class LengthPrefixedDecoder:
    """Frames from a byte stream fed in chunks of any size (gRPC's framing, sans-IO).

    ``feed`` returns the frames a chunk completes; ``finish`` at the end of the body raises
    if a frame was left half-read. The length prefix is checked as soon as its five bytes
    are in, so an over-size message (up to the 4 GiB a prefix can claim) is refused before
    a byte of it is buffered, and flags are checked there too: the buffer never holds more
    than one message of at most ``max_message_bytes`` plus a prefix.

    Subclasses name their protocol's flag rules and errors (``check_flags``,
    ``too_large``, ``truncated``); after an error the decoder is broken and must be
    dropped.
    """

    protocol: ClassVar[str] = "gRPC"

    def __init__(self, max_message_bytes: int) -> None:
        if max_message_bytes < 0:
            raise ValueError("max_message_bytes must not be negative")
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._head: tuple[int, int] | None = None  # (flags, length) of the frame being read

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (0 between frames)."""
        return len(self._buffer) + (PREFIX_SIZE if self._head is not None else 0)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data`` (possibly none), in order."""
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._head is None:
                if len(self._buffer) < PREFIX_SIZE:
                    return frames
                flags, length = _PREFIX.unpack_from(self._buffer)
                self.check_flags(flags)
                if length > self.max_message_bytes:
                    raise self.too_large(length)
                del self._buffer[:PREFIX_SIZE]
                self._head = (flags, length)
            flags, length = self._head
            if len(self._buffer) < length:
                return frames
            frames.append(Frame(flags, bytes(self._buffer[:length])))
            del self._buffer[:length]
            self._head = None

    def finish(self) -> None:
        """The body ended: raise if it stopped inside a frame."""
        if self.buffered:
            raise self.truncated()

    def check_flags(self, flags: int) -> None:
        """Raise for a flag byte this protocol does not allow here (every one passes)."""

    def too_large(self, length: int) -> EdgeError:
        return MessageTooLarge(
            f"a {self.protocol} message of {length} bytes is over the limit of "
            f"{self.max_message_bytes} bytes"
        )

    def truncated(self) -> EdgeError:
        return FramingError(
            f"the {self.protocol} request body ends inside a message "
            f"({self.buffered} bytes of an incomplete frame)"
        )


class GrpcWebRequestDecoder(LengthPrefixedDecoder):
    """Request messages of a gRPC-Web body: flag 0 only.

    A compressed message (flag 1) is refused with ``CompressionUnsupported``: no
    ``grpc-encoding`` is accepted for gRPC-Web requests yet. A trailer frame (0x80) has no
    place in a request, and other bits are unknown: both are ``FramingError``.
    """

    protocol = "gRPC-Web"

    def check_flags(self, flags: int) -> None:
        if flags == 0:
            return
        if flags == FLAG_COMPRESSED:
            raise CompressionUnsupported(
                "compressed gRPC-Web messages are not supported: the gateway accepts no "
                "grpc-encoding for gRPC-Web requests (send identity; browsers may "
                "compress the whole body with Content-Encoding)"
            )
        if flags & FLAG_TRAILERS:
            raise FramingError(f"a gRPC-Web request holds a trailer frame (flags {flags:#04x})")
        raise FramingError(f"unknown gRPC-Web frame flags {flags:#04x}")

    def messages(self, data: bytes) -> list[bytes]:
        """``feed``, keeping only the messages (every frame of a request is one)."""
        return [frame.data for frame in self.feed(data)]


class Base64ChunkDecoder:
    """Bytes from a ``grpc-web-text`` body: padded base64 chunks, fed in any splits.

    A client may pad and flush at any point, so ``=`` ends a 4-character group but not
    the body; the next group starts a new chunk. Characters are held until a group of four
    is complete, so a feed may split a group anywhere. Anything but the standard base64
    alphabet (whitespace, the URL-safe ``-``/``_``, ``=`` other than at the end of a group
    as padding) raises ``InvalidBase64``; so does a body that ends mid-group (``finish``).
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """The bytes decoded from ``data`` and what was held before it."""
        text = self._pending + data
        usable = len(text) - len(text) % 4
        self._pending = text[usable:]
        if not _BASE64_CHARS.fullmatch(self._pending):
            raise InvalidBase64("the gRPC-Web text body is not base64")
        out = bytearray()
        start = 0
        while start < usable:
            pad = text.find(b"=", start, usable)
            # a chunk runs to the end of the group holding its first "=" (its padding)
            end = usable if pad < 0 else start + ((pad - start) // 4 + 1) * 4
            try:
                out += base64.b64decode(text[start:end], validate=True)
            except binascii.Error as exc:
                raise InvalidBase64(
                    f"the gRPC-Web text body is not padded base64 chunks ({exc})"
                ) from None
            start = end
        return bytes(out)

    def finish(self) -> None:
        """The body ended: raise if it stopped inside a 4-character group."""
        if self._pending:
            raise InvalidBase64(
                f"the gRPC-Web text body ends inside a base64 group ({len(self._pending)} "
                "characters left; each chunk must be padded)"
            )


class RequestDecoder:
    """Request messages of a gRPC-Web body, binary or text: what the adapter feeds.

    ``feed`` takes each body chunk as it arrives and returns the messages it completes;
    ``finish`` at the end of the body raises if a frame or a base64 group was cut short.
    """

    def __init__(self, *, text: bool, max_message_bytes: int) -> None:
        self._text = Base64ChunkDecoder() if text else None
        self._frames = GrpcWebRequestDecoder(max_message_bytes)

    @property
    def buffered(self) -> int:
        """Decoded bytes held for a frame not yet complete (0 between frames)."""
        return self._frames.buffered

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._text is not None:
            chunk = self._text.feed(chunk)
        return self._frames.messages(chunk)

    def finish(self) -> None:
        if self._text is not None:
            self._text.finish()
        self._frames.finish()
