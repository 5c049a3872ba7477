"""Path and query parameters of an operation (pure).

Path parameters come from ``paths.openapi_path``: an expanded ``*`` is one segment of a
resource name (``shelf`` in ``shelves/{shelf}``), a string that holds no slash; a whole
variable has its field's schema. Query parameters are the request fields that neither the
path nor the body binds, nested as ``a.b`` down to ``QUERY_DEPTH``, named as the request
binder reads them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor

from edge.openapi.comments import Comments
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
            schema: dict[str, Any] = {"type": "string"}
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
