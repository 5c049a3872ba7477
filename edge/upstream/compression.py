"""gRPC message compression towards upstreams, sans-IO: which encodings, and the bytes.

gRPC compresses each length-prefixed message on its own (grpc doc/compression.md,
PROTOCOL-HTTP2.md): the request's ``grpc-encoding`` names the algorithm and each
message's Compressed-Flag says whether that message used it; ``grpc-accept-encoding``
tells the server which algorithms it may answer in. The lean client uses the functions
here and is held to grpc.aio's behaviour, codes and words included, so no layer can tell
the two clients apart:

- Replies compressed with gzip or deflate are decoded whatever was advertised, as
  grpc.aio decodes them (grpc servers configured to compress do so whatever the client
  advertised). ``grpc-accept-encoding`` is sent only when the upstream's
  ``accept_compression`` (or ``request_compression``) names an algorithm.
- Requests are compressed only when that makes them smaller (C-core's rule); otherwise
  the message goes with its flag clear, under the same ``grpc-encoding``.
- A compressed reply is inflated to at most the upstream's ``max_response_bytes`` (plus
  the 1 KiB C-core allows past it), never further: a small gzip bomb costs that much
  memory and no more, and fails RESOURCE_EXHAUSTED.
- A Compressed-Flag without a usable ``grpc-encoding``, a ``grpc-encoding`` that is not
  one of gRPC's names, and corrupt, truncated or trailing compressed data each fail
  INTERNAL, as the spec says and C-core does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from edge.errors import UpstreamStatus
from edge.upstream_settings import COMPRESSION_ALGORITHMS as ALGORITHMS

_WBITS = {b"deflate": 15, b"gzip": 31}  # zlib format, gzip format (C-core's inflateInit2)
_SLACK = 1024  # C-core's decompression stops one output block (1 KiB) past the limit
ENCODING_ERROR = "Stream removed (Error parsing 'grpc-encoding' metadata)"


def accept_value(algorithms: tuple[str, ...]) -> bytes | None:
    """The ``grpc-accept-encoding`` value to send, or None when it would name identity alone
    (the lean client then sends none: the spec's default is identity alone)."""
    if algorithms == ("identity",):
        return None
    return ", ".join(algorithms).encode()


def compress(algorithm: str, payload: bytes) -> tuple[int, bytes]:
    """(Compressed-Flag, bytes) of one request message; compressed only if that is smaller.

    zlib's default level, gzip or zlib framing, as C-core's ``deflateInit2`` makes them.
    """
    packed = zlib.compress(payload, -1, _WBITS[algorithm.encode()])
    if len(packed) < len(payload):
        return 1, packed
    return 0, payload


def encoding_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """A reply's ``grpc-encoding`` (the last one, as C-core keeps it), trimmed; None if absent."""
    found = None
    for name, value in headers:
        if name == b"grpc-encoding":
            found = value.strip(b" \t")
    return found


def encoding_error(value: bytes) -> UpstreamStatus | None:
    """The error for a ``grpc-encoding`` that is none of gRPC's names (C-core refuses the
    whole reply while parsing it, whatever its status), or None."""
    if value.strip(b" \t").decode("latin-1") in ALGORITHMS:
        return None
    return UpstreamStatus(13, ENCODING_ERROR)


def decompress(encoding: bytes | None, flag: int, payload: bytes, limit: int) -> bytes:
    """The message a reply carried, inflated when its Compressed-Flag says so.

    ``encoding`` is the reply's ``grpc-encoding`` (checked already by ``encoding_error``),
    ``limit`` the client's max receive size. Raises ``UpstreamStatus`` with grpc.aio's
    code and words for each way this can fail.
    """
    if flag == 0:
        return payload
    if flag != 1:
        raise UpstreamStatus(13, "Invalid gRPC compression flag (must be 0 or 1)")
    if encoding is None or encoding == b"identity":
        raise UpstreamStatus(13, "Compression bit set but no encoding configured")
    if not payload:
        return b""  # C-core inflates nothing to nothing
    inflater = zlib.decompressobj(_WBITS[encoding])
    capacity = limit + min(limit, _SLACK)
    try:
        message = inflater.decompress(payload, capacity)
    except zlib.error:
        raise UpstreamStatus(13, "Decompression failed due to zlib error") from None
    if len(message) >= capacity:  # stopped there: the rest is never inflated
        raise UpstreamStatus(8, "Decompressed message larger than max")
    if inflater.unused_data:
        raise UpstreamStatus(13, "Decompression failed due to not all input consumed")
    if not inflater.eof:
        raise UpstreamStatus(13, "Decompression failed due to data error")
    if len(message) > limit:
        raise UpstreamStatus(
            8, f"CLIENT: Received message larger than max ({len(message)} vs. {limit})"
        )
    return message
