"""The JSON Schema of each proto3 JSON value, as the gateway reads and writes it (pure).

One schema serves requests and responses alike, so it is the wider of the two: what
``json_format`` accepts (and the gateway passes on), which includes all it writes. Per the
proto3 JSON mapping, integers are accepted as numbers or decimal strings and 64-bit ones
written as strings; floats as numbers or strings, with ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``; enums by name or number; bytes as standard or URL-safe base64. A string
holding a number carries a ``pattern`` that says its range exactly, so a client (or a
fuzzer) that keeps to the document is never refused for a value in it.

What the patterns leave out on purpose: spellings ``json_format`` also takes because it
reads numbers with Python's ``int()`` and ``float()`` (``"+1"``, ``"1_000"``, ``"1e3"``,
``"\\t12"``, non-ASCII digits, an enum given as ``true`` or ``2.5``). They are accepted
but not promised (docs/openapi.md).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor

FD = FieldDescriptor
Schema = dict[str, Any]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
FLOAT_MAX = 3.4028234663852886e38


def _at_most(limit: int) -> str:
    """A regex for the decimal numbers from 0 to ``limit``, leading zeros allowed."""
    digits = str(limit)
    options = []
    if len(digits) > 1:
        options.append(f"[0-9]{{1,{len(digits) - 1}}}")
    for index, digit in enumerate(digits):
        rest = len(digits) - index - 1
        if digit != "0":
            low = "0" if index else "1"
            top = int(digit) - 1
            if top >= int(low):
                span = low if top == int(low) else f"[{low}-{top}]"
                tail = f"[0-9]{{{rest}}}" if rest else ""
                options.append(digits[:index] + span + tail)
    options.append(digits)
    return "0*(" + "|".join(options) + ")"


def integer_pattern(low: int, high: int) -> str:
    """A regex for the decimal strings of the integers in ``[low, high]`` (low <= 0)."""
    if low == 0:
        return f"^({_at_most(high)}|-0+)$"
    return f"^(-{_at_most(-low)}|{_at_most(high)})$"


_FLOAT_PATTERN = r"^(NaN|-?Infinity|-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?)$"
# whole groups of four, then a tail of two or three with its padding, if any: the lengths
# a decoder takes ("A", "AAAAA" and "A=" are refused)
_BASE64_PATTERN = r"^([A-Za-z0-9+/_-]{4})*([A-Za-z0-9+/_-]{2}={0,2}|[A-Za-z0-9+/_-]{3}=?)?$"
NULL: Schema = {"type": "null"}


def _integer(fmt: str, low: int, high: int, *, as_string: bool) -> Schema:
    return {
        "type": ["string", "integer"] if as_string else ["integer", "string"],
        "format": fmt,
        "minimum": low,
        "maximum": high,
        "pattern": integer_pattern(low, high),
    }


_INT32 = _integer("int32", INT32_MIN, INT32_MAX, as_string=False)
_UINT32 = _integer("uint32", 0, UINT32_MAX, as_string=False)
_INT64 = _integer("int64", INT64_MIN, INT64_MAX, as_string=True)
_UINT64 = _integer("uint64", 0, UINT64_MAX, as_string=True)

# What a body field of each kind holds (its JSON form, read and written).
SCALARS: dict[int, Schema] = {
    FD.TYPE_DOUBLE: {"type": ["number", "string"], "format": "double", "pattern": _FLOAT_PATTERN},
    FD.TYPE_FLOAT: {
        "type": ["number", "string"],
        "format": "float",
        "minimum": -FLOAT_MAX,
        "maximum": FLOAT_MAX,
        "pattern": _FLOAT_PATTERN,
    },
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT64: _UINT64,
    FD.TYPE_FIXED64: _UINT64,
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {
        "type": "string",
        "format": "byte",
        "pattern": _BASE64_PATTERN,
        "description": "base64 (standard or URL-safe, padding optional)",
    },
}

# A query or path value is text in the URL: its schema is the plain JSON type a client
# would serialise (a number is written in decimal), with the same ranges.
QUERY_SCALARS: dict[int, Schema] = {
    **SCALARS,
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {
        "type": "number",
        "format": "float",
        "minimum": -FLOAT_MAX,
        "maximum": FLOAT_MAX,
    },
    **{
        kind: {"type": "integer", "format": fmt, "minimum": low, "maximum": high}
        for kind, (fmt, low, high) in {
            FD.TYPE_INT32: ("int32", INT32_MIN, INT32_MAX),
            FD.TYPE_SINT32: ("int32", INT32_MIN, INT32_MAX),
            FD.TYPE_SFIXED32: ("int32", INT32_MIN, INT32_MAX),
            FD.TYPE_UINT32: ("uint32", 0, UINT32_MAX),
            FD.TYPE_FIXED32: ("uint32", 0, UINT32_MAX),
        }.items()
    },
    **{
        kind: {"type": "string", "format": fmt, "pattern": integer_pattern(low, high)}
        for kind, (fmt, low, high) in {
            FD.TYPE_INT64: ("int64", INT64_MIN, INT64_MAX),
            FD.TYPE_SINT64: ("int64", INT64_MIN, INT64_MAX),
            FD.TYPE_SFIXED64: ("int64", INT64_MIN, INT64_MAX),
            FD.TYPE_UINT64: ("uint64", 0, UINT64_MAX),
            FD.TYPE_FIXED64: ("uint64", 0, UINT64_MAX),
        }.items()
    },
}

WRAPPED = {
    "DoubleValue": FD.TYPE_DOUBLE,
    "FloatValue": FD.TYPE_FLOAT,
    "Int64Value": FD.TYPE_INT64,
    "UInt64Value": FD.TYPE_UINT64,
    "Int32Value": FD.TYPE_INT32,
    "UInt32Value": FD.TYPE_UINT32,
    "BoolValue": FD.TYPE_BOOL,
    "StringValue": FD.TYPE_STRING,
    "BytesValue": FD.TYPE_BYTES,
}
WRAPPER_TYPES = frozenset(f"google.protobuf.{name}" for name in WRAPPED)
# well-known types whose JSON form is a string: they can come from a path or query value
STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
HTTP_BODY = "google.api.HttpBody"


def _timestamp_pattern() -> str:
    """RFC 3339 as json_format reads it, held to the Timestamp range (0001 to 9999 UTC).

    Real calendar days (29 February in leap years only), seconds 00-59 (no leap second)
    and offsets up to 23:59. An offset can carry a time on the first or last day past the
    range, so on 0001-01-01 only offsets at or behind UTC are allowed, and on 9999-12-31
    only those at or ahead of it: a few valid times on those two days are left out, never
    an invalid one let in. No lookarounds: generators (Hypothesis) must read it too.
    """
    day31, day30, day28 = (
        "(0[1-9]|[12][0-9]|3[01])",
        "(0[1-9]|[12][0-9]|30)",
        "(0[1-9]|1[0-9]|2[0-8])",
    )
    any_day = f"((0[13578]|1[02])-{day31}|(0[469]|11)-{day30}|02-{day28})"
    not_first = (
        f"(01-(0[2-9]|[12][0-9]|3[01])|(0[3578]|1[02])-{day31}|(0[469]|11)-{day30}|02-{day28})"
    )
    not_last = f"((0[13578]|10)-{day31}|12-{day30}|(0[469]|11)-{day30}|02-{day28})"
    middle_years = (
        "(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    )
    leap_years = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
    time = r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    offset = "([01][0-9]|2[0-3]):[0-5][0-9]"
    dates = f"({middle_years}-{any_day}|{leap_years}-02-29|0001-{not_first}|9999-{not_last})"
    return (
        f"^({dates}{time}(Z|[+-]{offset})"
        f"|0001-01-01{time}(Z|-{offset}|\\+00:00)"
        f"|9999-12-31{time}(Z|\\+{offset}|-00:00))$"
    )


_TIMESTAMP_PATTERN = _timestamp_pattern()
# Duration's range is +-315,576,000,000 seconds (about 10,000 years), json_format's check
_DURATION_PATTERN = f"^-?{_at_most(315_576_000_000)}(\\.[0-9]{{1,9}})?s$"


def nullable(schema: Schema) -> Schema:
    """The schema, or ``null``: proto3 JSON reads ``null`` as the field's default."""
    if not schema:
        return schema  # any JSON value (google.protobuf.Value) includes null
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list) and "enum" not in schema:
        return schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    description = schema.get("description")
    inner = {k: v for k, v in schema.items() if k != "description"}
    wrapped: Schema = {"anyOf": [inner, NULL]}
    if description:
        wrapped["description"] = description
    return wrapped


def well_known(unknown_fields_rejected: bool) -> dict[str, Schema]:
    """The JSON forms of the well-known types, as json_format reads and writes them."""
    empty: Schema = {"type": "object", "description": "An empty JSON object"}
    if unknown_fields_rejected:
        empty["additionalProperties"] = False
    return {
        "google.protobuf.Timestamp": {
            "type": "string",
            "format": "date-time",
            "pattern": _TIMESTAMP_PATTERN,
            "description": (
                "RFC 3339, years 0001 to 9999, up to nine fractional digits; written in "
                "UTC, e.g. `2024-05-01T12:30:00.5Z`"
            ),
        },
        "google.protobuf.Duration": {
            "type": "string",
            "pattern": _DURATION_PATTERN,
            "description": (
                "Seconds with up to nine fractional digits and an `s` suffix, e.g. `1.5s`"
            ),
        },
        "google.protobuf.FieldMask": {
            "type": "string",
            "pattern": r"^([A-Za-z0-9.]+(,[A-Za-z0-9.]+)*)?$",
            "description": "Comma-separated field paths in lowerCamelCase, e.g. `title,pageCount`",
        },
        "google.protobuf.Struct": {
            "type": "object",
            "additionalProperties": True,
            "description": "Any JSON object",
        },
        "google.protobuf.Value": {"description": "Any JSON value"},
        "google.protobuf.ListValue": {
            "type": "array",
            "items": {},
            "description": "Any JSON array",
        },
        "google.protobuf.Empty": empty,
        "google.protobuf.Any": {
            "type": "object",
            "properties": {
                "@type": {
                    "type": "string",
                    "description": (
                        "The type URL, e.g. `type.googleapis.com/google.rpc.BadRequest`"
                    ),
                }
            },
            "required": ["@type"],
            "additionalProperties": True,
            "description": (
                "A message of the type `@type` names, its fields beside `@type`; a "
                "well-known type with a non-object JSON form (Timestamp, wrappers...) is "
                "in `value`"
            ),
        },
        **{f"google.protobuf.{name}": nullable(SCALARS[kind]) for name, kind in WRAPPED.items()},
    }
