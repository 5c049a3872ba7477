"""Request bodies, success responses and error responses of the OpenAPI document (pure).

A unary body is one JSON value; a client stream is NDJSON, one message per line; a server
stream is offered in the three framings ``Accept`` chooses (NDJSON, Server-Sent Events, an
incremental JSON array), each with the schema of its items. A ``google.api.HttpBody``
request or response is not JSON at all: its bytes are the body and its ``content_type``
the media type, so it is documented as ``*/*`` binary. Errors are
``google.rpc.Status`` bodies, one documented response per status the gateway itself can
answer with (400 for a request it cannot bind, 413 for a body over the limit, 503 and 504
when the upstream cannot be reached in time), the rest under ``default``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor

from edge.openapi.json_forms import HTTP_BODY

Schema = dict[str, Any]
_BINARY: Schema = {"type": "string", "format": "binary"}
_STATUS_REF = "#/components/schemas/google.rpc.Status"


def error_ref(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def request_body(
    client_streaming: bool, schema: Schema, what: str, message: str | None
) -> dict[str, Any]:
    """``schema`` is the body's JSON schema; ``message`` the full name of the body's
    message type when the body is a whole message (``google.api.HttpBody`` is raw)."""
    if message == HTTP_BODY:
        framing = (
            "the body's chunks, each sent upstream as it arrives"
            if client_streaming
            else "the body"
        )
        return {
            "description": (
                f"Raw bytes ({what} is a google.api.HttpBody): {framing}; its media type is "
                "the request's `Content-Type`."
            ),
            "required": True,
            "content": {"*/*": {"schema": dict(_BINARY)}},
        }
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


def success(
    server_streaming: bool,
    item: Schema,
    output: Descriptor,
    response_body: str | None,
    raw: bool,
) -> dict[str, Any]:
    """The 200 response; ``raw`` when what is sent is a ``google.api.HttpBody``."""
    what = f"`{output.full_name}`" + (f" (its `{response_body}` field)" if response_body else "")
    if raw:
        return {
            "description": (
                f"Raw bytes from {what}, a google.api.HttpBody: its `data` is the body and "
                "its `content_type` the media type"
                + (", streamed chunk by chunk" if server_streaming else "")
            ),
            # octet-stream first: generators hand it back as a file; */* for the rest
            "content": {
                "application/octet-stream": {"schema": dict(_BINARY)},
                "*/*": {"schema": dict(_BINARY)},
            },
        }
    if not server_streaming:
        return {"description": f"OK: {what}", "content": {"application/json": {"schema": item}}}
    status = {"$ref": _STATUS_REF}
    line = {
        "description": 'One line per message, `{"result": ...}`; a failure as `{"error": ...}`',
        "type": "object",
        "properties": {"result": item, "error": status},
        "additionalProperties": False,
    }
    error_item = {"type": "object", "properties": {"error": status}, "required": ["error"]}
    return {
        "description": (
            f"A stream of {what}, each written as it arrives, framed as `Accept` asks "
            "(NDJSON by default). An error after the first message is the stream's last item: "
            '`{"error": Status}` in NDJSON and JSON arrays, an `event: error` in SSE.'
        ),
        "content": {
            "application/x-ndjson": {"schema": line},
            "text/event-stream": {
                "schema": {
                    "type": "string",
                    "description": (
                        "Server-Sent Events: `data: <message JSON>` per message; a failure "
                        "as `event: error` with a google.rpc.Status in `data`"
                    ),
                },
                "x-itemSchema": {  # OpenAPI 3.2's itemSchema, for one event
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": ["error"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"anyOf": [item, status]},
                        },
                    },
                    "required": ["data"],
                },
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


def error_statuses(*, has_body: bool, has_path_variables: bool) -> dict[str, Schema]:
    """The error responses every such route can give, by status."""
    statuses = {"400": error_ref("BadRequest")}
    if has_path_variables:
        statuses["404"] = error_ref("NotFound")
    if has_body:
        statuses["413"] = error_ref("PayloadTooLarge")
    statuses["503"] = error_ref("Unavailable")
    statuses["504"] = error_ref("GatewayTimeout")
    statuses["default"] = error_ref("Error")
    return statuses


def error_responses(status: Schema) -> dict[str, Any]:
    content = {"application/json": {"schema": status}}

    def response(description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, **extra, "content": content}

    auth_header = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return {
        "BadRequest": response(
            "The request cannot be bound or was refused as invalid (code 3, "
            "INVALID_ARGUMENT; 9 FAILED_PRECONDITION and 11 OUT_OF_RANGE are 400 too): "
            "malformed JSON, an unknown field or query parameter, a value of the wrong "
            "type; `details` carry a google.rpc.BadRequest naming the field"
        ),
        "Unauthenticated": response(
            "Missing or invalid credentials (code 16, UNAUTHENTICATED)", headers=auth_header
        ),
        "PermissionDenied": response(
            "A valid token without the route's scopes (code 7)", headers=auth_header
        ),
        "NotFound": response("No such resource (code 5, NOT_FOUND)"),
        "PayloadTooLarge": response(
            "The body is over `transcoding.max_body_bytes` (code 8, RESOURCE_EXHAUSTED)"
        ),
        "RateLimited": response(
            "Over a rate limit (code 8, RESOURCE_EXHAUSTED)",
            headers={"Retry-After": {"schema": {"type": "integer"}}},
        ),
        "Unavailable": response("The upstream cannot be reached (code 14, UNAVAILABLE)"),
        "GatewayTimeout": response("The deadline passed (code 4, DEADLINE_EXCEEDED)"),
        "Error": response(
            "An error as a google.rpc.Status: `code` is the gRPC code, the HTTP status "
            "follows from it (NOT_FOUND 404, INVALID_ARGUMENT 400, UNAVAILABLE 503...); "
            "`details` carry google.rpc error details such as BadRequest"
        ),
    }
