"""``google.api.HttpBody`` replies: a message's bytes as the HTTP body itself (pure).

A method that answers with ``google.api.HttpBody`` (or whose rule's ``response_body``
names a field of that type) is not transcoded to JSON: its ``data`` is the response body
and its ``content_type`` the ``Content-Type``, as grpc-gateway's ``HTTPBodyMarshaler``
and Envoy's transcoder do, so a method can serve a download, an image or a CSV file.
``extensions`` is ignored. A server stream of them writes each message's ``data`` as it
arrives, with no framing, under the first message's ``content_type``.

Whether a route answers this way is decided once, when its renderer is built, so the
JSON path pays nothing for it. The content type comes from the upstream and becomes a
header, so it is checked: a value that is not a plain media type (empty, non-ASCII, CR or
LF, controls) becomes ``application/octet-stream`` rather than a header the client (or
Hypercorn, which refuses such a header) would choke on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

HTTP_BODY = "google.api.HttpBody"
DEFAULT_CONTENT_TYPE = b"application/octet-stream"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# type "/" subtype, then parameters of printable ASCII (RFC 9110 media-type, leniently)
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[\x20-\x7e\t]*)?", re.ASCII)


def is_http_body(descriptor: Descriptor | None) -> bool:
    return descriptor is not None and descriptor.full_name == HTTP_BODY


def content_type_header(value: str) -> bytes:
    """The ``Content-Type`` for an HttpBody's ``content_type``; octet-stream when unusable."""
    value = value.strip(" \t")
    if value and _MEDIA_TYPE.fullmatch(value):
        return value.encode("ascii")
    return DEFAULT_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class HttpBodyReply:
    """Where a route's replies keep their HttpBody: the reply itself, or one of its fields."""

    field: str | None = None  # the ``response_body`` field's name; None: the reply is one

    def body_of(self, message: Message) -> Message:
        return message if self.field is None else getattr(message, self.field)

    def content_type(self, message: Message) -> bytes:
        body: Message = self.body_of(message)
        return content_type_header(body.content_type)  # type: ignore[attr-defined]

    def data(self, message: Message) -> bytes:
        body: Message = self.body_of(message)
        return body.data  # type: ignore[attr-defined,no-any-return]

    def parts(self, message: Message) -> tuple[bytes, bytes]:
        """``Content-Type`` and body of a unary reply."""
        body: Message = self.body_of(message)
        return content_type_header(body.content_type), body.data  # type: ignore[attr-defined]


def http_body_reply(
    output: Descriptor, response_body: FieldDescriptor | None
) -> HttpBodyReply | None:
    """How a route's replies are HttpBody (None: they are JSON), from its output type and
    the field its ``response_body`` names (a repeated field never is)."""
    if response_body is None:
        return HttpBodyReply() if is_http_body(output) else None
    if not response_body.is_repeated and is_http_body(response_body.message_type):
        return HttpBodyReply(response_body.name)
    return None
