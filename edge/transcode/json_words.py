"""How a JSON refusal is worded: where, what belongs there, what came (pure).

Shared by ``json_check`` (bodies) and ``binding`` (query and path values), so a field reads
the same whichever way it arrived. Anything taken from the client (a string, a key, a type
URL) is JSON-quoted, clipped and escaped before it is shown: a message is one printable
line whatever was sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

FD = FieldDescriptor

_SHOWN_CHARS = 64  # of a client's string echoed in a description
_SHOWN_PATH = 256  # of a field path; longer ones keep their end
_SHOWN_ENUM_NAMES = 8
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_TYPE_NAMES = {
    FD.TYPE_DOUBLE: "double",
    FD.TYPE_FLOAT: "float",
    FD.TYPE_INT64: "int64",
    FD.TYPE_UINT64: "uint64",
    FD.TYPE_INT32: "int32",
    FD.TYPE_FIXED64: "fixed64",
    FD.TYPE_FIXED32: "fixed32",
    FD.TYPE_UINT32: "uint32",
    FD.TYPE_SFIXED32: "sfixed32",
    FD.TYPE_SFIXED64: "sfixed64",
    FD.TYPE_SINT32: "sint32",
    FD.TYPE_SINT64: "sint64",
}
_MESSAGE_WORDS = {
    "google.protobuf.Timestamp": 'an RFC 3339 timestamp such as "2024-01-31T12:00:00Z"',
    "google.protobuf.Duration": 'a duration such as "1.5s"',
    "google.protobuf.FieldMask": (
        'a field mask such as "title,pageCount" (lowerCamelCase paths, comma-separated)'
    ),
    "google.protobuf.Struct": "an object",
    "google.protobuf.ListValue": "an array",
    "google.protobuf.Any": 'an object with "@type"',
}
UNICODE = "expected text without surrogate code points"


def quoted(text: str) -> str:
    """A client's string as a description shows it: JSON-quoted, clipped, always printable."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    # json.dumps escapes quotes and control characters; backslashreplace lone surrogates,
    # which no UTF-8 body (and no log line) can carry
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


def expected_scalar(field: FieldDescriptor) -> str:
    """What a scalar field's JSON value must be, in words."""
    kind = field.type
    if kind == FD.TYPE_STRING:
        return "a string"
    if kind == FD.TYPE_BYTES:
        return "a base64 string"
    if kind == FD.TYPE_BOOL:
        return "a boolean (true or false)"
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None
        return _expected_enum(field.enum_type)
    name = _TYPE_NAMES[kind]
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return f'a number ({name}) or "NaN", "Infinity", "-Infinity"'
    if field.cpp_type in (FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        return f"an integer ({name}, as a number or a string)"
    return f"an integer ({name})"


def _expected_enum(enum: EnumDescriptor) -> str:
    names = [value.name for value in enum.values]
    shown = ", ".join(names[:_SHOWN_ENUM_NAMES]) + (
        ", ..." if len(names) > _SHOWN_ENUM_NAMES else ""
    )
    return f"one of {shown} ({enum.full_name}) or a number"


def expected_message(descriptor: Descriptor) -> str:
    """What a message's JSON value must be, in words (well-known types by their forms)."""
    if descriptor.file.name == "google/protobuf/wrappers.proto":
        return expected_scalar(descriptor.fields_by_name["value"])
    name = descriptor.full_name
    return _MESSAGE_WORDS.get(name) or f"an object ({name})"


def got(value: Any) -> str:
    """What came instead, in words; a client's scalar is shown, a container named."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value that is not JSON"


def member(key: Any) -> str:
    """A path segment for an object key: ``.title``, or ``["odd key"]``."""
    text = key if isinstance(key, str) else str(key)
    return "." + text if _IDENTIFIER.match(text) else f"[{quoted(text)}]"


def render_path(path: list[str]) -> str:
    """Segments from ``member`` and ``[index]`` as one path; a very long one keeps its end."""
    text = "".join(path).removeprefix(".")
    return text if len(text) <= _SHOWN_PATH else "…" + text[-_SHOWN_PATH:]


def wrong(expected: str, value: Any, *, key: bool = False) -> str:
    """The one shape of a type error: ``expected <what>, got <what came>``."""
    if key:
        return f"expected the key to be {expected}, got {got(value)}"
    return f"expected {expected}, got {got(value)}"
