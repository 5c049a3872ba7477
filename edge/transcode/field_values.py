"""Fields of a request message as path and query parameters see them (pure, no I/O).

A path variable or query parameter names a field by a dotted path (proto or JSON names)
and carries its value as text. Here are the pieces both share: resolving the path to
field descriptors once per route, turning a text into the field's JSON form, and
refusing a value that does not fit in the same words a body error would use (the
``google.rpc.BadRequest`` detail names the parameter as the client wrote it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from edge.transcode.json_check import value_problem
from edge.transcode.json_codec import JsonCodec
from edge.transcode.json_words import quoted

FD = FieldDescriptor

# Well-known types whose JSON form is a string (so a query or path value can carry them).
_STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_WRAPPER_TYPES = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)

# Messages whose JSON form is not an object of their fields (a string, a number, any JSON
# value, or an object with ``@type``): a query name cannot reach inside one.
VALUE_FORM_TYPES = (
    _STRING_FORM_TYPES
    | _WRAPPER_TYPES
    | frozenset(f"google.protobuf.{name}" for name in ("Struct", "Value", "ListValue", "Any"))
)


class BindingError(ValueError):
    """An HTTP rule cannot be applied to its method's messages (a load-time problem)."""


UNFIT: Any = object()  # what a converter returns for a text it refuses

# Text of a query or path value -> its JSON form. A text that does not convert is passed
# on as it is, for the field check to refuse in the same words as in a body; bytes are
# held to strict base64 here (UNFIT), as json_format would skip the junk.
Converter = Callable[[str], Any]


def to_bool(text: str) -> bool | str:
    lowered = text.lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    return text


def _to_float(text: str) -> float | str:
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _to_enum(text: str) -> str | int:
    try:
        return int(text)
    except ValueError:
        return text


def _to_bytes(text: str) -> Any:
    # validate now so the error names the parameter; json_format takes either alphabet
    standard = text.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return UNFIT
    return text


def scalar_converter(field: FieldDescriptor) -> Converter | None:
    """How a text becomes ``field``'s JSON value; None when a text cannot carry it."""
    kind = field.type
    if kind == FD.TYPE_STRING:
        return str
    if kind == FD.TYPE_BOOL:
        return to_bool
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return _to_float
    if kind == FD.TYPE_ENUM:
        return _to_enum
    if kind == FD.TYPE_BYTES:
        return _to_bytes
    message = field.message_type
    if message is not None:
        if message.full_name in _STRING_FORM_TYPES:
            return str
        if message.full_name in _WRAPPER_TYPES:
            return scalar_converter(message.fields_by_name["value"])
        return None
    # integer kinds: json_format accepts decimal strings and range-checks them
    return str


def message_descriptor(message_type: type[Message]) -> Descriptor:
    """The descriptor of a message class (the stubs type it as a union of two impls)."""
    return cast(Descriptor, message_type.DESCRIPTOR)


def field_named(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """The field called ``name`` by its proto or JSON (lowerCamel) name."""
    field = descriptor.fields_by_name.get(name)
    if field is None:
        field = descriptor.fields_by_camelcase_name.get(name)
    return field


def resolve_field_path(descriptor: Descriptor, path: Sequence[str]) -> list[FieldDescriptor]:
    """Field descriptors along a dotted path; accepts proto and JSON (lowerCamel) names."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for index, name in enumerate(path):
        if current is None:
            raise BindingError(f"{'.'.join(path[:index])!r} is not a message field")
        field = field_named(current, name)
        if field is None:
            raise BindingError(f"{current.full_name} has no field {name!r}")
        if index < len(path) - 1 and (field.message_type is None or is_repeated(field)):
            raise BindingError(f"{'.'.join(path[: index + 1])!r} is not a singular message field")
        fields.append(field)
        current = field.message_type
    return fields


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(is_repeated(field) and message is not None and message.GetOptions().map_entry)


def set_path(target: dict[str, Any], names: Sequence[str], value: Any) -> None:
    """Set ``value`` at ``names``, making the objects on the way (``null`` counts as none).

    A value already on the way that is not an object is a ``TypeError``, never replaced:
    replacing it would silently drop what the client sent (binding refuses such bodies
    first, so this is a bug if it is ever raised).
    """
    for name in names[:-1]:
        child = target.get(name)
        if child is None:
            child = {}
            target[name] = child
        elif type(child) is not dict:
            raise TypeError(f"{name!r} holds a {type(child).__name__}, not an object")
        target = child
    target[names[-1]] = value


def get_path(data: dict[str, Any], names: Sequence[str]) -> Any:
    current: Any = data
    for name in names:
        if not isinstance(current, dict):
            return None
        current = current.get(name)
    return current


def check_value(
    codec: JsonCodec, field: FieldDescriptor, value: Any, text: str, kind: str, name: str
) -> None:
    """Refuse a query or path value that does not fit, in the words of a body error."""
    if value is UNFIT:
        problem: str | None = f"expected a base64 string, got {quoted(text)}"
    else:
        problem = value_problem(
            value,
            field,
            pool=codec.pool,
            ignore_unknown_fields=codec.options.ignore_unknown_fields,
        )
    if problem is not None:
        message = f"{kind} parameter {quoted(name)}: {problem}"
        raise codec.field_error(name, message, problem)
