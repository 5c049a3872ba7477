"""JSON Schemas for proto messages and enums under the proto3 JSON mapping (pure).

One component per message or enum type, named by its full proto name, reached through
``$ref`` so recursive messages need no special case. Property names are the JSON names
(or the proto names when ``transcoding.proto_field_names`` is set); the value forms are
in ``json_forms`` (64-bit integers as strings, enums by name or number, well-known types
in their JSON forms). A schema says what the gateway reads as well as what it writes:
every property may be ``null`` (read as unset), an object admits no other property when
``transcoding.unknown_fields`` is ``reject`` (the default), and a oneof allows at most one
member set, as ``json_format`` holds requests to.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from edge.openapi.comments import Comments
from edge.openapi.json_forms import (
    NULL,
    QUERY_SCALARS,
    SCALARS,
    STRING_FORM_TYPES,
    WRAPPER_TYPES,
    nullable,
    well_known,
)

FD = FieldDescriptor

Schema = dict[str, Any]
REF_PREFIX = "#/components/schemas/"


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(field.is_repeated and message is not None and message.GetOptions().map_entry)


def _names(rule: Schema) -> set[str]:
    """The property names a oneof rule (``_at_most_one``) refers to."""
    inner = rule["not"]
    pairs = inner["anyOf"] if "anyOf" in inner else [inner]
    return {name for pair in pairs for name in pair["required"]}


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
        self,
        comments: Comments,
        *,
        proto_field_names: bool = False,
        enums_as_ints: bool = False,
        unknown_fields_rejected: bool = True,
    ) -> None:
        self._comments = comments
        self._proto_field_names = proto_field_names
        self._enums_as_ints = enums_as_ints
        self._closed = unknown_fields_rejected
        self._well_known = well_known(unknown_fields_rejected)
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

    def body_schema(self, descriptor: Descriptor, bound: set[tuple[str, ...]]) -> Schema:
        """A request body of message type ``descriptor`` whose fields at ``bound`` (proto
        field-name paths) the path sets: the gateway replaces whatever the body holds
        there, so they are left out, as protoc-gen-openapiv2 does. Inline (a generator
        names it after the operation); the plain ``$ref`` when nothing is bound."""
        if not bound:
            return self.ref(descriptor)
        schema = self._message(descriptor)
        properties = dict(schema["properties"])
        for field in descriptor.fields:
            inner = {path[1:] for path in bound if path[0] == field.name}
            name = self.property_name(field)
            if () in inner:
                properties.pop(name, None)
            elif inner and field.message_type is not None and not field.is_repeated:
                properties[name] = nullable(self.body_schema(field.message_type, inner))
        schema["properties"] = properties
        if "allOf" in schema:  # a oneof rule must not name a property that is gone
            schema["allOf"] = [rule for rule in schema["allOf"] if _names(rule) <= set(properties)]
            if not schema["allOf"]:
                del schema["allOf"]
        return schema

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
                # deferred: parameters builds on this module (the same keys, in the query)
                from edge.openapi.parameters import canonical_integer_pattern

                limits = SCALARS[key_type]
                schema["propertyNames"] = {
                    "pattern": canonical_integer_pattern(limits["minimum"], limits["maximum"])
                }
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
        return dict(SCALARS[field.type])

    def property_schema(self, field: FieldDescriptor) -> Schema:
        """A field as an object property: its JSON form, or ``null`` (read as unset; a
        ``google.protobuf.Value`` reads it as its null)."""
        schema = self.field_schema(field)
        message = field.message_type
        if message is not None and message.full_name == "google.protobuf.Value":
            return schema  # a Value takes null itself; a list of them refuses it
        return nullable(schema)

    def query_value_schema(self, field: FieldDescriptor) -> Schema | None:
        """A value's schema when a query or path parameter can carry it, else None."""
        message = field.message_type
        if message is None:
            if field.enum_type is not None:
                return self.value_schema(field)
            return dict(QUERY_SCALARS[field.type])
        if message.full_name in STRING_FORM_TYPES:
            return self.ref(message)
        if message.full_name in WRAPPER_TYPES:
            return self.query_value_schema(message.fields_by_name["value"])
        return None

    def _message(self, descriptor: Descriptor) -> Schema:
        known = self._well_known.get(descriptor.full_name)
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
            schema = self.property_schema(field)
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
        if self._closed:  # transcoding.unknown_fields: reject
            schema["additionalProperties"] = False
        oneofs = [o for o in descriptor.oneofs if o.name not in synthetic]
        if oneofs:
            rules = [rule for rule in map(self._at_most_one, oneofs) if rule]
            if rules:
                schema["allOf"] = rules
            lines = [
                f"- oneof `{o.name}`: at most one of "
                + ", ".join(f"`{self.property_name(f)}`" for f in o.fields)
                for o in oneofs
            ]
            text = "\n".join(lines)
            description = f"{description}\n\n{text}" if description else text
            schema["x-oneofs"] = {o.name: [self.property_name(f) for f in o.fields] for o in oneofs}
        return _with_description(schema, description)

    def _at_most_one(self, oneof: Any) -> Schema:
        """At most one member of a oneof set to something other than null (json_format
        reads a null member as unset, so ``{"a": 1, "b": null}`` is one member)."""
        names = [self.property_name(f) for f in oneof.fields]
        set_ = {"not": NULL}
        pairs = [
            {"required": [a, b], "properties": {a: set_, b: set_}}
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ]
        if not pairs:
            return {}
        return {"not": {"anyOf": pairs}} if len(pairs) > 1 else {"not": pairs[0]}

    def _enum(self, descriptor: EnumDescriptor) -> Schema:
        lines = []
        for value in descriptor.values:
            comment = self._comments.get(f"{descriptor.full_name}.{value.name}")
            lines.append(f"- `{value.name}` ({value.number})" + (f": {comment}" if comment else ""))
        description = "\n".join(lines)
        comment = self._comments.get(descriptor.full_name)
        if comment:
            description = f"{comment}\n\n{description}"
        names = [value.name for value in descriptor.values]
        numbers = [value.number for value in descriptor.values]
        by_number: Schema = {"type": "integer", "format": "int32"}
        if descriptor.is_closed:  # proto2: only the numbers it names
            by_number["enum"] = numbers
        else:  # proto3: any int32, kept as an unknown value
            by_number.update({"minimum": -(2**31), "maximum": 2**31 - 1})
        by_name: Schema = {"type": "string", "enum": names}
        written = "numbers" if self._enums_as_ints else "value names"
        return {
            "anyOf": [by_name, by_number],
            "description": f"{description}\n\nWritten as {written}; read as either.",
        }
