"""The frames of ``edge.grpc-ws.v1``, parsed and encoded (pure): no socket, no loop.

A socket carries one call. The client's frames are JSON text (or, with the binary
subprotocol, protobuf bytes for messages): ``{"metadata": {...}}`` first if at all (a
browser cannot set headers), ``{"message": ...}`` per request message, ``{"end": true}``
to half-close. The server answers ``{"headers": ...}``, ``{"message": ...}`` frames and
one final ``{"status": ..., "trailers": ...}``, then closes with 1000 on OK or ``4000 +
the gRPC code``. docs/websocket.md is the protocol's manual; this module is its grammar.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from edge.errors import BadRequest

SUBPROTOCOL = "edge.grpc-ws.v1"
BINARY_SUBPROTOCOL = "edge.grpc-ws.v1.binary"
CLOSE_OK = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012  # the config changed: reconnect (RFC 6455 7.4.1's registry)
CLOSE_STATUS_BASE = 4000  # 4000 + gRPC status code
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame's payload is at most 125

# Metadata a first frame may not set: transport headers, and what the gateway itself
# sets from the handshake (a page must not forge its client's address or host).
RESERVED_METADATA = frozenset(
    {
        "connection",
        "te",
        "upgrade",
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "forwarded",
    }
)


@dataclass(frozen=True, slots=True)
class MetadataFrame:
    pairs: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class MessageFrame:
    body: bytes  # the message's JSON, to bind like an HTTP body


@dataclass(frozen=True, slots=True)
class EndFrame:
    pass


Frame = MetadataFrame | MessageFrame | EndFrame


def choose_subprotocol(offered: Sequence[str]) -> tuple[str, bool] | None:
    """The subprotocol to accept and whether messages are binary; None if none is ours."""
    if BINARY_SUBPROTOCOL in offered:
        return BINARY_SUBPROTOCOL, True
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL, False
    return None


def parse_text_frame(text: str, *, first: bool, token_refusal: str | None) -> Frame:
    """One client text frame; BadRequest names what is wrong with it.

    ``token_refusal``: why an ``authorization`` entry in the first frame's metadata is
    refused (the handshake carried a token, or tokens go on the handshake); None when
    the token may come here.
    """
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON frame: {exc}") from exc
    if not isinstance(frame, dict) or len(frame) != 1:
        raise BadRequest('a frame is one of {"metadata": ...}, {"message": ...}, {"end": true}')
    ((kind, value),) = frame.items()
    if kind == "message":
        return MessageFrame(orjson.dumps(value))
    if kind == "metadata":
        if not first:
            raise BadRequest("metadata may only come in the first frame")
        return MetadataFrame(parse_metadata(value, token_refusal=token_refusal))
    if kind == "end":
        if value is not True:
            raise BadRequest('the half-close frame is {"end": true}')
        return EndFrame()
    raise BadRequest(f"unknown frame kind {kind!r}")


def parse_metadata(value: object, *, token_refusal: str | None) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        raise BadRequest("metadata must be an object of string values")
    pairs = []
    for key, item in value.items():
        name = str(key).lower()
        if not isinstance(item, str):
            raise BadRequest(f"metadata value for {name!r} must be a string")
        if name in RESERVED_METADATA or name.startswith(("grpc-", ":")):
            raise BadRequest(f"metadata key {name!r} is reserved")
        if name.endswith("-bin"):
            raise BadRequest("binary (-bin) metadata is not accepted over WebSocket")
        if name == "authorization" and token_refusal is not None:
            raise BadRequest(token_refusal)
        pairs.append((name, item))
    return pairs


def metadata_json(pairs: Sequence[tuple[str, str | bytes]]) -> dict[str, str]:
    """Metadata as a frame's object: repeated keys joined by commas, ``-bin`` as base64."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("grpc-") or key.startswith(":"):
            continue
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


def headers_frame(pairs: Sequence[tuple[str, str | bytes]]) -> bytes:
    return orjson.dumps({"headers": metadata_json(pairs)})


def message_frame(message_json: bytes) -> str:
    return '{"message":' + message_json.decode() + "}"


def status_frame(
    status_json: bytes, trailers: Sequence[tuple[str, str | bytes]] | None = None
) -> bytes:
    """The final frame: a ``google.rpc.Status`` (already JSON) and the call's trailers."""
    if trailers is None:
        return b'{"status":' + status_json + b"}"
    return (
        b'{"status":' + status_json + b',"trailers":' + orjson.dumps(metadata_json(trailers)) + b"}"
    )


def close_reason(message: str) -> str:
    """A close reason within RFC 6455's limit, cut on a character boundary."""
    return message.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
