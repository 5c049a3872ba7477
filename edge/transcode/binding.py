"""Binding an HTTP request onto a gRPC request message (pure, no I/O).

Follows google.api.http: path variables set the fields they name; ``body: "*"`` maps the
whole JSON body onto the message, ``body: "field"`` maps it onto that field, and every
field not bound by the path or body may be set from a query parameter (``query_params``).
Everything that can be resolved once per route — field descriptors, converters, which
query names are allowed, whether the body is raw, whether an update mask is derived — is
resolved in ``RequestBinder.__init__``, so a plain JSON request pays for none of it.

Binding assembles one JSON-shaped dict (body, then query, then path, which wins) and
hands it to the JSON codec in one pass. Query and path values are checked against their
field as they are read, so a 400 names the parameter as the client wrote it; body errors
name the field path (``json_check``). Every such 400 carries a ``google.rpc.BadRequest``
detail naming the field, and no Python exception text.

Two message shapes get more than the JSON mapping, on HTTP routes (``raw_bodies``,
``derive_update_mask``), as grpc-gateway and Envoy do:

- ``google.api.HttpBody``: when the request message is one (``body: "*"``) or the body
  field is one, the body is not JSON: its bytes fill ``data`` and the request's
  ``Content-Type`` (as sent, parameters included; empty when absent) fills
  ``content_type``; with a body field, other fields come from the path and query.
- A PATCH whose request has exactly one ``google.protobuf.FieldMask`` field and a body
  field: when the client sent no mask, it is filled from the fields the body names
  (``field_mask``), relative to the body field's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from edge.descriptors.http_rules import HttpRule
from edge.errors import BadRequest
from edge.transcode.field_mask import mask_paths
from edge.transcode.field_values import (
    BindingError,
    Converter,
    check_value,
    is_repeated,
    message_descriptor,
    resolve_field_path,
    scalar_converter,
    set_path,
)
from edge.transcode.json_check import quick_fit
from edge.transcode.json_codec import JsonCodec, decode_json
from edge.transcode.query_params import QueryBinder

# re-exported: where the rest of edge has always found them
__all__ = ["BindingError", "RequestBinder", "message_descriptor", "resolve_field_path"]

HTTP_BODY = "google.api.HttpBody"
_FIELD_MASK = "google.protobuf.FieldMask"
Headers = Sequence[tuple[bytes, bytes]]


class _PathBinding:
    __slots__ = ("convert", "field", "fits", "names", "shown")

    def __init__(self, descriptor: Descriptor, path: tuple[str, ...]) -> None:
        fields = resolve_field_path(descriptor, path)
        leaf = fields[-1]
        convert: Converter | None = scalar_converter(leaf)
        if convert is None or is_repeated(leaf):
            raise BindingError(
                f"path variable {'.'.join(path)!r} must name a singular scalar field"
            )
        self.names = tuple(f.name for f in fields)
        self.convert = convert
        self.field = leaf
        self.fits = quick_fit(leaf)
        self.shown = ".".join(path)


def _single_mask_field(descriptor: Descriptor) -> str | None:
    """The request's one FieldMask field (grpc-gateway derives none when there are two)."""
    masks = [
        f.name
        for f in descriptor.fields
        if f.message_type is not None
        and f.message_type.full_name == _FIELD_MASK
        and not is_repeated(f)
    ]
    return masks[0] if len(masks) == 1 else None


def content_type_of(headers: Headers) -> str:
    """The request's Content-Type as sent (Latin-1, as HTTP allows); empty when absent."""
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return ""


class RequestBinder:
    """Builds request messages for one (method, rule); constructed once at load time."""

    __slots__ = (
        "_body_field",
        "_body_object",
        "_body_whole",
        "_codec",
        "_input",
        "_mask_body",
        "_mask_field",
        "_path",
        "_query",
        "_raw",
    )

    def __init__(
        self,
        input_type: type[Message],
        rule: HttpRule | None,
        codec: JsonCodec,
        *,
        reject_unknown_query: bool = True,
        ignored_query: Sequence[str] = (),
        raw_bodies: bool = False,
        derive_update_mask: bool = False,
    ) -> None:
        """``raw_bodies`` and ``derive_update_mask`` are for HTTP routes; the WebSocket,
        gRPC-Web and Connect routes carry whole messages in JSON and leave them off."""
        descriptor = message_descriptor(input_type)
        self._input = input_type
        self._codec = codec
        self._path: dict[tuple[str, ...], _PathBinding] = {}
        reserved: set[tuple[str, ...]] = set()
        variables = rule.template.variables if rule is not None else ()
        for variable in variables:
            binding = _PathBinding(descriptor, variable.field_path)
            self._path[variable.field_path] = binding
            reserved.add(binding.names)
        body = rule.body if rule is not None else "*"
        self._body_whole = body == "*"
        self._body_field: str | None = None
        body_type: Descriptor | None = None
        if body is not None and body != "*":
            fields = resolve_field_path(descriptor, body.split("."))
            if len(fields) != 1:
                raise BindingError(f"body {body!r} must name a top-level field")
            self._body_field = fields[0].name
            if not is_repeated(fields[0]):
                body_type = fields[0].message_type
            reserved.add((fields[0].name,))
        # a path variable inside the body field (``{book.name}``, ``body: "book"``): then a
        # body that is not an object must be refused, not replaced by the path's object
        self._body_object = self._body_field is not None and any(
            len(names) > 1 and names[0] == self._body_field for names in reserved
        )
        self._query = QueryBinder(
            descriptor,
            codec,
            frozenset(reserved),
            reject_unknown=reject_unknown_query,
            ignored=frozenset(ignored_query),
        )
        # the raw body's target: "" for the message itself, else the body field's name
        self._raw: str | None = None
        if raw_bodies and rule is not None:
            if self._body_whole and descriptor.full_name == HTTP_BODY:
                self._raw = ""
            elif body_type is not None and body_type.full_name == HTTP_BODY:
                self._raw = self._body_field
        self._mask_field: str | None = None
        self._mask_body: Descriptor | None = None
        if (
            derive_update_mask
            and rule is not None
            and rule.method == "PATCH"
            and body_type is not None
            and self._raw is None
        ):
            self._mask_field = _single_mask_field(descriptor)
            self._mask_body = body_type

    @property
    def takes_body(self) -> bool:
        return self._body_whole or self._body_field is not None

    @property
    def raw_body(self) -> bool:
        """Whether the body is taken as raw bytes (google.api.HttpBody), not JSON."""
        return self._raw is not None

    @property
    def body_description(self) -> str:
        """Where the body goes, in words (for ``/admin/explain``)."""
        if self._raw == "":
            return "the whole request message, raw: its bytes and Content-Type (HttpBody)"
        if self._raw is not None:
            return f"the field {self._raw}, raw: its bytes and Content-Type (HttpBody)"
        if self._body_whole:
            return "the whole request message (query parameters are not read)"
        if self._body_field is not None:
            return f"the field {self._body_field}"
        return "no body"

    def query_fields(self, query: str) -> dict[str, str]:
        """Each query parameter and the field it sets, or why it cannot (for explaining)."""
        if self._body_whole:
            return {key: "ignored: the body is the whole message" for key, _ in parse_qsl(query)}
        return self._query.describe(query)

    def bind(
        self,
        bindings: Sequence[tuple[tuple[str, ...], str]],
        query: str,
        body: bytes,
        *,
        headers: Headers = (),
    ) -> Message:
        """The request message for one HTTP request; raises BadRequest on any bad input.

        ``headers`` (the request's, as ASGI gives them) are read only by a raw-body route,
        for its Content-Type; other callers may leave them out.
        """
        if self._raw is not None:
            return self._bind_raw(bindings, query, body, headers)
        data: dict[str, Any]
        mask: list[str] | None = None
        if self._body_whole:
            decoded = decode_json(body) if body.strip() else {}
            if not isinstance(decoded, dict):
                raise BadRequest("request body must be a JSON object")
            data = decoded
        elif self._body_field is not None:
            if body.strip():
                decoded = decode_json(body)
                if self._body_object and decoded is not None and type(decoded) is not dict:
                    self._refuse_body(decoded)
                data = {self._body_field: decoded}
                if self._mask_body is not None:  # before the path adds to the body's dict
                    mask = mask_paths(decoded, self._mask_body)
            else:
                data = {}
            if query:
                self._query.bind(data, query)
        else:
            data = {}
            if query:
                self._query.bind(data, query)
        if bindings:
            self._bind_path(data, bindings)
        message = self._input()
        if data:
            self._codec.merge(data, message)
        if self._mask_field is not None:
            self._fill_mask(message, mask or [])
        return message

    def _refuse_body(self, decoded: Any) -> NoReturn:
        """A 400 for a body that is not an object where the path binds inside it: in the
        words the parse gives (``book: expected an object ...``), or, for a body field
        whose JSON form is not an object (a Timestamp), in ours."""
        assert self._body_field is not None
        self._codec.merge({self._body_field: decoded}, self._input())
        problem = "expected a JSON object: the path sets a field inside it"
        raise self._codec.field_error(self._body_field, f"{self._body_field}: {problem}", problem)

    def _bind_path(
        self, data: dict[str, Any], bindings: Sequence[tuple[tuple[str, ...], str]]
    ) -> None:
        for field_path, text in bindings:
            binding = self._path[field_path]
            value = binding.convert(text)
            if not binding.fits(value):
                check_value(self._codec, binding.field, value, text, "path", binding.shown)
            set_path(data, binding.names, value)

    def _bind_raw(
        self,
        bindings: Sequence[tuple[tuple[str, ...], str]],
        query: str,
        body: bytes,
        headers: Headers,
    ) -> Message:
        data: dict[str, Any] = {}
        if self._raw and query:  # with body "*" the query is not read, as for JSON
            self._query.bind(data, query)
        if bindings:
            self._bind_path(data, bindings)
        message = self._input()
        if data:
            self._codec.merge(data, message)
        target: Any = getattr(message, self._raw) if self._raw else message
        target.content_type = content_type_of(headers)
        target.data = body
        return message

    def _fill_mask(self, message: Message, paths: list[str]) -> None:
        """Set the update mask derived from the body, unless the client sent one."""
        assert self._mask_field is not None
        mask: Any = getattr(message, self._mask_field)
        if mask.paths:
            return
        mask.SetInParent()  # present, even when empty, as grpc-gateway sets it
        mask.paths.extend(paths)
