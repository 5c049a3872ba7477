"""The OpenAPI 3.1 document for the routes the gateway serves (pure).

Built from the same ``Routes`` object the hot path reads, so the document describes what
is served, rule by rule: paths and path parameters from the ``google.api.http``
templates (``paths.py``: variables spanning segments expanded into plain OpenAPI paths),
query parameters for the request fields neither the path nor the body binds
(``parameters.py``), the body and response schemas with ``body`` and ``response_body``
honoured (``schemas.py``, ``bodies.py``), the streaming framings, the
``google.rpc.Status`` error responses per status, the security each route's policy asks
for, and operation ids that read as method names (``naming.py``). Comments in the protos
become summaries and descriptions.

Custom HTTP methods (``custom: {kind: "PURGE"}``) have no place in OpenAPI 3.1 and are
listed under ``x-edge-omitted``, as is a route whose OpenAPI path and method another took.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from edge.config import Config
from edge.descriptors.http_rules import HttpRule
from edge.openapi.bodies import error_responses, error_statuses, request_body, success
from edge.openapi.comments import Comments
from edge.openapi.json_forms import HTTP_BODY, nullable
from edge.openapi.naming import OperationNames
from edge.openapi.parameters import path_parameters, query_parameters
from edge.openapi.paths import OpenApiPath, openapi_path, path_shape
from edge.openapi.schemas import SchemaBuilder
from edge.openapi.security import SecurityRequirements
from edge.routes import Routes, TranscodeRoute
from edge.routing.template import PathTemplate, SegmentKind, parse_template
from edge.transcode.binding import message_descriptor, resolve_field_path

OPENAPI_VERSION = "3.1.0"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
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
        unknown_fields_rejected=config.transcoding.unknown_fields == "reject",
    )
    status = schemas.ref(routes.registry.pool.FindMessageTypeByName("google.rpc.Status"))
    security = SecurityRequirements(config)
    documented = [r for r in routes.routes if r.http_method.lower() in _METHODS]
    names = OperationNames((r.method.service, r.method.name) for r in documented)
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, tuple[str, ...]] = {}
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
        where = openapi_path(template, expand=settings.expand_path_patterns)
        first = shapes.setdefault(path_shape(where.path), tuple(p.name for p in where.parameters))
        where = openapi_path(template, expand=settings.expand_path_patterns, names=first)
        if verb in paths.get(where.path, {}):
            omitted.append(f"{shown}: same OpenAPI path and method as another operation")
            continue
        service = route.method.service
        operation_id = names.operation_id(service, route.method.name, verb)
        operation = _operation(
            route, rule, template, where, operation_id, names.tag(service), schemas, comments
        )
        requirement, responses = security.requirement(route.method.full_name)
        operation["responses"] = dict(sorted({**operation["responses"], **responses}.items()))
        if requirement is not None:
            operation["security"] = requirement
        if _deprecated(routes, route):
            operation["deprecated"] = True
        paths.setdefault(where.path, {})[verb] = operation
        services.add(service)
    components: dict[str, Any] = {
        "schemas": schemas.components(),
        "responses": error_responses(status),
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
        {"name": names.tag(name), **_described(_tag_text(name, names.tag(name), comments))}
        for name in sorted(services, key=names.tag)
    ]
    document["paths"] = dict(sorted(paths.items()))
    document["components"] = components
    if omitted:
        document["x-edge-omitted"] = omitted
    return document


def _tag_text(service: str, tag: str, comments: Comments) -> str | None:
    comment = comments.get(service)
    if tag == service:
        return comment
    return f"`{service}`" + (f": {comment}" if comment else "")


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


def _described(text: str | None) -> dict[str, str]:
    return {"description": text} if text else {}


def _summary(comment: str) -> str:
    first = comment.split("\n\n", 1)[0].replace("\n", " ")
    return _SENTENCE_END.split(first, 1)[0]


def _operation(
    route: TranscodeRoute,
    rule: HttpRule | None,
    template: PathTemplate,
    where: OpenApiPath,
    operation_id: str,
    tag: str,
    schemas: SchemaBuilder,
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
    elif where.path != "/" + "/".join(str(s) for s in template.segments) + (
        f":{template.verb}" if template.verb else ""
    ):
        notes.append(f"Path template `{template.source}`.")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": _summary(comment) if comment else method.name,
    }
    if comment == operation["summary"]:
        notes = notes[1:]
    if notes:
        operation["description"] = "\n\n".join(notes)
    operation["x-grpc-method"] = method.full_name
    parameters = path_parameters(template, where.parameters, input_descriptor, schemas, comments)
    body = rule.body if rule is not None else "*"
    if body != "*":
        reserved = {
            tuple(f.name for f in resolve_field_path(input_descriptor, v.field_path))
            for v in template.variables
        }
        if body is not None:
            reserved.add((resolve_field_path(input_descriptor, body.split("."))[0].name,))
        parameters += query_parameters(input_descriptor, reserved, schemas, comments)
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        bound = {
            tuple(f.name for f in resolve_field_path(input_descriptor, v.field_path))
            for v in template.variables
        }
        message: str | None = input_descriptor.full_name
        if body == "*":
            schema = schemas.body_schema(input_descriptor, bound)
            what = f"the request message `{input_descriptor.full_name}`"
        else:
            field: FieldDescriptor = resolve_field_path(input_descriptor, body.split("."))[0]
            inner = {path[1:] for path in bound if path[0] == field.name and len(path) > 1}
            if field.message_type is not None and not field.is_repeated and inner:
                schema = nullable(schemas.body_schema(field.message_type, inner))
            else:
                schema = schemas.property_schema(field)
            # a repeated HttpBody is a JSON array of messages, as the binder reads it
            body_type = None if field.is_repeated else field.message_type
            message = body_type.full_name if body_type is not None else None
            what = f"the request's `{schemas.property_name(field)}` field"
        if rule is None:  # a generic route reads JSON, even into an HttpBody
            message = None
        operation["requestBody"] = request_body(method.client_streaming, schema, what, message)
    response_body = rule.response_body if rule is not None else None
    if response_body is None:
        item = schemas.ref(output_descriptor)
        raw = output_descriptor.full_name == HTTP_BODY
    else:
        fields = resolve_field_path(output_descriptor, response_body.split("."))
        item = schemas.field_schema(fields[-1])
        leaf = fields[-1].message_type
        raw = leaf is not None and leaf.full_name == HTTP_BODY and not fields[-1].is_repeated
    operation["responses"] = {
        "200": success(method.server_streaming, item, output_descriptor, response_body, raw),
        **error_statuses(has_body=body is not None, has_path_variables=bool(template.variables)),
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
