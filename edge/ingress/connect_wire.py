"""The Connect protocol's wire format, sans-IO: what is Connect, and its bytes both ways.

The Connect adapter calls these with strings and bytes and gets values back; nothing here
reads a socket, awaits or knows ASGI. The rules are those of the Connect protocol
reference (connectrpc.com ``docs/protocol.md``), checked against connect-es, whose
``connect-web`` transport is the browser client that matters:

* Unary: a bare message with ``application/json`` or ``application/proto``; errors are a
  non-200 status from the spec's code table with a JSON ``Error`` body
  (``{"code", "message", "details": [{"type", "value", "debug"}]}``); trailers travel as
  ``trailer-``-prefixed headers. GET for side-effect-free methods puts the message in
  the query (``connect=v1&encoding=...&message=...``; read by ``connect_get``).
* Streaming: ``application/connect+json`` / ``+proto``, messages in 5-byte envelopes
  (flag bits 0x01 compressed, 0x02 end-stream), always 200, ending with an end-stream
  envelope holding ``{"error": {...}, "metadata": {...}}``.

The envelope framing is gRPC's length-prefixed framing, so the decoder is the one of
``edge.ingress.grpc_web_wire`` with Connect's flag rules and errors. The codes, the
error JSON and the end-of-stream message are ``edge.ingress.connect_errors``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from edge.errors import EdgeError
from edge.ingress.grpc_web_reply import (
    metadata_entries,
)
from edge.ingress.grpc_web_wire import (
    LengthPrefixedDecoder,
    UnsupportedMediaType,
    encode_frame,
)

Metadata = Iterable[tuple[str, str | bytes]]
Codec = Literal["json", "proto"]

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
PROTOCOL_VERSION = "1"


CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_PROTO = "application/proto"
CONTENT_TYPE_STREAM_JSON = "application/connect+json"
CONTENT_TYPE_STREAM_PROTO = "application/connect+proto"

_TIMEOUT_MS = re.compile(r"[0-9]{1,10}", re.ASCII)
_CHARSET_UTF8 = frozenset({"utf-8", "utf8"})


# -- errors ---------------------------------------------------------------------------


class ConnectProtocolError(EdgeError):
    """A request that breaks the Connect protocol (bad header, query or envelope).

    ``invalid_argument`` (400), as connect-es answers a bad timeout, a wrong protocol
    version or an incomplete envelope.
    """

    grpc_code = 3  # INVALID_ARGUMENT


class CompressionUnsupported(EdgeError):
    """A compression the gateway does not accept; the spec asks for ``unimplemented``
    "and a message listing the supported encodings".

    The answer also says what the client may send: ``Accept-Encoding: identity`` (unary),
    ``Connect-Accept-Encoding: identity`` (``stream``), the headers the spec gives a
    response for its accepted encodings.
    """

    grpc_code = 12  # UNIMPLEMENTED

    def __init__(self, message: str, *, stream: bool = False) -> None:
        name = "connect-accept-encoding" if stream else "accept-encoding"
        super().__init__(message, headers={name: "identity"})


class HttpVersionNotSupported(EdgeError):
    """A bidirectional stream over HTTP/1.x: the spec says it "requires HTTP/2".

    505, as connect-go answers it, so a client that would wait for replies to each of its
    messages over a half-duplex connection is told at once instead of hanging.
    """

    grpc_code = 12  # UNIMPLEMENTED
    http_status = 505


# -- codes ----------------------------------------------------------------------------


# -- which requests are Connect -------------------------------------------------------


ConnectKind = Literal["unary", "get", "stream"]


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _media_type(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.split(";", 1)[0].strip().lower()


def connect_kind(
    method: str, headers: Sequence[tuple[bytes, bytes]], query_string: bytes | str = b""
) -> ConnectKind | None:
    """Which Connect form a request is, or None when it is not a Connect request.

    A unary Connect POST with ``application/json`` looks like any JSON POST, so the rule
    leans on what connect-es always sends (its ``requestHeader`` sets
    ``Connect-Protocol-Version: 1`` on every POST, and its GET URL always starts with
    ``connect=v1``):

    * ``stream``: a POST whose Content-Type is ``application/connect+<anything>``;
    * ``unary``: a POST carrying ``Connect-Protocol-Version`` (any value: a wrong one is
      then refused as Connect would), or with Content-Type ``application/proto``;
    * ``get``: a GET whose query has ``connect=v1`` (any value of ``connect``).

    ``headers`` are in ASGI form, names lower case (the ASGI spec's guarantee).
    A plain ``application/json`` POST without the header stays with JSON transcoding;
    the spec allows a server to require the header ("Servers and proxies may reject
    traffic without this header").
    """
    if method != "POST" and method != "GET":
        method = method.upper()
    if method == "POST":
        # one pass, nothing decoded: every JSON POST on a generic route asks this
        content_type = b""
        versioned = False
        for name, value in headers:  # ASGI header names are lower case
            if name == b"content-type":
                content_type = value
            elif name == b"connect-protocol-version":
                versioned = True
        if content_type == b"application/json":  # the plain JSON POST: one comparison
            return "unary" if versioned else None
        head = content_type.lstrip()[:20].lower()
        if head.startswith(b"application/connect+"):
            return "stream"
        if versioned:
            return "unary"
        if (
            head.startswith(b"application/proto")
            and _media_type(content_type) == CONTENT_TYPE_PROTO
        ):
            return "unary"
        return None
    if method == "GET":
        raw = query_string.encode("latin-1") if isinstance(query_string, str) else query_string
        for pair in raw.split(b"&"):
            if pair.split(b"=", 1)[0] == b"connect":
                return "get"
    return None


# -- request headers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentType:
    """A Connect Content-Type: the codec, and whether the call streams."""

    codec: Codec
    stream: bool

    @property
    def value(self) -> str:
        """The Content-Type a success response carries (the request's own)."""
        return content_type_for(self.codec, stream=self.stream)


_PLAIN_CONTENT_TYPES = {
    b"application/json": ContentType("json", False),
    b"application/proto": ContentType("proto", False),
    b"application/connect+json": ContentType("json", True),
    b"application/connect+proto": ContentType("proto", True),
}


def content_type_for(codec: Codec, *, stream: bool) -> str:
    if stream:
        return CONTENT_TYPE_STREAM_JSON if codec == "json" else CONTENT_TYPE_STREAM_PROTO
    return CONTENT_TYPE_JSON if codec == "json" else CONTENT_TYPE_PROTO


def parse_content_type(value: str | bytes | None) -> ContentType:
    """The codec and kind of a Connect request's Content-Type.

    ``application/json``, ``application/proto``, ``application/connect+json`` and
    ``application/connect+proto``, in any case. Parameters are ignored except a JSON
    ``charset``, which must be UTF-8 (``utf-8`` or ``utf8``, as connect-es matches).
    Anything else raises ``UnsupportedMediaType`` (415): the spec says a server "must
    respond with an HTTP status code of 415" for a codec it does not support.
    """
    known = _PLAIN_CONTENT_TYPES.get(value) if isinstance(value, bytes) else None
    if known is not None:  # the exact values the clients send: the hot path
        return known
    text = value.decode("latin-1") if isinstance(value, bytes) else (value or "")
    media, _, params = text.partition(";")
    media = media.strip().lower()
    stream = media.startswith("application/connect+")
    subtype = media.removeprefix("application/connect+" if stream else "application/")
    if not media.startswith("application/") or subtype not in ("json", "proto"):
        raise UnsupportedMediaType(
            f"content type {media or '(none)'!r} is not supported: send "
            f"{CONTENT_TYPE_JSON} or {CONTENT_TYPE_PROTO} (unary), "
            f"{CONTENT_TYPE_STREAM_JSON} or {CONTENT_TYPE_STREAM_PROTO} (streaming)"
        )
    codec: Codec = "json" if subtype == "json" else "proto"
    if codec == "json":
        for param in params.split(";"):
            name, _, arg = param.partition("=")
            if name.strip().lower() == "charset":
                charset = arg.strip().strip('"').lower()
                if charset not in _CHARSET_UTF8:
                    raise UnsupportedMediaType(
                        f"charset {charset!r} is not supported: Connect JSON is UTF-8"
                    )
    return ContentType(codec, stream)


def check_protocol_version(value: str | bytes | None, *, required: bool = False) -> None:
    """Refuse a ``Connect-Protocol-Version`` other than ``1``, or a missing one if required.

    The spec: clients "should send this header", servers "may reject traffic without this
    header with an HTTP status code of 400". ``ConnectProtocolError`` (invalid_argument,
    400) either way, with connect-es's wording.
    """
    if value == b"1":  # what every client sends: the hot path
        return
    if value is None:
        if required:
            raise ConnectProtocolError(
                'missing required header: set Connect-Protocol-Version to "1"'
            )
        return
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value.strip() != PROTOCOL_VERSION:
        raise ConnectProtocolError(f'Connect-Protocol-Version must be "1": got {value!r}')


def parse_timeout_ms(value: str | bytes) -> float:
    """Seconds from ``Connect-Timeout-Ms``: 1 to 10 ASCII digits, milliseconds.

    The spec says "positive integer ... of at most 10 digits" (up to 115 days); anything
    else (a sign, spaces inside, 11 digits, non-ASCII digits, a unit) raises
    ``ConnectProtocolError``. ``0`` is accepted, as connect-es accepts it, and means the
    deadline has already passed. Clamping to a maximum is the deadline policy's business.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if not _TIMEOUT_MS.fullmatch(text):
        raise ConnectProtocolError(
            f"invalid Connect-Timeout-Ms {text[:20]!r}: expected 1 to 10 digits (milliseconds)"
        )
    return int(text) / 1000.0


# -- errors and end of stream ---------------------------------------------------------


def encode_envelope(data: bytes) -> bytes:
    """A streaming response message envelope (flags 0)."""
    return encode_frame(0, data)


# Metadata names an upstream may not send on through a Connect response: ``connect-`` is
# the protocol's ("reserved for use by the Connect protocol"), ``grpc-`` gRPC's (a status
# and its details travel in the error object), ``access-control-`` the gateway's CORS
# answer, which an upstream must not widen.
_RESERVED_PREFIXES = ("connect-", "grpc-", "access-control-")


def response_metadata(
    metadata: Metadata, *, leading: bool = False
) -> list[tuple[str, str | bytes]]:
    """An upstream's metadata without the names it may not set on a Connect response.

    ``leading``: headers sent as they are, where a ``trailer-`` name would be read by the
    client as a trailer, so those go too. What ``metadata_entries`` drops (hop-by-hop and
    ``content-*`` names, values that cannot be sent) is dropped when it is written.
    """
    kept: list[tuple[str, str | bytes]] = []
    for name, value in metadata:
        lower = name.lower()
        if lower.startswith(_RESERVED_PREFIXES) or (leading and lower.startswith("trailer-")):
            continue
        kept.append((name, value))
    return kept


def leading_headers(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Leading metadata as response headers (ASGI form), under their own names.

    Connect's metadata are plain HTTP headers ("sent as -- and have the same semantics as
    -- HTTP headers"); ``-bin`` values are unpadded base64.
    """
    return [
        (name.encode("ascii"), value.encode("ascii"))
        for name, value in metadata_entries(response_metadata(metadata, leading=True))
    ]


def unary_trailer_headers(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Trailing metadata of a unary response as ``trailer-<name>`` headers (ASGI form).

    The spec: implementations "must transparently prefix trailing metadata keys with
    'trailer-'". For a browser to read them they must be listed in CORS's
    Access-Control-Expose-Headers under the prefixed name.
    """
    return [
        (f"trailer-{name}".encode("ascii"), value.encode("ascii"))
        for name, value in metadata_entries(metadata)
    ]


# -- parsing errors back (tests, and a Connect upstream some day) ---------------------


# -- request envelopes ----------------------------------------------------------------


class EnvelopeDecoder(LengthPrefixedDecoder):
    """Request messages of a Connect streaming body: envelopes with flags 0.

    A compressed envelope (0x01) is refused with ``CompressionUnsupported``: the gateway
    accepts no Connect-Content-Encoding yet. End-stream (0x02) "Request streams must
    always leave this bit unset"; the six high bits are "reserved for future protocol
    extensions", so an envelope using them is one this server cannot read. Both, and a
    body cut inside an envelope, are ``ConnectProtocolError`` (invalid_argument, as
    connect-es reports "protocol error: incomplete envelope").
    """

    protocol = "Connect"

    def check_flags(self, flags: int) -> None:
        if flags == 0:
            return
        if flags == FLAG_COMPRESSED:
            raise CompressionUnsupported(
                "compressed Connect messages are not supported: the gateway accepts no "
                "Connect-Content-Encoding (supported are: identity)",
                stream=True,
            )
        if flags & FLAG_END_STREAM:
            raise ConnectProtocolError(
                f"a request envelope has the end-stream flag set (flags {flags:#04x})"
            )
        raise ConnectProtocolError(f"unknown Connect envelope flags {flags:#04x}")

    def truncated(self) -> EdgeError:
        return ConnectProtocolError(
            f"protocol error: incomplete envelope ({self.buffered} bytes at the end of "
            "the request body)"
        )

    def messages(self, data: bytes) -> list[bytes]:
        """``feed``, keeping only the messages (every envelope of a request is one)."""
        return [frame.data for frame in self.feed(data)]
