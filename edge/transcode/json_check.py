"""Why a JSON value does not fit a message type, in words a client can act on (pure).

protobuf's ``json_format.ParseDict`` decides what the gateway accepts. When it refuses, its
words are Python's (``object of type 'int' has no len()``, ``Failed to parse book field:
Failed to parse title field: ...``), some of its failures are not even ``ParseError``s,
and none names the place the way the client wrote it. ``find_violation`` walks the refused
value by ParseDict's rules, in ParseDict's order, and returns the first place that breaks
them: the field path as the client spelled it (``book.tags[2]``, ``labels["k"]``,
``any["@type"]``) and what belongs there (``expected a string, got 3``, worded by
``json_words``). ``value_problem`` and ``quick_fit`` do the same for one query or path value.

It runs only after ParseDict has refused, so accepted requests never pay for it. Where a
rule rests on a primitive (``int()`` and ``float()`` of strings, base64, the RFC 3339
parser of ``Timestamp``, the descriptors' own lookups) it calls that same primitive, so the
two cannot drift apart there; ``tests/unit/test_json_errors.py`` holds the rest to
ParseDict's verdict on random input. Not mirrored: custom enum JSON names
(``pb.enumvalue.json``) and extensions of extendable proto2 messages beyond a lookup by
full name, neither of which a request type in practice uses.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from edge.transcode.json_words import (
    UNICODE,
    expected_message,
    expected_scalar,
    got,
    member,
    quoted,
    render_path,
    wrong,
)

FD = FieldDescriptor

MAX_DEPTH = 100  # ParseDict's max_recursion_depth: messages nested deeper are refused

# json_format's own pattern: keys like "[pkg.ext]" name extensions
_EXTENSION_NAME = re.compile(r"\[[a-zA-Z0-9\._]*\]$")
_DECIMAL = re.compile(r"-?[0-9]{1,20}")

_FLOAT_MAX: float = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
_INT32 = (-(2**31), 2**31 - 1)
_RANGES = {
    FD.CPPTYPE_INT32: _INT32,
    FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# what a library call may raise on a value that does not fit (ParseDict lets some of these
# out unwrapped: a KeyError for an Any without "value", an AttributeError for a non-string
# "@type" or field mask)
LIBRARY_REFUSALS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    OverflowError,
)

_ANY = "google.protobuf.Any"
_VALUE = "google.protobuf.Value"
_NULL_VALUE = "google.protobuf.NullValue"
_STRUCT = "google.protobuf.Struct"
_LIST = "google.protobuf.ListValue"
_STRING_FORMS: dict[str, Any] = {  # checked by parsing into a scratch message
    "google.protobuf.Timestamp": timestamp_pb2.Timestamp,
    "google.protobuf.Duration": duration_pb2.Duration,
    "google.protobuf.FieldMask": field_mask_pb2.FieldMask,
}
_SKIP: Any = object()  # an unknown enum name that ignore_unknown_fields drops


@dataclass(frozen=True, slots=True)
class Violation:
    """The first place a JSON value breaks its message type's rules."""

    field: str  # the path as the client spelled it; "" for the value as a whole
    description: str  # what belongs there, and what came instead

    @property
    def message(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


def find_violation(
    value: Any,
    descriptor: Descriptor,
    *,
    pool: descriptor_pool.DescriptorPool,
    ignore_unknown_fields: bool,
) -> Violation | None:
    """Where and why ``value`` cannot be ``descriptor``'s JSON form; None if it can.

    ``pool`` resolves ``Any`` type URLs, as ParseDict's ``descriptor_pool`` does.
    """
    walk = _Walk(pool, ignore_unknown_fields)
    try:
        walk.message(value, descriptor)
    except _Refused as refused:
        return Violation(refused.path, refused.description)
    return None


def value_problem(
    value: Any,
    field: FieldDescriptor,
    *,
    pool: descriptor_pool.DescriptorPool,
    ignore_unknown_fields: bool,
) -> str | None:
    """What is wrong with ``value`` as one value of ``field`` (one element if repeated)."""
    walk = _Walk(pool, ignore_unknown_fields)
    try:
        if field.message_type is not None:
            walk.message(value, field.message_type)
        else:
            walk.scalar(value, field)
    except _Refused as refused:
        where = refused.path
        return f"{where}: {refused.description}" if where else refused.description
    return None


def quick_fit(field: FieldDescriptor) -> Callable[[Any], bool]:
    """A cheap test passed by the commonest fitting values of ``field`` (one element).

    For query and path values, on every request: what passes surely fits; what fails goes
    to ``value_problem`` for the full rules and the words. Sound, not complete: the
    well-known types, bytes and the rarer spellings always take the full check.
    """
    kind = field.cpp_type
    if field.message_type is not None:
        message = field.message_type
        if message.file.name == "google/protobuf/wrappers.proto":
            return quick_fit(message.fields_by_name["value"])
        return _never
    if kind in _RANGES:
        low, high = _RANGES[kind]

        def integer(value: Any) -> bool:
            if type(value) is str:
                if not _DECIMAL.fullmatch(value):
                    return False
                value = int(value)
            return type(value) is int and low <= value <= high

        return integer
    if kind in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        limit = _FLOAT_MAX if kind == FD.CPPTYPE_FLOAT else math.inf

        def number(value: Any) -> bool:
            if type(value) is float:
                return -limit <= value <= limit and math.isfinite(value)
            return value in ("NaN", "Infinity", "-Infinity")

        return number
    if kind == FD.CPPTYPE_BOOL:
        return lambda value: type(value) is bool
    if kind == FD.CPPTYPE_ENUM:
        assert field.enum_type is not None
        names = frozenset(field.enum_type.values_by_name)
        return lambda value: type(value) is str and value in names
    if field.type == FD.TYPE_BYTES:
        return _never
    return lambda value: type(value) is str and (value.isascii() or _encodable(value))


def _never(value: Any) -> bool:
    return False


class _Refused(Exception):
    """The walk's way out at the first violation; each level it leaves adds its segment,
    so a value that fits never pays for building paths."""

    def __init__(self, description: str, *segments: str) -> None:
        super().__init__(description)
        self.description = description
        self.segments = list(segments)  # innermost first

    def at(self, segment: str) -> _Refused:
        self.segments.append(segment)
        return self

    @property
    def path(self) -> str:
        return render_path(self.segments[::-1])


class _Walk:
    """One walk over one value: ParseDict's ``_Parser``, checking instead of converting."""

    __slots__ = ("depth", "ignore", "json_names", "pool")

    def __init__(self, pool: descriptor_pool.DescriptorPool, ignore: bool) -> None:
        self.pool = pool
        self.ignore = ignore
        self.depth = 0
        self.json_names: dict[str, dict[str, FieldDescriptor]] = {}

    # -- messages (ParseDict's ConvertMessage) -------------------------------------------

    def message(self, value: Any, descriptor: Descriptor) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nested too deeply (more than {MAX_DEPTH} levels)")
        name = descriptor.full_name
        if descriptor.file.name == "google/protobuf/wrappers.proto":
            self.scalar(value, descriptor.fields_by_name["value"])
        elif name in _STRING_FORMS:
            try:
                _STRING_FORMS[name]().FromJsonString(value)
            except LIBRARY_REFUSALS:
                raise _Refused(wrong(expected_message(descriptor), value)) from None
        elif name == _ANY:
            self.any(value)
        elif name == _VALUE:
            self.json_value(value)
        elif name == _STRUCT:
            if not isinstance(value, dict):
                raise _Refused(wrong("an object", value))
            for key, item in value.items():
                try:
                    if not isinstance(key, str) or not _encodable(key):
                        raise _Refused(UNICODE)
                    self.message(item, struct_pb2.Value.DESCRIPTOR)
                except _Refused as refused:
                    raise refused.at(member(key)) from None
        elif name == _LIST:
            if not isinstance(value, (list, tuple)):
                raise _Refused(wrong("an array", value))
            for index, item in enumerate(value):
                try:
                    self.message(item, struct_pb2.Value.DESCRIPTOR)
                except _Refused as refused:
                    raise refused.at(f"[{index}]") from None
        else:
            self.fields(value, descriptor)
        self.depth -= 1

    def json_value(self, value: Any) -> None:
        if isinstance(value, dict):
            self.message(value, struct_pb2.Struct.DESCRIPTOR)
        elif isinstance(value, (list, tuple)):
            self.message(value, struct_pb2.ListValue.DESCRIPTOR)
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)  # number_value is a double
            except OverflowError:
                raise _Refused(wrong("a number a double can hold", value)) from None
        elif isinstance(value, str):
            if not _encodable(value):
                raise _Refused(UNICODE)
        elif value is not None and not isinstance(value, (float, bool)):
            raise _Refused(wrong("a JSON value", value))

    def any(self, value: Any) -> None:
        if isinstance(value, dict) and not value:
            return
        if not isinstance(value, dict):
            raise _Refused(wrong('an object with "@type"', value))
        if "@type" not in value:
            missing = 'missing: an Any names its type ("type.googleapis.com/...")'
            raise _Refused(missing, '["@type"]')
        url = value["@type"]
        if not isinstance(url, str) or not _encodable(url):
            raise _Refused(wrong("a type URL", url), '["@type"]')
        try:
            descriptor = self.pool.FindMessageTypeByName(url.split("/")[-1])
        except LIBRARY_REFUSALS:
            raise _Refused(wrong("the type URL of a known message", url), '["@type"]') from None
        name = descriptor.full_name
        wrapper = descriptor.file.name == "google/protobuf/wrappers.proto"
        if wrapper or name in _STRING_FORMS or name in (_ANY, _VALUE, _STRUCT, _LIST):
            if "value" not in value:
                raise _Refused(f"missing: an Any of {name} holds it here", ".value")
            try:
                if wrapper:
                    self.scalar(value["value"], descriptor.fields_by_name["value"])
                else:
                    self.message(value["value"], descriptor)
            except _Refused as refused:
                raise refused.at(".value") from None
        else:
            self.fields(value, descriptor, skip_type=True)

    # -- fields (ParseDict's _ConvertFieldValuePair) -------------------------------------

    def fields(self, value: Any, descriptor: Descriptor, *, skip_type: bool = False) -> None:
        if not isinstance(value, dict):
            self.not_an_object(value, descriptor)
            return
        names: list[str] = []  # ParseDict's list: the keys seen and the oneofs set
        oneof_keys: dict[str, tuple[str, FieldDescriptor]] = {}
        for key, item in value.items():
            if skip_type and key == "@type":
                continue
            try:
                field = self.field_named(descriptor, key)
                if field is None:
                    if self.ignore:
                        continue
                    raise _Refused(f"unknown field: {descriptor.full_name} has no {quoted(key)}")
                if key in names:
                    raise _Refused("given twice")
                names.append(key)
                oneof = field.containing_oneof
                if oneof is not None and item is not None:
                    if oneof.name in names:
                        other, other_field = oneof_keys[oneof.name]
                        if other_field is field:
                            raise _Refused(f"given twice (also as {quoted(other)})")
                        raise _Refused(
                            f'only one field of oneof "{oneof.name}" may be set; {quoted(other)} is'
                        )
                    names.append(oneof.name)
                    oneof_keys[oneof.name] = (key, field)
                self.field(item, field)
            except _Refused as refused:
                raise refused.at(member(key)) from None

    def not_an_object(self, value: Any, descriptor: Descriptor) -> None:
        """ParseDict iterates whatever it is given: ``[]``, ``""`` and, when unknown
        fields are ignored, arrays and strings of unknown names pass as an empty message."""
        if isinstance(value, (str, list, tuple)):
            try:
                if (self.ignore or not value) and all(
                    isinstance(name, str) and self.field_named(descriptor, name) is None
                    for name in value
                ):
                    return
            except _Refused:
                pass
        raise _Refused(wrong(expected_message(descriptor), value))

    def field_named(self, descriptor: Descriptor, key: Any) -> FieldDescriptor | None:
        if not isinstance(key, str) or not _encodable(key):
            raise _Refused(f"unknown field: {descriptor.full_name} has no {got(key)}")
        by_json = self.json_names.get(descriptor.full_name)
        if by_json is None:
            by_json = {field.json_name: field for field in descriptor.fields}
            self.json_names[descriptor.full_name] = by_json
        field = by_json.get(key) or descriptor.fields_by_name.get(key)
        if field is None and _EXTENSION_NAME.match(key):
            if not descriptor.is_extendable:
                raise _Refused(f"unknown field: {descriptor.full_name} has no extensions")
            return self.extension(descriptor, key[1:-1])
        return field

    def extension(self, descriptor: Descriptor, identifier: str) -> FieldDescriptor | None:
        for name in (identifier, identifier.rpartition(".")[0]):
            try:
                found = self.pool.FindExtensionByName(name)
            except KeyError:
                continue
            owner = found.containing_type
            if owner is not None and owner.full_name == descriptor.full_name:
                return found
        return None

    def field(self, value: Any, field: FieldDescriptor) -> None:
        message = field.message_type
        if value is None:  # clears the field; a Value or NullValue field takes it as null...
            takes_null = (message is not None and message.full_name == _VALUE) or (
                field.enum_type is not None and field.enum_type.full_name == _NULL_VALUE
            )
            if takes_null and field.is_repeated:  # ...which a repeated one cannot hold
                raise _Refused(wrong("an array", value))
            return
        if message is not None and message.GetOptions().map_entry:
            self.map(value, message)
        elif field.is_repeated:
            if not isinstance(value, (list, tuple)):
                raise _Refused(wrong("an array", value))
            for index, item in enumerate(value):
                try:
                    if message is not None:
                        self.message(item, message)
                    else:
                        self.scalar(item, field)
                except _Refused as refused:
                    raise refused.at(f"[{index}]") from None
        elif message is not None:
            self.message(value, message)
        else:
            self.scalar(value, field)

    def map(self, value: Any, entry: Descriptor) -> None:
        if not isinstance(value, dict):
            raise _Refused(wrong("an object (a map)", value))
        key_field = entry.fields_by_name["key"]
        value_field = entry.fields_by_name["value"]
        for key, item in value.items():
            try:
                number = self.convert(key, key_field, key=True)
                if value_field.message_type is not None:
                    self.in_range(number, key, key_field, key=True)
                    self.message(item, value_field.message_type)
                    continue
                converted = self.convert(item, value_field)
                if converted is _SKIP:
                    continue
                self.in_range(number, key, key_field, key=True)
                self.in_range(converted, item, value_field)
            except _Refused as refused:
                raise refused.at(f"[{quoted(key) if isinstance(key, str) else key}]") from None

    # -- scalars (ParseDict's _ConvertScalarFieldValue, then the setattr) ----------------

    def scalar(self, value: Any, field: FieldDescriptor) -> None:
        converted = self.convert(value, field)
        if converted is not _SKIP:
            self.in_range(converted, value, field)

    def convert(self, value: Any, field: FieldDescriptor, *, key: bool = False) -> Any:
        """The value ParseDict would set, or _SKIP; refuses what it would refuse."""
        cpp = field.cpp_type
        if cpp in _RANGES:
            number = _integer(value)
            if number is None:
                raise _Refused(wrong(expected_scalar(field), value, key=key))
            return number
        if cpp in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
            problem = _float_problem(value, single=cpp == FD.CPPTYPE_FLOAT)
            if problem is not None:
                raise _Refused(wrong(problem or expected_scalar(field), value))
            return value
        if cpp == FD.CPPTYPE_BOOL:
            if key:
                if value not in ("true", "false"):
                    raise _Refused(wrong('"true" or "false"', value, key=True))
            elif not isinstance(value, bool):
                raise _Refused(wrong(expected_scalar(field), value))
            return value
        if cpp == FD.CPPTYPE_STRING:
            if field.type == FD.TYPE_BYTES:
                fits = _is_base64(value)
            else:
                fits = isinstance(value, str) and _encodable(value)
            if not fits:
                raise _Refused(wrong(expected_scalar(field), value, key=key))
            return value
        return self.enum(value, field)

    def enum(self, value: Any, field: FieldDescriptor) -> Any:
        enum = field.enum_type
        assert enum is not None
        try:
            if isinstance(value, str) and not _encodable(value):
                raise ValueError("surrogates")  # the lookups below would raise SystemError
            known = enum.values_by_name.get(value)
            if known is not None:
                return known.number
            try:
                number = int(value)
            except ValueError:
                if self.ignore:  # an unknown name is dropped, like an unknown field
                    return _SKIP
                raise
            known = enum.values_by_number.get(number)
        except LIBRARY_REFUSALS:
            raise _Refused(wrong(expected_scalar(field), value)) from None
        if known is not None:
            return known.number
        if enum.is_closed:
            raise _Refused(wrong(expected_scalar(field), value))
        return number

    def in_range(
        self, converted: Any, value: Any, field: FieldDescriptor, *, key: bool = False
    ) -> None:
        cpp = field.cpp_type
        limits = _RANGES.get(cpp) or (_INT32 if cpp == FD.CPPTYPE_ENUM else None)
        if limits is None:
            return
        low, high = limits
        if not low <= converted <= high:
            expected = f"{expected_scalar(field)} from {low} to {high}"
            if cpp == FD.CPPTYPE_ENUM:
                expected = f"{expected_scalar(field)}, numbers from {low} to {high}"
            raise _Refused(wrong(expected, value, key=key))


def _encodable(text: str) -> bool:
    """Whether protobuf can hold ``text``: no surrogate code points, paired or not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _integer(value: Any) -> int | None:
    """json_format's integer rule: numbers and strings of whole numbers, never booleans."""
    if isinstance(value, float) and not value.is_integer():
        return None
    if isinstance(value, str) and " " in value:
        return None
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)  # "1e3" is 1000
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    except (TypeError, OverflowError):
        return None


def _float_problem(value: Any, *, single: bool) -> str | None:
    """None when json_format takes ``value`` as a float or double; "" or words when not."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        if single and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
            return "a number (float) from -3.4028235e+38 to 3.4028235e+38"
    if value == "nan":
        return ""
    try:
        float(value)
    except ValueError:
        return None if value in ("-Infinity", "Infinity", "NaN") else ""
    except (TypeError, OverflowError):
        return ""
    return None


def _is_base64(value: Any) -> bool:
    """json_format's bytes rule: either base64 alphabet, padding optional, junk skipped."""
    if isinstance(value, str):
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    elif isinstance(value, bytes):
        encoded = value
    else:
        return False
    try:
        base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except ValueError:
        return False
    return True
