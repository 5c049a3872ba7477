"""Connect's errors and the end of a stream, sans-IO: codes, statuses, error JSON.

A Connect error is a code name (``not_found``), a message and details (type name,
unpadded base64 bytes, optionally a ``debug`` JSON for people); a unary error travels as
a JSON body with the HTTP status the spec's table gives its code, a stream's as the
``error`` of the end-of-stream message, whose ``metadata`` carries the trailers. Both
directions are here: writing them for the adapter, reading them back for the tests and
for a Connect upstream some day. The framing and headers are ``connect_wire``'s.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from edge.ingress.connect_wire import (
    CONTENT_TYPE_JSON,
    FLAG_END_STREAM,
    Metadata,
    unary_trailer_headers,
)
from edge.ingress.grpc_web_reply import (
    metadata_entries,
)
from edge.ingress.grpc_web_wire import (
    encode_frame,
)

# The spec's "Error Codes" table: code name and the HTTP status of a unary error.
CODE_NAMES: dict[int, str] = {
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}

CODES_BY_NAME: dict[str, int] = {name: code for code, name in CODE_NAMES.items()}

HTTP_STATUS_BY_CODE: dict[int, int] = {
    1: 499,  # canceled: Client Closed Request
    2: 500,  # unknown
    3: 400,  # invalid_argument
    4: 504,  # deadline_exceeded: Gateway Timeout
    5: 404,  # not_found
    6: 409,  # already_exists: Conflict
    7: 403,  # permission_denied
    8: 429,  # resource_exhausted: Too Many Requests
    9: 400,  # failed_precondition
    10: 409,  # aborted: Conflict
    11: 400,  # out_of_range
    12: 501,  # unimplemented
    13: 500,  # internal
    14: 503,  # unavailable
    15: 500,  # data_loss
    16: 401,  # unauthenticated
}

# The spec's "HTTP to Error Code" table: the code a client infers from a bare status.
CODE_BY_HTTP_STATUS: dict[int, int] = {
    400: 13,  # internal
    401: 16,  # unauthenticated
    403: 7,  # permission_denied
    404: 12,  # unimplemented
    429: 14,  # unavailable
    502: 14,
    503: 14,
    504: 14,
}


def code_name(code: int) -> str:
    """The Connect name of a gRPC code number (``5`` -> ``not_found``).

    A number outside the table is ``unknown``, as connect-es treats an unknown
    ``grpc-status``. 0 (OK) has no name: a success is not an error; ValueError.
    """
    if code == 0:
        raise ValueError("code 0 (OK) is not an error and has no Connect error code")
    return CODE_NAMES.get(code, "unknown")


def code_from_name(name: str) -> int | None:
    """The gRPC code number of a Connect code name, or None for a name the spec lacks."""
    return CODES_BY_NAME.get(name)


def http_status_for_code(code: int) -> int:
    """The HTTP status of a unary error with this code, from the spec's table.

    It matches the gRPC <-> HTTP table of ``edge.transcode.status`` today, but it is the
    Connect spec's, kept apart so the JSON transcoding table can change alone.
    """
    return HTTP_STATUS_BY_CODE.get(code, 500)


def code_from_http_status(status: int) -> int:
    """The code a client infers from a non-200 status without a Connect error body."""
    return CODE_BY_HTTP_STATUS.get(status, 2)


class ErrorDetail(NamedTuple):
    """One error detail: the message's full type name, its serialized bytes, and an
    optional JSON rendering for people ("clients must not depend on" it)."""

    type: str
    value: bytes
    debug: Any = None


Details = Sequence[ErrorDetail | tuple[str, bytes]]


def details_from_status_bin(raw: bytes) -> list[ErrorDetail]:
    """The details of a ``grpc-status-details-bin`` (``google.rpc.Status``) as Connect's.

    The type name is the ``Any``'s type URL after its last ``/``, as connect-es reads it.
    Bytes that are not a Status give no details rather than an error: the status itself
    still reaches the client.
    """
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except DecodeError:
        return []
    return [
        ErrorDetail(detail.type_url.rsplit("/", 1)[-1], bytes(detail.value))
        for detail in status.details
    ]


def _unpadded(value: bytes) -> str:
    return base64.b64encode(value).rstrip(b"=").decode("ascii")


def error_object(code: int, message: str, details: Details = ()) -> dict[str, Any]:
    """The spec's ``Error`` as a dict: code name, message unless empty, details if any.

    Detail values are standard base64 without padding ("unpadded, base64-encoded binary
    Protobuf data"), as connect-es writes them (``std_raw``).
    """
    error: dict[str, Any] = {"code": code_name(code)}
    if message:
        error["message"] = message
    if details:
        rendered = []
        for detail in details:
            item: dict[str, Any] = {"type": detail[0], "value": _unpadded(detail[1])}
            if len(detail) > 2 and detail[2] is not None:
                item["debug"] = detail[2]
            rendered.append(item)
        error["details"] = rendered
    return error


def error_json(code: int, message: str, details: Details = ()) -> bytes:
    """The JSON body of a unary error response (its status: ``http_status_for_code``)."""
    return orjson.dumps(error_object(code, message, details))


def _grouped(metadata: Metadata) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in metadata_entries(metadata):
        grouped.setdefault(name, []).append(value)
    return grouped


def end_stream_json(
    code: int, message: str = "", details: Details = (), metadata: Metadata = ()
) -> bytes:
    """The spec's ``EndStreamResponse``: ``{"error": ..., "metadata": {name: [values]}}``.

    ``error`` only when ``code`` is not 0 ("successful RPCs must omit the property"),
    ``metadata`` only when there is some, so a success with no trailers is ``{}``.
    Metadata names are lower case and repeated names gather into one list; ``-bin``
    values are unpadded base64; values that cannot be sent are dropped (see
    ``grpc_web_wire.metadata_entries``).
    """
    body: dict[str, Any] = {}
    if code != 0:
        body["error"] = error_object(code, message, details)
    grouped = _grouped(metadata)
    if grouped:
        body["metadata"] = grouped
    return orjson.dumps(body)


def end_stream_envelope(
    code: int, message: str = "", details: Details = (), metadata: Metadata = ()
) -> bytes:
    """The last envelope of every streaming response (flag 0x02, the JSON end-stream)."""
    return encode_frame(FLAG_END_STREAM, end_stream_json(code, message, details, metadata))


def unary_error_response(
    code: int, message: str, details: Details = (), trailers: Metadata = ()
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a unary error: the spec's status for the code,
    ``application/json`` whatever the request's codec ("must be application/json"),
    the trailers as ``trailer-`` headers."""
    headers = [(b"content-type", CONTENT_TYPE_JSON.encode("ascii"))]
    headers.extend(unary_trailer_headers(trailers))
    return http_status_for_code(code), headers, error_json(code, message, details)


@dataclass(frozen=True, slots=True)
class ConnectError:
    """An ``Error`` read back: code number, message, details."""

    code: int
    message: str
    details: list[ErrorDetail] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EndStream:
    """An ``EndStreamResponse`` read back: the error (None on success) and metadata."""

    error: ConnectError | None
    metadata: dict[str, list[str]]


def _decode_any_base64(text: str) -> bytes:
    raw = text.encode("ascii")
    return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)


def parse_error(value: Any) -> ConnectError:
    """An ``Error`` object (already JSON-decoded); ValueError when it is not one.

    ``{}`` and ``{"code": null}`` are invalid, per the spec; an unknown code name reads
    as ``unknown``, as connect-es reads it; detail values may be padded or not.
    """
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        raise ValueError(f"not a Connect error: {value!r:.80}")
    code = CODES_BY_NAME.get(value["code"], 2)
    message = value.get("message")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise ValueError("a Connect error's message must be a string")
    details = []
    for detail in value.get("details") or []:
        if not isinstance(detail, dict):
            raise ValueError("a Connect error detail must be an object")
        kind, encoded = detail.get("type"), detail.get("value")
        if not isinstance(kind, str) or not isinstance(encoded, str):
            raise ValueError("a Connect error detail needs string type and value")
        try:
            data = _decode_any_base64(encoded)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"detail value is not base64: {exc}") from None
        details.append(ErrorDetail(kind, data, detail.get("debug")))
    return ConnectError(code, message, details)


def parse_error_json(body: bytes) -> ConnectError:
    """A unary error body read back (the reverse of ``error_json``); ValueError if not."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return parse_error(value)


def parse_end_stream(body: bytes) -> EndStream:
    """An end-stream message read back (the reverse of ``end_stream_json``)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("an end-stream message must be a JSON object")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(values, list) and all(isinstance(v, str) for v in values)
        for values in metadata.values()
    ):
        raise ValueError("end-stream metadata must map names to lists of strings")
    error = value.get("error")
    return EndStream(None if error is None else parse_error(error), metadata)
