"""JSON Schemas for proto messages and enums under the proto3 JSON mapping (pure).

One component per message or enum type, named by its full proto name, reached through
``$ref`` so recursive messages need no special case. Property names are the JSON names
(or the proto names when ``transcoding.proto_field_names`` is set), 64-bit integers are
strings, bytes are base64 strings, enums are their value names, maps are objects and the
well-known types have their JSON forms (Timestamp an RFC 3339 string, wrappers nullable
scalars, Struct any object, and so on), exactly as ``json_format`` reads and writes them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from edge.openapi.comments import Comments

FD = FieldDescriptor
Schema = dict[str, Any]
REF_PREFIX = "#/components/schemas/"

_UINT32_MAX = 4_294_967_295
_SCALARS: dict[int, Schema] = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT64: {"type": "string", "format": "int64"},
    FD.TYPE_SINT64: {"type": "string", "format": "int64"},
    FD.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FD.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": _UINT32_MAX},
    FD.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": _UINT32_MAX},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte", "description": "base64"},
}

_WRAPPED = {
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
WRAPPER_TYPES = frozenset(f"google.protobuf.{name}" for name in _WRAPPED)
# well-known types whose JSON form is a string: they can come from a path or query value
STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)


def _nullable(kind: int) -> Schema:
    schema = dict(_SCALARS[kind])
    schema["type"] = [schema["type"], "null"]
    return schema


_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 in UTC, e.g. `2024-05-01T12:30:00.5Z`",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Seconds with up to nine fractional digits and an `s` suffix, e.g. `1.5s`",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase, e.g. `title,pageCount`",
    },
    "google.protobuf.Struct": {
        "type": "object",
        "additionalProperties": True,
        "description": "Any JSON object",
    },
    "google.protobuf.Value": {"description": "Any JSON value"},
    "google.protobuf.ListValue": {"type": "array", "items": {}, "description": "Any JSON array"},
    "google.protobuf.Empty": {"type": "object", "description": "An empty JSON object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {
            "@type": {
                "type": "string",
                "description": "The type URL, e.g. `type.googleapis.com/google.rpc.BadRequest`",
            }
        },
        "required": ["@type"],
        "additionalProperties": True,
        "description": (
            "A message of the type `@type` names, its fields beside `@type`; a well-known "
            "type with a non-object JSON form (Timestamp, wrappers...) is in `value`"
        ),
    },
    **{f"google.protobuf.{name}": _nullable(kind) for name, kind in _WRAPPED.items()},
}


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(field.is_repeated and message is not None and message.GetOptions().map_entry)


def _with_description(schema: Schema, description: str | None) -> Schema:
    if not description:
        return schema
    existing = schema.get("description")
    text = description if not existing or "$ref" in schema else f"{description}\n\n{existing}"
    return {**schema, "description": text}


class SchemaBuilder:
    """Collects the component schemas reached from the operations' messages.

    ``ref`` registers a message or enum and returns the ``$ref`` to it; ``components``
    builds every type registered, and every type those use, and returns the name-sorted
    collection. Types are built from a work list, never by recursion, so a chain of
    message types thousands deep is documented like any other (one component each).
    """

    def __init__(
        self, comments: Comments, *, proto_field_names: bool = False, enums_as_ints: bool = False
    ) -> None:
        self._comments = comments
        self._proto_field_names = proto_field_names
        self._enums_as_ints = enums_as_ints
        self._schemas: dict[str, Schema] = {}
        self._pending: list[Descriptor | EnumDescriptor] = []

    def components(self) -> dict[str, Schema]:
        while self._pending:
            descriptor = self._pending.pop()
            if isinstance(descriptor, Descriptor):
                self._schemas[descriptor.full_name] = self._message(descriptor)
            else:
                self._schemas[descriptor.full_name] = self._enum(descriptor)
        return dict(sorted(self._schemas.items()))

    def ref(self, descriptor: Descriptor | EnumDescriptor) -> Schema:
        name = descriptor.full_name
        if name not in self._schemas:
            self._schemas[name] = {}  # a placeholder until components() builds it
            self._pending.append(descriptor)
        return {"$ref": REF_PREFIX + name}

    def property_name(self, field: FieldDescriptor) -> str:
        return field.name if self._proto_field_names else field.json_name

    def query_name(self, field: FieldDescriptor) -> str:
        """The name the request binder accepts in a query string (proto or lowerCamel)."""
        return field.name if self._proto_field_names else field.camelcase_name

    def field_schema(self, field: FieldDescriptor) -> Schema:
        """The JSON form of a whole field: repeated fields are arrays, maps objects."""
        entry = field.message_type
        if entry is not None and _is_map(field):
            schema: Schema = {
                "type": "object",
                "additionalProperties": self.value_schema(entry.fields_by_name["value"]),
            }
            key_type = entry.fields_by_name["key"].type
            if key_type == FD.TYPE_BOOL:
                schema["propertyNames"] = {"enum": ["true", "false"]}
            elif key_type != FD.TYPE_STRING:
                schema["propertyNames"] = {"pattern": "^-?[0-9]+$"}
            return schema
        if field.is_repeated:
            return {"type": "array", "items": self.value_schema(field)}
        return self.value_schema(field)

    def value_schema(self, field: FieldDescriptor) -> Schema:
        """The JSON form of one value of the field (an element, for a repeated field)."""
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            if field.enum_type.full_name == "google.protobuf.NullValue":
                return {"type": "null"}
            return self.ref(field.enum_type)
        return dict(_SCALARS[field.type])

    def query_value_schema(self, field: FieldDescriptor) -> Schema | None:
        """A value's schema when a query or path parameter can carry it, else None."""
        message = field.message_type
        if message is None:
            return self.value_schema(field)
        if message.full_name in STRING_FORM_TYPES:
            return self.ref(message)
        if message.full_name in WRAPPER_TYPES:
            return self.value_schema(message.fields_by_name["value"])
        return None

    def _message(self, descriptor: Descriptor) -> Schema:
        known = _WELL_KNOWN.get(descriptor.full_name)
        description = self._comments.get(descriptor.full_name)
        if known is not None:
            return _with_description(dict(known), description)
        proto = descriptor_pb2.DescriptorProto()
        descriptor.CopyToProto(proto)
        synthetic = {  # proto3 `optional` fields sit in a oneof of their own
            proto.oneof_decl[f.oneof_index].name
            for f in proto.field
            if f.proto3_optional and f.HasField("oneof_index")
        }
        properties: Schema = {}
        for field in descriptor.fields:
            schema = self.field_schema(field)
            notes = [self._comments.get(f"{descriptor.full_name}.{field.name}") or ""]
            oneof = field.containing_oneof
            if oneof is not None and oneof.name not in synthetic:
                others = [self.property_name(f) for f in oneof.fields if f is not field]
                notes.append(
                    f"Part of oneof `{oneof.name}`: set at most one of this and "
                    + ", ".join(f"`{name}`" for name in others)
                    + "."
                )
            schema = _with_description(schema, "\n\n".join(n for n in notes if n))
            if field.GetOptions().deprecated:
                schema["deprecated"] = True
            properties[self.property_name(field)] = schema
        schema = {"type": "object", "properties": properties}
        oneofs = [o for o in descriptor.oneofs if o.name not in synthetic]
        if oneofs:
            lines = [
                f"- oneof `{o.name}`: at most one of "
                + ", ".join(f"`{self.property_name(f)}`" for f in o.fields)
                for o in oneofs
            ]
            text = "\n".join(lines)
            description = f"{description}\n\n{text}" if description else text
            schema["x-oneofs"] = {o.name: [self.property_name(f) for f in o.fields] for o in oneofs}
        return _with_description(schema, description)

    def _enum(self, descriptor: EnumDescriptor) -> Schema:
        names = [value.name for value in descriptor.values]
        lines = []
        for value in descriptor.values:
            comment = self._comments.get(f"{descriptor.full_name}.{value.name}")
            lines.append(f"- `{value.name}` ({value.number})" + (f": {comment}" if comment else ""))
        description = "\n".join(lines)
        comment = self._comments.get(descriptor.full_name)
        if comment:
            description = f"{comment}\n\n{description}"
        if self._enums_as_ints:  # written as numbers, read as names or numbers
            numbers = [value.number for value in descriptor.values]
            return {
                "type": ["string", "integer"],
                "enum": names + numbers,
                "description": description,
            }
        return {"type": "string", "enum": names, "description": description}
