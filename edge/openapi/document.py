"""The OpenAPI 3.1 document for the routes the gateway serves (pure).

Built from the same ``Routes`` object the hot path reads, so the document describes what
is served, rule by rule: paths and path parameters from the ``google.api.http``
templates, query parameters for the request fields neither the path nor the body binds,
the body and response schemas (``body`` and ``response_body`` honoured), the streaming
framings, the ``google.rpc.Status`` error body, and the security each route's policy
asks for. Comments in the protos become summaries and descriptions.

What OpenAPI cannot say is said in descriptions instead: a variable spanning several
path segments (``{name=shelves/*/books/*}``) becomes one parameter whose value holds
slashes, which generic clients percent-encode; custom HTTP methods (``custom: {kind:
"PURGE"}``) have no place in OpenAPI 3.1 and are listed under ``x-edge-omitted``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from edge.config import Config
from edge.descriptors.http_rules import HttpRule
from edge.openapi.comments import Comments
from edge.openapi.schemas import Schema, SchemaBuilder
from edge.openapi.security import SecurityRequirements
from edge.routes import Routes, TranscodeRoute
from edge.routing.template import PathTemplate, SegmentKind, Variable, parse_template
from edge.transcode.binding import message_descriptor, resolve_field_path

OPENAPI_VERSION = "3.1.0"
QUERY_DEPTH = 3  # nested request fields as query parameters down to a.b.c
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_ERROR = {"$ref": "#/components/responses/Error"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def build_openapi(routes: Routes, config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict) for ``routes`` under ``config``.

    Pure and deterministic: the same routes and config give the same document, in the
    same key order. Routes OpenAPI cannot express are listed in ``x-edge-omitted``.
    """
    settings = config.openapi
    comments = Comments(routes.registry.file_protos)
    schemas = SchemaBuilder(
        comments,
        proto_field_names=config.transcoding.proto_field_names,
        enums_as_ints=config.transcoding.enums_as_ints,
    )
    status = schemas.ref(routes.registry.pool.FindMessageTypeByName("google.rpc.Status"))
    security = SecurityRequirements(config)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: dict[str, int] = {}
    shapes: dict[str, list[str]] = {}
    omitted: list[str] = []
    services: set[str] = set()
    for route in routes.routes:
        verb = route.http_method.lower()
        shown = f"{route.http_method} {route.template} ({route.method.full_name})"
        if verb not in _METHODS:
            omitted.append(f"{shown}: OpenAPI 3.1 has no custom HTTP methods")
            continue
        rule = _rule_of(route)
        template = rule.template if rule is not None else parse_template(route.template)
        # OpenAPI holds /v1/{name} and /v1/{book.name} to be one path: the first names win
        shape = openapi_path(template, [""] * len(template.variables))
        names = shapes.setdefault(shape, [v.name for v in template.variables])
        path = openapi_path(template, names)
        if verb in paths.get(path, {}):
            omitted.append(f"{shown}: same OpenAPI path and method as another operation")
            continue
        full_name = route.method.full_name
        count = operation_ids[full_name] = operation_ids.get(full_name, 0) + 1
        operation_id = full_name if count == 1 else f"{full_name}_{count}"
        operation = _operation(
            route, rule, template, names, operation_id, schemas, status, comments
        )
        requirement, responses = security.requirement(full_name)
        operation["responses"] = dict(sorted({**operation["responses"], **responses}.items()))
        if requirement is not None:
            operation["security"] = requirement
        if _deprecated(routes, route):
            operation["deprecated"] = True
        paths.setdefault(path, {})[verb] = operation
        services.add(route.method.service)
    components: dict[str, Any] = {
        "schemas": schemas.components(),
        "responses": _responses(status),
    }
    if security.schemes:
        components["securitySchemes"] = security.schemes
    info: dict[str, Any] = {"title": settings.title, "version": settings.version}
    if settings.description:
        info["description"] = settings.description
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info}
    if settings.servers:
        document["servers"] = [{"url": url} for url in settings.servers]
    document["tags"] = [
        {"name": name, **_described(comments.get(name))} for name in sorted(services)
    ]
    document["paths"] = dict(sorted(paths.items()))
    document["components"] = components
    if omitted:
        document["x-edge-omitted"] = omitted
    return document


def document_key(routes: Routes) -> bytes:
    """What the document depends on besides the config, as a digest: every loaded file
    (comments included) and every route's method, template and gRPC method. A reload that
    changes nothing gives the same key, so its document is not built again.

    Blocking (it serialises every file): run it where ``build_openapi`` runs.
    """
    digest = hashlib.sha256()
    for name, file in sorted(routes.registry.file_protos.items()):
        data = file.SerializeToString(deterministic=True)
        digest.update(b"F%d:%s%d:" % (len(name), name.encode(), len(data)))
        digest.update(data)
    for route in routes.routes:
        line = f"{route.http_method} {route.template} {route.method.full_name}".encode()
        digest.update(b"R%d:" % len(line) + line)
    return digest.digest()


def _rule_of(route: TranscodeRoute) -> HttpRule | None:
    """The HTTP rule a route was built from; None for the generic ``POST /pkg.Svc/M``."""
    for rule in route.method.http_rules:
        if rule.method == route.http_method and rule.template.source == route.template:
            return rule
    return None


def openapi_path(template: PathTemplate, names: list[str] | None = None) -> str:
    """The template as an OpenAPI path: each variable, however many segments, is ``{name}``.

    ``names`` replaces the variables' own names (their field paths), in order.
    """
    if names is None:
        names = [variable.name for variable in template.variables]
    starts = {
        variable.start: name for variable, name in zip(template.variables, names, strict=True)
    }
    ends = {variable.start: variable.end for variable in template.variables}
    parts: list[str] = []
    index = 0
    while index < len(template.segments):
        name = starts.get(index)
        if name is not None:
            parts.append("{" + name + "}")
            end = ends[index]
            index = len(template.segments) if end is None else end
        else:
            parts.append(str(template.segments[index]))
            index += 1
    verb = f":{template.verb}" if template.verb is not None else ""
    return "/" + "/".join(parts) + verb


def variable_pattern(template: PathTemplate, variable: Variable) -> str | None:
    """The segments a multi-segment variable matches (``shelves/*``); None for plain ``*``."""
    segments = template.segments[variable.start : variable.end]
    if len(segments) == 1 and segments[0].kind is SegmentKind.SINGLE:
        return None
    return "/".join(str(segment) for segment in segments)


def _pattern_regex(template: PathTemplate, variable: Variable) -> str:
    pieces = []
    for segment in template.segments[variable.start : variable.end]:
        if segment.kind is SegmentKind.LITERAL:
            pieces.append("/" + re.escape(segment.literal))
        elif segment.kind is SegmentKind.SINGLE:
            pieces.append("/[^/]+")
        else:
            pieces.append("(/.*)?")
    regex = "".join(pieces)
    return "^" + (regex[1:] if regex.startswith("/") else regex.removeprefix("(/.*)?") + ".*") + "$"


def _described(text: str | None) -> dict[str, str]:
    return {"description": text} if text else {}


def _summary(comment: str) -> str:
    first = comment.split("\n\n", 1)[0].replace("\n", " ")
    return _SENTENCE_END.split(first, 1)[0]


def _operation(
    route: TranscodeRoute,
    rule: HttpRule | None,
    template: PathTemplate,
    names: list[str],
    operation_id: str,
    schemas: SchemaBuilder,
    status: Schema,
    comments: Comments,
) -> dict[str, Any]:
    method = route.method
    input_descriptor = message_descriptor(method.input_type)
    output_descriptor = message_descriptor(method.output_type)
    comment = comments.get(method.full_name)
    notes = [comment] if comment else []
    if rule is None:
        notes.append(
            f"Not annotated with `google.api.http`: served at its gRPC path with the "
            f"request message `{input_descriptor.full_name}` as the JSON body."
        )
    if any(s.kind is not SegmentKind.LITERAL for s in _unbound_segments(template)):
        notes.append(f"Path template `{template.source}`: a bare `*` matches any one segment.")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [method.service],
        "summary": _summary(comment) if comment else method.name,
    }
    if comment == operation["summary"]:
        notes = notes[1:]
    if notes:
        operation["description"] = "\n\n".join(notes)
    parameters = _path_parameters(template, names, input_descriptor, schemas, comments)
    body = rule.body if rule is not None else "*"
    if body != "*":
        reserved = {
            tuple(f.name for f in resolve_field_path(input_descriptor, v.field_path))
            for v in template.variables
        }
        if body is not None:
            reserved.add((resolve_field_path(input_descriptor, body.split("."))[0].name,))
        parameters += _query_parameters(
            input_descriptor, reserved, (), (), schemas, comments, {input_descriptor.full_name}
        )
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = _request_body(
            method.client_streaming, input_descriptor, body, schemas
        )
    response_body = rule.response_body if rule is not None else None
    if response_body is None:
        item = schemas.ref(output_descriptor)
    else:
        fields = resolve_field_path(output_descriptor, response_body.split("."))
        item = schemas.field_schema(fields[-1])
    operation["responses"] = {
        "200": _success(method.server_streaming, item, status, output_descriptor, response_body),
        "default": _ERROR,
    }
    return operation


def _deprecated(routes: Routes, route: TranscodeRoute) -> bool:
    service = routes.registry.pool.FindServiceByName(route.method.service)
    return bool(service.methods_by_name[route.method.name].GetOptions().deprecated)


def _unbound_segments(template: PathTemplate) -> list[Any]:
    bound: set[int] = set()
    for variable in template.variables:
        end = len(template.segments) if variable.end is None else variable.end
        bound.update(range(variable.start, end))
    return [s for i, s in enumerate(template.segments) if i not in bound]


def _path_parameters(
    template: PathTemplate,
    names: list[str],
    descriptor: Descriptor,
    schemas: SchemaBuilder,
    comments: Comments,
) -> list[dict[str, Any]]:
    parameters = []
    for variable, name in zip(template.variables, names, strict=True):
        fields = resolve_field_path(descriptor, variable.field_path)
        leaf = fields[-1]
        schema = schemas.query_value_schema(leaf) or {"type": "string"}
        owner = fields[-2].message_type if len(fields) > 1 else descriptor
        assert owner is not None  # resolve_field_path checked that every parent is a message
        notes = [comments.get(f"{owner.full_name}.{leaf.name}") or ""]
        if name != variable.name:
            notes.insert(0, f"Sets the request field `{variable.name}`.")
        pattern = variable_pattern(template, variable)
        if pattern is not None:
            schema = {"type": "string", "pattern": _pattern_regex(template, variable)}
            notes.append(
                f"Matches `{pattern}`: the value spans path segments and its slashes are "
                f"sent as they are (e.g. `{_example(pattern)}`). OpenAPI cannot express a "
                f"parameter holding slashes, so tools that percent-encode path parameters "
                f"send `%2F`, which does not match; call such paths directly."
            )
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                **_described("\n\n".join(n for n in notes if n)),
                "schema": schema,
            }
        )
    return parameters


def _example(pattern: str) -> str:
    return "/".join(
        "1" if part == "*" else "a/b" if part == "**" else part for part in pattern.split("/")
    )


def _query_parameters(
    descriptor: Descriptor,
    reserved: set[tuple[str, ...]],
    names: tuple[str, ...],
    shown: tuple[str, ...],
    schemas: SchemaBuilder,
    comments: Comments,
    seen: set[str],
) -> list[dict[str, Any]]:
    """Query parameters for every field the path and body leave free, nested as ``a.b``."""
    parameters: list[dict[str, Any]] = []
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
        parameter: dict[str, Any] = {"name": ".".join(label), "in": "query"}
        parameter.update(_described(comments.get(f"{descriptor.full_name}.{field.name}")))
        if field.is_repeated:
            parameter.update(
                {"schema": {"type": "array", "items": schema}, "style": "form", "explode": True}
            )
        else:
            parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _request_body(
    client_streaming: bool, descriptor: Descriptor, body: str, schemas: SchemaBuilder
) -> dict[str, Any]:
    if body == "*":
        schema = schemas.ref(descriptor)
        what = f"the request message `{descriptor.full_name}`"
    else:
        field: FieldDescriptor = resolve_field_path(descriptor, body.split("."))[0]
        schema = schemas.field_schema(field)
        what = f"the request's `{schemas.property_name(field)}` field"
    if client_streaming:
        return {
            "description": (
                f"NDJSON: one JSON value per line, each {what}, sent upstream as it arrives "
                "(client streaming); path and query parameters apply to every line. The "
                "schema is that of one line."
            ),
            "content": {"application/x-ndjson": {"schema": schema}},
        }
    return {
        "description": f"JSON: {what}. Fields bound by the path are taken from the path.",
        "content": {"application/json": {"schema": schema}},
    }


def _success(
    server_streaming: bool,
    item: Schema,
    status: Schema,
    output: Descriptor,
    response_body: str | None,
) -> dict[str, Any]:
    what = f"`{output.full_name}`" + (f" (its `{response_body}` field)" if response_body else "")
    if not server_streaming:
        return {"description": f"OK: {what}", "content": {"application/json": {"schema": item}}}
    error_item = {"type": "object", "properties": {"error": status}, "required": ["error"]}
    return {
        "description": (
            f"A stream of {what}, each written as it arrives, framed as `Accept` asks "
            "(NDJSON by default). An error after the first message is the stream's last item: "
            '`{"error": Status}` in NDJSON and JSON arrays, an `event: error` in SSE.'
        ),
        "content": {
            "application/x-ndjson": {
                "schema": {
                    "description": (
                        'One line per message, `{"result": ...}`; a failure as `{"error": ...}`'
                    ),
                    "type": "object",
                    "properties": {"result": item, "error": status},
                }
            },
            "text/event-stream": {
                "schema": {
                    "type": "string",
                    "description": (
                        "Server-Sent Events: `data: <message JSON>` per message; a failure "
                        "as `event: error` with a google.rpc.Status in `data`"
                    ),
                }
            },
            "application/json": {
                "schema": {
                    "type": "array",
                    "description": "One JSON array, written incrementally",
                    "items": {"anyOf": [item, error_item]},
                }
            },
        },
    }


def _responses(status: Schema) -> dict[str, Any]:
    content = {"application/json": {"schema": status}}
    return {
        "Error": {
            "description": (
                "An error as a google.rpc.Status: `code` is the gRPC code, the HTTP status "
                "follows from it (NOT_FOUND 404, INVALID_ARGUMENT 400, UNAVAILABLE 503...); "
                "`details` carry google.rpc error details such as BadRequest"
            ),
            "content": content,
        },
        "Unauthenticated": {
            "description": "Missing or invalid credentials (code 16, UNAUTHENTICATED)",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": content,
        },
        "PermissionDenied": {
            "description": "A valid token without the route's scopes (code 7)",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": content,
        },
        "RateLimited": {
            "description": "Over a rate limit (code 8, RESOURCE_EXHAUSTED)",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": content,
        },
    }
