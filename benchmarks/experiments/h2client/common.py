"""What the two prototype clients share: the call record, the reply, the error and gRPC's codecs.

Both clients (``h2lib.py`` on the ``h2`` state machine, ``handrolled.py`` on our own
framing) only move frames; turning a finished stream's headers, body and trailers into a
``Reply`` or an ``RpcError`` is the same for both and lives here, as do the wire formats
of ``grpc-timeout``, ``grpc-message``, ``grpc-status-details-bin`` and user metadata
(https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md). An experiment, not
product code: no compression, no retries, no TLS.
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import unquote_to_bytes

Headers = list[tuple[bytes, bytes]]
Metadata = tuple[tuple[str, str | bytes], ...]

MAX_RECEIVE_BYTES = 4 * 1024 * 1024  # grpc's default max_receive_message_length
MESSAGE_PREFIX = struct.Struct(">BI")  # compressed flag, big-endian length


class StatusCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A call that ended with a non-OK status, from the server or made up locally."""

    def __init__(
        self,
        code: StatusCode,
        message: str,
        details: bytes | None = None,
        trailing_metadata: Headers | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details  # a serialized google.rpc.Status, when the server sent one
        self.trailing_metadata = trailing_metadata or []


class RefusedStream(RpcError):
    """RST_STREAM REFUSED_STREAM: the server never processed the call, so it may be retried.

    grpc C-core servers refuse streams beyond MAX_CONCURRENT_STREAMS until their own
    bookkeeping of finished calls catches up, even when the client kept to the limit;
    grpc's clients retry these transparently, and so must any replacement.
    """


@dataclass(frozen=True, slots=True)
class Reply:
    message: bytes
    initial_metadata: Headers
    trailing_metadata: Headers


class CallState:
    """One in-flight unary call as the protocol sees it; ``future`` resolves to ``self``."""

    __slots__ = (
        "chunks",
        "future",
        "headers",
        "pending",
        "received",
        "send_window",
        "stream_id",
        "timer",
        "trailers",
        "unacked",
    )

    def __init__(self, stream_id: int, future: asyncio.Future[CallState], send_window: int):
        self.stream_id = stream_id
        self.future = future
        self.headers: Headers | None = None
        self.trailers: Headers | None = None
        self.chunks: list[bytes] = []
        self.received = 0  # message bytes so far, against MAX_RECEIVE_BYTES
        self.unacked = 0  # flow-controlled bytes not yet handed back by WINDOW_UPDATE
        self.send_window = send_window
        self.pending: memoryview | None = None  # request bytes waiting for send window
        self.timer: asyncio.TimerHandle | None = None

    def fail(self, error: RpcError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


# RST_STREAM error codes to gRPC codes, as PROTOCOL-HTTP2.md lists them.
_RESET_CODES = {
    0x0: StatusCode.INTERNAL,  # NO_ERROR before trailers
    0x1: StatusCode.INTERNAL,
    0x2: StatusCode.INTERNAL,
    0x3: StatusCode.INTERNAL,
    0x7: StatusCode.UNAVAILABLE,  # REFUSED_STREAM: never processed, safe to retry
    0x8: StatusCode.CANCELLED,
    0xB: StatusCode.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: StatusCode.PERMISSION_DENIED,  # INADEQUATE_SECURITY
}

# HTTP statuses of replies without grpc-status (a proxy in the way): http-grpc-status-mapping.md
_HTTP_CODES = {
    b"400": StatusCode.INTERNAL,
    b"401": StatusCode.UNAUTHENTICATED,
    b"403": StatusCode.PERMISSION_DENIED,
    b"404": StatusCode.UNIMPLEMENTED,
    b"429": StatusCode.UNAVAILABLE,
    b"502": StatusCode.UNAVAILABLE,
    b"503": StatusCode.UNAVAILABLE,
    b"504": StatusCode.UNAVAILABLE,
}

_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "connection"})


TRANSPARENT_RETRIES = 50


def reset_error(code: int) -> RpcError:
    if code == 0x7:
        return RefusedStream(StatusCode.UNAVAILABLE, "stream refused (REFUSED_STREAM)")
    return RpcError(_RESET_CODES.get(code, StatusCode.INTERNAL), f"stream reset (0x{code:x})")


def encode_timeout(seconds: float) -> bytes:
    """``grpc-timeout``: at most 8 digits and a unit, rounded up so the server never waits less."""
    if seconds <= 0:
        return b"1n"
    for unit, per_second in ((b"u", 1e6), (b"m", 1e3), (b"S", 1.0), (b"M", 1 / 60)):
        value = math.ceil(seconds * per_second)
        if value < 100_000_000:
            return b"%d%s" % (value, unit)
    return b"%dH" % min(math.ceil(seconds / 3600), 99_999_999)


def encode_metadata(metadata: Metadata) -> Headers:
    """User metadata as header fields; ``-bin`` values base64 without padding, as grpc sends them.

    Raises ``ValueError`` for names HTTP/2 or gRPC reserve: sending them would confuse the
    server, not just this call.
    """
    fields: Headers = []
    for name, value in metadata:
        key = name.lower()
        if key.startswith((":", "grpc-")) or key in _RESERVED:
            raise ValueError(f"metadata key {name!r} is reserved")
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            fields.append((key.encode(), base64.b64encode(raw).rstrip(b"=")))
        elif isinstance(value, bytes):
            fields.append((key.encode(), value))
        else:
            fields.append((key.encode("ascii"), value.encode("ascii")))
    return fields


def _decode_message(value: bytes) -> str:
    if b"%" in value:
        value = unquote_to_bytes(value)
    return value.decode("utf-8", "replace")


def _decode_bin(value: bytes) -> bytes:
    return base64.b64decode(value + b"=" * (-len(value) % 4))


def _status_error(fields: Headers, status: bytes) -> RpcError:
    message = ""
    details: bytes | None = None
    for name, value in fields:
        if name == b"grpc-message":
            message = _decode_message(value)
        elif name == b"grpc-status-details-bin":
            details = _decode_bin(value)
    try:
        code = StatusCode(int(status))
    except ValueError:
        code = StatusCode.UNKNOWN
    return RpcError(code, message, details, fields)


def finish(call: CallState) -> Reply:
    """The outcome of a stream that ended cleanly: a ``Reply`` or a raised ``RpcError``."""
    headers = call.headers
    if headers is None:
        raise RpcError(StatusCode.INTERNAL, "stream ended without headers")
    http_status = content_type = grpc_status = None
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-status":
            grpc_status = value
    trailers = call.trailers
    if trailers is None:  # trailers-only: the status is in the one HEADERS frame
        if grpc_status is None:
            code = _HTTP_CODES.get(http_status or b"", StatusCode.UNKNOWN)
            if http_status == b"200":
                code = StatusCode.INTERNAL
            raise RpcError(code, f"no grpc-status (HTTP {http_status!r})", None, headers)
        if grpc_status != b"0":
            raise _status_error(headers, grpc_status)
        trailers = headers
    else:
        if http_status != b"200":
            code = _HTTP_CODES.get(http_status or b"", StatusCode.UNKNOWN)
            raise RpcError(code, f"HTTP status {http_status!r}", None, trailers)
        grpc_status = None
        for name, value in trailers:
            if name == b"grpc-status":
                grpc_status = value
                break
        if grpc_status is None:
            raise RpcError(StatusCode.INTERNAL, "trailers without grpc-status", None, trailers)
        if grpc_status != b"0":
            raise _status_error(trailers, grpc_status)
    if content_type is None or not content_type.startswith(b"application/grpc"):
        raise RpcError(StatusCode.UNKNOWN, f"content-type {content_type!r}", None, trailers)
    body = b"".join(call.chunks)
    if len(body) < 5:
        raise RpcError(StatusCode.INTERNAL, "OK status without a response message")
    compressed, length = MESSAGE_PREFIX.unpack_from(body)
    if compressed:
        raise RpcError(StatusCode.INTERNAL, "compressed response (compression not supported)")
    if length + 5 != len(body):
        raise RpcError(StatusCode.INTERNAL, "unary response is not exactly one message")
    return Reply(body[5:], headers, trailers)


def frame_message(message: bytes) -> bytes:
    """The 5-byte gRPC prefix (uncompressed, length) and the message."""
    return MESSAGE_PREFIX.pack(0, len(message)) + message
