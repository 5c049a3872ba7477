"""What a gRPC-Web answer carries besides its messages, sans-IO: status, metadata, trailers.

``grpc-message`` percent-encoded as PROTOCOL-HTTP2 says, metadata made safe to send as
HTTP headers or as the lines of a trailer frame (``-bin`` values unpadded base64, names
and values that could inject a line dropped), the trailer frame itself, the
trailers-only answer, and ``ResponseEncoder``, which writes a response message by
message (each write base64 on its own in text mode, so a stream can be flushed per
message). Connect's metadata goes through the same rules. The request side and the
framing are ``grpc_web_wire``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from edge.ingress.grpc_web_wire import FLAG_TRAILERS, encode_frame, response_content_type
from edge.upstream.headers import HOP_BY_HOP

Metadata = Iterable[tuple[str, str | bytes]]

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
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


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
        if code == 0 and not message and not metadata:  # most calls end so: built once
            return _OK_TEXT if self.text else _OK_BINARY
        return self._wire(encode_trailers(code, message, metadata))

    def _wire(self, frame: bytes) -> bytes:
        return base64.b64encode(frame) if self.text else frame


_OK_BINARY = encode_trailers(0, "")
_OK_TEXT = base64.b64encode(_OK_BINARY)
