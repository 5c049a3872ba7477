"""Rendering upstream replies and errors as HTTP/JSON bodies."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from edge.errors import InternalError
from edge.transcode.binding import BindingError, message_descriptor, resolve_field_path
from edge.transcode.http_body import HttpBodyReply, http_body_reply
from edge.transcode.json_codec import JsonCodec


class ResponseRenderer:
    """Serializes one method's replies, honouring the rule's ``response_body``.

    ``http_body`` is set when the replies (or their ``response_body`` field) are
    ``google.api.HttpBody``: the HTTP/JSON adapter then writes their bytes as they are
    (``edge.transcode.http_body``); ``render`` stays JSON for the protocols that carry
    messages (WebSocket frames).
    """

    __slots__ = ("_default", "_key", "_print", "http_body")

    def __init__(
        self, output_type: type[Message], response_body: str | None, codec: JsonCodec
    ) -> None:
        output = message_descriptor(output_type)
        self._print = codec.printer(output)  # compiled now, once
        self._key: str | None = None
        self._default: Any = None
        field: FieldDescriptor | None = None
        if response_body is not None:
            fields = resolve_field_path(output, response_body.split("."))
            if len(fields) != 1:
                raise BindingError(f"response_body {response_body!r} must name a top-level field")
            field = fields[0]
            self._key = field.name if codec.options.proto_field_names else field.json_name
            self._default = _json_default(field)
        self.http_body: HttpBodyReply | None = http_body_reply(output, field)

    def render(self, message: Message) -> bytes:
        """The reply's JSON; ``UnprintableReply`` when the upstream sent what proto3 JSON
        cannot express (a FieldMask path with capitals, a Timestamp out of range)."""
        try:
            if self._key is None:
                return orjson.dumps(self._print(message))
            # emit_defaults is not forced: an unset field renders as its JSON default below
            value = self._print(message).get(self._key, self._default)
            return orjson.dumps(value)
        except (json_format.Error, ValueError, TypeError) as exc:
            raise UnprintableReply(
                "the upstream's reply cannot be written as JSON",
                internal=f"{message.DESCRIPTOR.full_name}: {exc}",
            ) from exc


class UnprintableReply(InternalError):
    """A reply the upstream sent that has no proto3 JSON form: the upstream's fault, so a
    502 as for any reply the gateway cannot pass on; the gRPC code stays INTERNAL (no
    retry helps). Why it failed names fields and values: the log has it, the client not.
    """

    http_status = 502


def _json_default(field: FieldDescriptor) -> Any:
    if field.is_repeated:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {}
        return []
    kind = field.type
    if field.message_type is not None:
        return None if field.message_type.full_name.startswith("google.protobuf.") else {}
    if kind == FieldDescriptor.TYPE_STRING or kind == FieldDescriptor.TYPE_BYTES:
        return ""
    if kind == FieldDescriptor.TYPE_BOOL:
        return False
    if field.enum_type is not None:
        return field.enum_type.values[0].name
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return "0"
    return 0


def decode_details(raw: bytes, codec: JsonCodec) -> list[dict[str, Any]]:
    """The ``details`` of a ``grpc-status-details-bin`` trailer as proto3 JSON.

    A detail whose type is not in the registry still reaches the client, as
    ``{"@type": ..., "value": <base64>}``, rather than being dropped.
    """
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except DecodeError:
        return []
    return [_detail_json(detail, codec) for detail in status.details]


def _detail_json(detail: any_pb2.Any, codec: JsonCodec) -> dict[str, Any]:
    try:
        return codec.to_dict(detail)
    except (TypeError, KeyError, ValueError):
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}


def status_body(code: int, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The google.rpc.Status JSON body every error uses, on every protocol."""
    return orjson.dumps({"code": code, "message": message, "details": details or []})
