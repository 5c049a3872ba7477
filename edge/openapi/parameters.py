"""Path and query parameters of an operation (pure).

Path parameters come from ``paths.openapi_path``: an expanded ``*`` is one segment of a
resource name (``shelf`` in ``shelves/{shelf}``), a string that holds no slash; a whole
variable has its field's schema. Query parameters are the request fields that neither the
path nor the body binds, nested as ``a.b`` down to ``QUERY_DEPTH``, named as the request
binder reads them. A map of scalars is one ``deepObject`` parameter: OpenAPI 3 serializes
``{"k": "v"}`` as ``m[k]=v``, grpc-gateway's syntax, which the binder reads entry by entry
(protoc-gen-openapiv2, on Swagger 2, can only name a parameter ``m[string]``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from edge.openapi.comments import Comments
from edge.openapi.json_forms import SCALARS
from edge.openapi.paths import (
    PathParameter,
    example_value,
    variable_pattern,
    variable_regex,
)
from edge.openapi.schemas import SchemaBuilder
from edge.routing.template import PathTemplate, SegmentKind
from edge.transcode.binding import resolve_field_path

QUERY_DEPTH = 3  # nested request fields as query parameters down to a.b.c
Parameter = dict[str, Any]


def _described(text: str | None) -> dict[str, str]:
    return {"description": text} if text else {}


def path_parameters(
    template: PathTemplate,
    parameters: tuple[PathParameter, ...],
    descriptor: Descriptor,
    schemas: SchemaBuilder,
    comments: Comments,
) -> list[Parameter]:
    out = []
    for parameter in parameters:
        variable = parameter.variable
        fields = resolve_field_path(descriptor, variable.field_path)
        leaf = fields[-1]
        owner = fields[-2].message_type if len(fields) > 1 else descriptor
        assert owner is not None  # resolve_field_path checked that every parent is a message
        comment = comments.get(f"{owner.full_name}.{leaf.name}") or ""
        pattern = variable_pattern(template, variable)
        notes: list[str] = []
        if parameter.segment is not None:
            assert pattern is not None  # only multi-segment variables are expanded
            deep = template.segments[parameter.segment].kind is SegmentKind.MULTI
            notes.append(
                f"One part of the request field `{variable.name}`, which is `{pattern}` "
                f"(e.g. `{example_value(pattern)}`): the gateway sets the field to the "
                "path's segments as sent."
            )
            if deep:
                notes.append(
                    "This part is `**`: it may span several segments; send them with "
                    "their slashes (a percent-encoded slash is kept as `%2F`)."
                )
            # a `*` segment is never empty (an empty segment matches no route); `**` may be
            schema: dict[str, Any] = (
                {"type": "string"} if deep else {"type": "string", "minLength": 1}
            )
        else:
            if parameter.name != variable.name:
                notes.append(f"Sets the request field `{variable.name}`.")
            if comment:
                notes.append(comment)
            schema = schemas.query_value_schema(leaf) or {"type": "string"}
            if (
                leaf.message_type is None
                and leaf.enum_type is None
                and schema == {"type": "string"}
            ):
                schema = {"type": "string", "minLength": 1}  # an empty segment never matches
            if pattern is not None:
                schema = {"type": "string", "pattern": variable_regex(template, variable)}
                notes.append(
                    f"Matches `{pattern}`: the value spans path segments and its slashes "
                    f"are sent as they are (e.g. `{example_value(pattern)}`). OpenAPI "
                    "cannot express a parameter holding slashes, so tools that "
                    "percent-encode path parameters send `%2F`, which does not match; "
                    "set `openapi.expand_path_patterns` to have such variables expanded."
                )
        out.append(
            {
                "name": parameter.name,
                "in": "path",
                "required": True,
                **_described("\n\n".join(notes)),
                "schema": schema,
            }
        )
    return out


def query_parameters(
    descriptor: Descriptor,
    reserved: set[tuple[str, ...]],
    schemas: SchemaBuilder,
    comments: Comments,
) -> list[Parameter]:
    """Query parameters for every field the path and body leave free, nested as ``a.b``."""
    return _query_parameters(
        descriptor, reserved, (), (), schemas, comments, {descriptor.full_name}
    )


def _query_parameters(
    descriptor: Descriptor,
    reserved: set[tuple[str, ...]],
    names: tuple[str, ...],
    shown: tuple[str, ...],
    schemas: SchemaBuilder,
    comments: Comments,
    seen: set[str],
) -> list[Parameter]:
    parameters: list[Parameter] = []
    for field in descriptor.fields:
        path = (*names, field.name)
        if path in reserved:
            continue
        label = (*shown, schemas.query_name(field))
        schema = schemas.query_value_schema(field)
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            comment = comments.get(f"{descriptor.full_name}.{field.name}")
            parameters += _map_parameter(field, ".".join(label), schemas, comment)
            continue
        if schema is None:
            if (  # a singular message of our own, not seen on the way down: its fields
                message is not None
                and not field.is_repeated
                and not message.full_name.startswith("google.protobuf.")
                and message.full_name not in seen
                and len(path) < QUERY_DEPTH
            ):
                parameters += _query_parameters(
                    message,
                    {r for r in reserved if r[: len(path)] == path},
                    path,
                    label,
                    schemas,
                    comments,
                    seen | {message.full_name},
                )
            continue
        parameter: Parameter = {"name": ".".join(label), "in": "query"}
        parameter.update(_described(comments.get(f"{descriptor.full_name}.{field.name}")))
        if field.is_repeated:
            parameter.update(
                {"schema": {"type": "array", "items": schema}, "style": "form", "explode": True}
            )
        else:
            parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _map_parameter(
    field: FieldDescriptor, name: str, schemas: SchemaBuilder, comment: str | None
) -> list[Parameter]:
    """``m[key]=value`` as one object parameter; none for a map of messages (body only).

    A key given twice is a 400, which an object cannot hold twice anyway.
    """
    entry = field.message_type
    assert entry is not None  # the caller checked that this is a map field
    value = schemas.query_value_schema(entry.fields_by_name["value"])
    if value is None:
        return []
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": value,
        "propertyNames": _key_schema(entry.fields_by_name["key"]),
    }
    notes = [comment or "", f"One query parameter per entry: `{name}[key]=value`."]
    return [
        {
            "name": name,
            "in": "query",
            **_described("\n\n".join(n for n in notes if n)),
            "style": "deepObject",
            "explode": True,
            "schema": schema,
        }
    ]


def _key_schema(key: FieldDescriptor) -> dict[str, Any]:
    """The keys the binder takes, each entry by one spelling only.

    An integer key is its canonical decimal in its type's range: the binder reads ``07``
    and ``-0`` too, as the entries ``7`` and ``0``, so an object holding ``0`` and ``00``
    would name one entry twice, a 400. A bool key is ``true`` or ``false``. A string key
    holds no ``[`` and no newline: ``m[a[b]`` splits at its last ``[`` and grpc-gateway's
    pattern stops at a newline, so neither names an entry of ``m``.
    """
    if key.type == FieldDescriptor.TYPE_BOOL:
        return {"enum": ["true", "false"]}
    if key.type == FieldDescriptor.TYPE_STRING:
        return {"pattern": "^[^\\[\\n]*$"}
    schema = SCALARS[key.type]
    return {"pattern": canonical_integer_pattern(schema["minimum"], schema["maximum"])}


def canonical_integer_pattern(low: int, high: int) -> str:
    """A regex for the integers in ``[low, high]`` (``low <= 0 < high``) as ``str(int)``
    writes them: no leading zeros, no ``-0``."""
    negative = f"|-({_one_to(-low)})" if low < 0 else ""
    return f"^(0|{_one_to(high)}{negative})$"


def _one_to(limit: int) -> str:
    """Alternatives matching the decimals 1..limit without leading zeros."""
    digits = str(limit)
    width = len(digits)
    options = [f"[1-9][0-9]{{0,{width - 2}}}"] if width > 1 else []
    for at, digit in enumerate(digits):
        lowest, highest = (1 if at == 0 else 0), int(digit) - 1
        if highest >= lowest:
            tail = width - at - 1
            span = str(lowest) if lowest == highest else f"[{lowest}-{highest}]"
            options.append(digits[:at] + span + (f"[0-9]{{{tail}}}" if tail else ""))
    options.append(digits)
    return "|".join(options)
