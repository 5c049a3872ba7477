"""A fast path for the commonest request bodies: flat objects of plain scalar fields.

``json_format.ParseDict`` costs about 4 µs for a one-field request, nearly all of it
deciding per field what the field is. Most requests (``{"name": "shelves/1/books/1"}``,
path and query parameters bound into the same dict) only set strings, whole numbers,
booleans and enums by name. For those, a per-type table made once says which JSON keys
name which plain fields; a body that is all such keys with values of exactly the right
JSON type is set directly. Anything else (any other field kind, a oneof, a null, a number
as a string, an unknown key, a key given twice by its two names) goes to ``ParseDict``
whole, so every error message and every edge of the mapping stays json_format's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_NO: Any = object()  # not for the fast path
Check = Callable[[Any], Any]

_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _string(value: Any) -> Any:
    return value if type(value) is str else _NO


def _bool(value: Any) -> Any:
    return value if type(value) is bool else _NO


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> Any:
        return value if type(value) is int and low <= value <= high else _NO

    return check


def _enum(names: Mapping[str, int]) -> Check:
    def check(value: Any) -> Any:
        return names.get(value, _NO) if type(value) is str else _NO

    return check


def plain_fields(descriptor: Descriptor) -> dict[str, tuple[str, Check]]:
    """JSON key (json name and proto name) -> (attribute, check) for the plain fields.

    Empty for the well-known types, whose JSON is not an object of their fields. A key
    is looked up as ParseDict does: as a json name first, then as a field name, so a
    field whose name is another's json name is reached by that name only through
    ParseDict (no entry here).
    """
    table: dict[str, tuple[str, Check]] = {}
    if descriptor.file.name.startswith("google/protobuf/"):
        return table
    json_names = {field.json_name for field in descriptor.fields}
    for field in descriptor.fields:
        if field.is_repeated or field.containing_oneof is not None:
            continue
        cpp = field.cpp_type
        check: Check
        if cpp == FieldDescriptor.CPPTYPE_STRING and field.type == FieldDescriptor.TYPE_STRING:
            check = _string
        elif cpp == FieldDescriptor.CPPTYPE_BOOL:
            check = _bool
        elif cpp in _RANGES:
            check = _integer(*_RANGES[cpp])
        elif cpp == FieldDescriptor.CPPTYPE_ENUM:
            assert field.enum_type is not None
            if field.enum_type.full_name == "google.protobuf.NullValue":
                continue
            check = _enum({v.name: v.number for v in field.enum_type.values})
        else:
            continue
        table[field.json_name] = (field.name, check)
        if field.name not in json_names:
            table.setdefault(field.name, (field.name, check))
    return table


def fast_values(table: Mapping[str, tuple[str, Check]], data: Mapping[str, Any]) -> Any:
    """(attribute, value) pairs to set, or ``_NO`` when ParseDict must do it."""
    pairs = []
    seen = set()
    for key, value in data.items():
        spec = table.get(key)
        if spec is None:
            return _NO
        name, check = spec
        checked = check(value)
        if checked is _NO or name in seen:
            return _NO
        seen.add(name)
        pairs.append((name, checked))
    return pairs


NOT_FAST = _NO
