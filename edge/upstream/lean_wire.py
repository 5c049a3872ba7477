"""The lean gRPC client's wire format, sans-IO: HTTP/2 frames, HPACK literals, gRPC statuses.

Pure functions for ``edge.upstream.lean.Connection``: encoding what a call sends (frames,
a request header block made once per method, ``grpc-timeout``, metadata) and reading what
a stream received into a message, metadata and a status exactly as grpc.aio reports them.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from edge.errors import UpstreamStatus
from edge.upstream.compression import decompress, encoding_error, encoding_of

Headers = list[tuple[bytes, bytes]]
Pairs = tuple[tuple[str, str | bytes], ...]

FRAME_HEADER = struct.Struct(">BHBBL")  # length (24 bits as 8 + 16), type, flags, stream id
MESSAGE_PREFIX = struct.Struct(">BL")  # gRPC message prefix: compressed flag, length

# HTTP statuses of replies without grpc-status (a proxy in the way): http-grpc-status-mapping.md
_HTTP_CODES = {
    b"400": 13,
    b"401": 16,
    b"403": 7,
    b"404": 12,
    b"429": 14,
    b"502": 14,
    b"503": 14,
    b"504": 14,
}
# Transport fields grpc.aio never shows as metadata.
_NOT_METADATA = frozenset(
    (b"content-type", b"grpc-status", b"grpc-message", b"grpc-encoding", b"grpc-accept-encoding")
)
DEADLINE_MESSAGE = "Deadline Exceeded"  # grpc.aio's wording


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return FRAME_HEADER.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: an integer with an N-bit prefix, OR-ed into ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes | int, value: bytes) -> bytes:
    """RFC 7541 6.2.2: a literal field without indexing, its name by static index or literal."""
    encoded = hpack_int(len(value), 7, 0) + value  # raw octets, no Huffman
    if isinstance(name, int):
        return hpack_int(name, 4, 0) + encoded
    return b"\x00" + hpack_int(len(name), 7, 0) + name + encoded


def request_block(
    path: str,
    authority: str,
    tls: bool = False,
    encoding: bytes | None = None,
    accept_encoding: bytes | None = None,
) -> bytes:
    """The start of every request header block for ``path`` (static indexes: RFC 7541 A),
    with ``grpc-encoding`` and ``grpc-accept-encoding`` when the upstream's are set."""
    fields = [
        b"\x83\x87" if tls else b"\x83\x86",  # :method POST, :scheme https or http
        literal(4, path.encode()),  # :path
        literal(1, authority.encode()),  # :authority
        literal(31, b"application/grpc"),  # content-type
        literal(b"te", b"trailers"),
        literal(58, b"edge-lean"),  # user-agent
    ]
    if encoding is not None:
        fields.append(literal(b"grpc-encoding", encoding))
    if accept_encoding is not None:
        fields.append(literal(b"grpc-accept-encoding", accept_encoding))
    return b"".join(fields)


def encode_timeout(seconds: float) -> bytes:
    """``grpc-timeout``: at most 8 digits and a unit, rounded up (the server never waits less)."""
    for unit, per_second in ((b"u", 1e6), (b"m", 1e3), (b"S", 1.0), (b"M", 1 / 60)):
        value = math.ceil(max(seconds, 1e-6) * per_second)
        if value < 100_000_000:
            return b"%d%s" % (value, unit)
    return b"%dH" % min(math.ceil(seconds / 3600), 99_999_999)


# Encoded metadata fields remembered by (name, value): a client sends the same few fields
# (its address, Host, User-Agent, claims) on every call. Bounded in count and in each
# value's length, since values come from clients; when full it starts again, so values
# that never repeat cost an insert each and no more memory.
METADATA_FIELDS_KEPT = 512
METADATA_VALUE_KEPT = 256
# Never kept: fields edge itself makes anew for every call (never the same twice, they
# would only push out the fields that do repeat), and credentials a client forwards
# through the gateway (they stay no longer than their call).
NOT_KEPT_FIELDS = frozenset(
    {
        "x-request-id",
        "traceparent",
        "tracestate",
        "authorization",
        "proxy-authorization",
        "cookie",
    }
)
_encoded_fields: dict[tuple[str, str | bytes], bytes] = {}


def metadata_fields(metadata: Sequence[tuple[str, str | bytes]]) -> list[bytes]:
    """Each metadata pair as an HPACK literal (``metadata_field``), remembered when short."""
    fields = []
    known = _encoded_fields
    for name, value in metadata:
        pair = (name, value)
        field = known.get(pair)
        if field is None:
            field = metadata_field(name, value)
            if len(value) <= METADATA_VALUE_KEPT and name not in NOT_KEPT_FIELDS:
                if len(known) >= METADATA_FIELDS_KEPT:
                    known.clear()
                known[pair] = field
        fields.append(field)
    return fields


def metadata_field(name: str, value: str | bytes) -> bytes:
    """One pair as grpc.aio sends it: the name lower-cased, a ``-bin`` value in unpadded
    base64, any other str value as UTF-8."""
    key = name.lower()
    if key.endswith("-bin"):
        raw = value if isinstance(value, bytes) else value.encode()
        value = base64.b64encode(raw).rstrip(b"=")
    elif isinstance(value, str):
        value = value.encode()
    return literal(key.encode(), value)


def metadata_pairs(headers: Headers) -> Pairs:
    """Metadata as grpc.aio shows it: no pseudo or transport fields, ``-bin`` values decoded."""
    pairs: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name[:1] == b":" or name in _NOT_METADATA:
            continue
        key = name.decode("latin-1")
        if key.endswith("-bin"):
            try:
                pairs.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
            except (binascii.Error, ValueError):
                continue  # grpc drops a -bin value it cannot decode
        else:
            pairs.append((key, value.decode("utf-8", "replace")))
    return tuple(pairs)


def status_of(fields: Headers, initial: Headers | None) -> UpstreamStatus | None:
    """The non-OK status carried in ``fields`` (trailers), or None when it is OK."""
    status = message = None
    for name, value in fields:
        if name == b"grpc-status":
            status = value
        elif name == b"grpc-message":
            message = value
    if status == b"0":
        return None
    initial_pairs = metadata_pairs(initial) if initial is not None else ()
    if status is None:
        return UpstreamStatus(
            13,
            "missing grpc-status",
            initial_metadata=initial_pairs,
            trailing_metadata=metadata_pairs(fields),
        )
    if not status.isdigit():  # C-core fails the stream as it parses the field
        return UpstreamStatus(
            13,
            "Stream removed (Error parsing 'grpc-status' metadata)",
            initial_metadata=initial_pairs,
            trailing_metadata=metadata_pairs(fields),
        )
    code = int(status)
    if not 0 < code <= 16:
        code = 2  # UNKNOWN, as grpc reports a status it does not know
    text = unquote_to_bytes(message).decode("utf-8", "replace") if message else ""
    return UpstreamStatus(
        code,
        text,  # an empty message stays empty, as grpc.aio reports it
        initial_metadata=initial_pairs,
        trailing_metadata=metadata_pairs(fields),
    )


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value is not None else "none"


def _http_errors(headers: Headers) -> tuple[UpstreamStatus | None, UpstreamStatus | None]:
    """(the HTTP status's error, the content-type's error) of a leading header block."""
    http_status = content_type = None
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-encoding":
            error = encoding_error(value)  # C-core fails the reply as it parses this
            if error is not None:
                return error, None
    status_error = type_error = None
    if http_status != b"200":
        code = _HTTP_CODES.get(http_status or b"", 2)
        status_error = UpstreamStatus(
            code, f"Received http2 header with status: {_text(http_status)}"
        )
    if content_type is None or not content_type.startswith(b"application/grpc"):
        type_error = UpstreamStatus(2, f"unexpected content-type {content_type!r}")
    return status_error, type_error


def header_error(headers: Headers) -> UpstreamStatus | None:
    """What a reply's leading header block already shows is wrong, or None.

    An HTTP error status (a proxy in the way) or a body that is not gRPC: the call fails
    on the headers, as grpc-go's does, instead of its body being read as gRPC messages
    (a JSON body's first bytes read as a length prefix looked like a 500 MB message).
    """
    status_error, type_error = _http_errors(headers)
    return status_error or type_error


def outcome(
    headers: Headers | None,
    trailers: Headers | None,
    chunks: list[bytes],
    max_receive: int = 0,
) -> tuple[bytes, Pairs, Pairs]:
    """A cleanly ended stream as (message, initial metadata, trailers), or UpstreamStatus.

    Leading headers followed by more (not trailers-only) were already checked by
    ``header_error`` when they arrived (a stream they fail never ends cleanly), so only a
    trailers-only reply's one block is checked here. A compressed message is inflated
    (``edge.upstream.compression``) to at most ``max_receive`` bytes.
    """
    if headers is None:
        raise UpstreamStatus(13, "stream ended without headers")
    if trailers is None:  # trailers-only: the status is in the one block
        status_error, _ = _http_errors(headers)
        error = status_error or status_of(headers, None)
        raise error or UpstreamStatus(13, "OK status without a response message")
    error = status_of(trailers, headers)
    if error is not None:
        raise error
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(body) < 5:
        raise UpstreamStatus(13, "OK status without a response message")
    flag, length = MESSAGE_PREFIX.unpack_from(body)
    if length + 5 != len(body):
        raise UpstreamStatus(13, "a unary response must be exactly one message")
    message = body[5:]
    if flag:
        message = decompress(encoding_of(headers), flag, message, max_receive)
    return message, metadata_pairs(headers), metadata_pairs(trailers)


def stream_end(
    headers: Headers | None, trailers: Headers | None, leftover: int = 0
) -> UpstreamStatus | None:
    """How a server stream that ended on the wire ended: its error, or None for OK.

    Its messages were already read, so unlike ``outcome`` there is no message to check:
    a trailers-only reply (``trailers`` None: the one block has the status) with OK is an
    empty stream. ``leftover`` is the count of bytes after the last whole message: a
    stream that ends inside a message fails INTERNAL.
    """
    if headers is None:
        return UpstreamStatus(13, "stream ended without headers")
    if trailers is None:
        status_error, _ = _http_errors(headers)
        return status_error or status_of(headers, None)
    error = status_of(trailers, headers)
    if error is None and leftover:
        return UpstreamStatus(
            13,
            "the stream ended inside a message",
            initial_metadata=metadata_pairs(headers),
            trailing_metadata=metadata_pairs(trailers),
        )
    return error
