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
from edge.upstream.headers import HOP_BY_HOP

Metadata = Iterable[tuple[str, str | bytes]]

FLAG_COMPRESSED = 0x01
FLAG_TRAILERS = 0x80
PREFIX_SIZE = 5
MAX_LENGTH = 0xFFFFFFFF  # what the 4-byte length can say
_PREFIX = struct.Struct(">BI")

CONTENT_TYPE_BINARY = "application/grpc-web+proto"
CONTENT_TYPE_TEXT = "application/grpc-web-text+proto"

# Header-Name of PROTOCOL-HTTP2, and ASCII-Value (space and printable ASCII).
_HEADER_NAME = re.compile(r"[0-9a-z_.\-]+", re.ASCII)
_ASCII_VALUE = re.compile(r"[\x20-\x7e]*", re.ASCII)
# Written by the encoder itself, or transport fields that must never come from metadata
# (a ``content-length`` among trailers-only headers would corrupt the response; a
# ``grpc-encoding`` would tell the client that the gateway's identity messages are
# compressed, and connect-web fails a response whose encoding it lacks).
_NOT_METADATA = HOP_BY_HOP | {
    "grpc-status",
    "grpc-message",
    "grpc-encoding",
    "content-type",
    "content-length",
    "content-encoding",
}
# Percent-Byte-Unencoded of PROTOCOL-HTTP2: space and VCHAR except "%".
_UNENCODED = frozenset(range(0x20, 0x7F)) - {ord("%")}
_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/=]*")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


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


# -- status, metadata, trailers -------------------------------------------------------


def encode_grpc_message(message: str) -> str:
    """``grpc-message`` as PROTOCOL-HTTP2 writes it: UTF-8, then percent-encoded.

    Space and printable ASCII other than ``%`` stay as they are; every other byte becomes
    ``%XX`` (upper-case hex). The result is a safe header value (no CR, LF or controls)
    and decodes with JavaScript's ``decodeURIComponent``, which both browser clients call
    on it and which throws on a stray ``%``.
    """
    raw = message.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if all(byte in _UNENCODED for byte in raw):
        return raw.decode("ascii")
    return "".join(chr(byte) if byte in _UNENCODED else f"%{byte:02X}" for byte in raw)


def decode_grpc_message(value: str | bytes) -> str:
    """The text of a ``grpc-message`` value, decoded leniently as the spec requires.

    PROTOCOL-HTTP2: "When decoding invalid values, implementations MUST NOT error or
    throw away the message": a ``%`` not followed by two hex digits is kept as it is,
    and bytes that are not UTF-8 become U+FFFD.
    """
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte == 0x25 and _is_hex(raw[index + 1 : index + 3]):
            out.append(int(raw[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(byte)
            index += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in _HEX_DIGITS for c in pair)


def encode_binary_value(value: bytes) -> str:
    """A ``-bin`` metadata value for a header or trailer: base64, unpadded.

    PROTOCOL-HTTP2: implementations "MUST accept padded and un-padded values and should
    emit un-padded values"; grpc-go and gRPC's C core emit them unpadded too.
    """
    return base64.b64encode(value).rstrip(b"=").decode("ascii")


def metadata_entries(metadata: Metadata) -> list[tuple[str, str]]:
    """Metadata as (lower-case name, header-safe value) pairs; what cannot be sent is dropped.

    ``-bin`` values are bytes and become unpadded base64. Other values must be
    ASCII-Value (space and printable ASCII): a value with CR, LF, controls or non-ASCII
    text is dropped, as PROTOCOL-HTTP2 allows ("they may throw the value away"), because
    it could split a trailer block or a header and the JS client reads trailer bytes as
    Latin-1. Dropped too: names outside Header-Name, ``grpc-status`` and ``grpc-message``
    (the encoder writes those from the status), and transport fields (hop-by-hop,
    ``content-*``) that must never come from an upstream's metadata.
    """
    entries: list[tuple[str, str]] = []
    for raw_name, value in metadata:
        name = raw_name.lower()
        if name in _NOT_METADATA or not _HEADER_NAME.fullmatch(name):
            continue
        if name.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            entries.append((name, encode_binary_value(raw)))
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                continue
        if _ASCII_VALUE.fullmatch(value):
            entries.append((name, value))
    return entries


def status_entries(code: int, message: str) -> list[tuple[str, str]]:
    """``grpc-status`` (decimal, no leading zeros) and, when there is one, ``grpc-message``."""
    entries = [("grpc-status", str(code if code >= 0 else 2))]
    if message:
        entries.append(("grpc-message", encode_grpc_message(message)))
    return entries


def trailer_block(code: int, message: str, metadata: Metadata = ()) -> bytes:
    """The trailers as an HTTP/1 header block: ``name: value\\r\\n`` per entry.

    Status first, then the metadata in its order (repeated names stay repeated lines).
    PROTOCOL-WEB: "encoded as a HTTP/1 headers block (without the terminating newline)",
    so there is no empty line at the end.
    """
    entries = status_entries(code, message) + metadata_entries(metadata)
    return "".join(f"{name}: {value}\r\n" for name, value in entries).encode("ascii")


def encode_message(data: bytes) -> bytes:
    """A response message frame (flag 0)."""
    return encode_frame(0, data)


def encode_trailers(code: int, message: str, metadata: Metadata = ()) -> bytes:
    """The trailer frame (flag 0x80) that ends every response body with a status.

    ``-bin`` trailers are base64 in both modes. PROTOCOL-WEB says the extra base64 is
    skipped in text mode, but no client implements that: both parse the block as text
    lines split on CRLF, which raw bytes could break, and Envoy forwards the base64 form.
    """
    return encode_frame(FLAG_TRAILERS, trailer_block(code, message, metadata))


def trailers_only_headers(
    code: int, message: str, metadata: Metadata = (), *, text: bool = False
) -> list[tuple[bytes, bytes]]:
    """Response headers of a Trailers-Only response: no body, the status in the headers.

    Content-Type first, then ``grpc-status``, ``grpc-message`` and the metadata, in ASGI
    form (lower-case byte names). For an error known before any message is sent. The
    adapter adds what HTTP needs around it (``content-length: 0`` on HTTP/1.1, CORS).
    """
    headers = [(b"content-type", response_content_type(text).encode("ascii"))]
    for name, value in status_entries(code, message) + metadata_entries(metadata):
        headers.append((name.encode("ascii"), value.encode("ascii")))
    return headers


@dataclass(frozen=True, slots=True)
class ResponseEncoder:
    """Response body writes of one call, binary or text.

    In text mode each write is base64-encoded on its own, padded, so it can be flushed
    at once: a client decodes the padded chunks one after another.
    """

    text: bool

    @property
    def content_type(self) -> str:
        return response_content_type(self.text)

    def message(self, data: bytes) -> bytes:
        """The bytes to write for one response message."""
        return self._wire(encode_message(data))

    def trailers(self, code: int, message: str, metadata: Metadata = ()) -> bytes:
        """The bytes to write last: the status and trailing metadata."""
        return self._wire(encode_trailers(code, message, metadata))

    def _wire(self, frame: bytes) -> bytes:
        return base64.b64encode(frame) if self.text else frame
