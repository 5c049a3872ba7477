"""Binding an HTTP request onto a gRPC request message (pure, no I/O).

Follows google.api.http: path variables set the fields they name; ``body: "*"`` maps the
whole JSON body onto the message, ``body: "field"`` maps it onto that field, and every
field not bound by the path or body may be set from a query parameter (``a.b.c=x``,
repeated fields as repeated keys, enums by name or number, well-known types from their
JSON string forms). Everything that can be resolved once per route — field descriptors,
converters, which query names are allowed — is resolved in ``RequestBinder.__init__``.

Binding assembles one JSON-shaped dict (body, then query, then path, which wins) and
hands it to the JSON codec in one pass. Query and path values are checked against their
field as they are read, so a 400 names the parameter as the client wrote it; body errors
name the field path (``json_check``). Every such 400 carries a ``google.rpc.BadRequest``
detail naming the field, and no Python exception text.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from edge.descriptors.http_rules import HttpRule
from edge.errors import BadRequest
from edge.transcode.json_check import quick_fit, value_problem
from edge.transcode.json_codec import JsonCodec, decode_json
from edge.transcode.json_words import quoted

FD = FieldDescriptor

# Well-known types whose JSON form is a string (so a query or path value can carry them).
_STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_WRAPPER_TYPES = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)


class BindingError(ValueError):
    """An HTTP rule cannot be applied to its method's messages (a load-time problem)."""


_UNFIT: Any = object()  # what a converter returns for a text it refuses


# Text of a query or path value -> its JSON form. A text that does not convert is passed
# on as it is, for the field check to refuse in the same words as in a body; bytes are
# held to strict base64 here (_UNFIT), as json_format would skip the junk.
Converter = Callable[[str], Any]
Fits = Callable[[Any], bool]
# a query parameter's field names, converter, repeatedness, leaf field and quick check
_QueryTarget = tuple[tuple[str, ...], Converter, bool, FieldDescriptor, Fits]


def _to_bool(text: str) -> bool | str:
    lowered = text.lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    return text


def _to_float(text: str) -> float | str:
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _to_enum(text: str) -> str | int:
    try:
        return int(text)
    except ValueError:
        return text


def _to_bytes(text: str) -> Any:
    # validate now so the error names the parameter; json_format takes either alphabet
    standard = text.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return _UNFIT
    return text


def _scalar_converter(field: FieldDescriptor) -> Converter | None:
    kind = field.type
    if kind == FD.TYPE_STRING:
        return str
    if kind == FD.TYPE_BOOL:
        return _to_bool
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return _to_float
    if kind == FD.TYPE_ENUM:
        return _to_enum
    if kind == FD.TYPE_BYTES:
        return _to_bytes
    message = field.message_type
    if message is not None:
        if message.full_name in _STRING_FORM_TYPES:
            return str
        if message.full_name in _WRAPPER_TYPES:
            return _scalar_converter(message.fields_by_name["value"])
        return None
    # integer kinds: json_format accepts decimal strings and range-checks them
    return str


def message_descriptor(message_type: type[Message]) -> Descriptor:
    """The descriptor of a message class (the stubs type it as a union of two impls)."""
    return cast(Descriptor, message_type.DESCRIPTOR)


def _field_named(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(name)
    if field is None:
        field = descriptor.fields_by_camelcase_name.get(name)
    return field


def resolve_field_path(descriptor: Descriptor, path: Sequence[str]) -> list[FieldDescriptor]:
    """Field descriptors along a dotted path; accepts proto and JSON (lowerCamel) names."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for index, name in enumerate(path):
        if current is None:
            raise BindingError(f"{'.'.join(path[:index])!r} is not a message field")
        field = _field_named(current, name)
        if field is None:
            raise BindingError(f"{current.full_name} has no field {name!r}")
        if index < len(path) - 1 and (field.message_type is None or _is_repeated(field)):
            raise BindingError(f"{'.'.join(path[: index + 1])!r} is not a singular message field")
        fields.append(field)
        current = field.message_type
    return fields


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(_is_repeated(field) and message is not None and message.GetOptions().map_entry)


def _set_path(target: dict[str, Any], names: Sequence[str], value: Any) -> None:
    for name in names[:-1]:
        child = target.get(name)
        if not isinstance(child, dict):
            child = {}
            target[name] = child
        target = child
    target[names[-1]] = value


class _PathBinding:
    __slots__ = ("convert", "field", "fits", "names", "shown")

    def __init__(self, descriptor: Descriptor, path: tuple[str, ...]) -> None:
        fields = resolve_field_path(descriptor, path)
        leaf = fields[-1]
        convert = _scalar_converter(leaf)
        if convert is None or _is_repeated(leaf):
            raise BindingError(
                f"path variable {'.'.join(path)!r} must name a singular scalar field"
            )
        self.names = tuple(f.name for f in fields)
        self.convert = convert
        self.field = leaf
        self.fits = quick_fit(leaf)
        self.shown = ".".join(path)


class RequestBinder:
    """Builds request messages for one (method, rule); constructed once at load time."""

    __slots__ = (
        "_body_field",
        "_body_whole",
        "_codec",
        "_ignored_query",
        "_input",
        "_path",
        "_query_cache",
        "_reject_unknown_query",
        "_reserved",
    )

    def __init__(
        self,
        input_type: type[Message],
        rule: HttpRule | None,
        codec: JsonCodec,
        *,
        reject_unknown_query: bool = True,
        ignored_query: Sequence[str] = (),
    ) -> None:
        descriptor = message_descriptor(input_type)
        self._input = input_type
        self._codec = codec
        self._reject_unknown_query = reject_unknown_query
        self._ignored_query = frozenset(ignored_query)
        self._query_cache: dict[str, _QueryTarget] = {}
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
        if body is not None and body != "*":
            fields = resolve_field_path(descriptor, body.split("."))
            if len(fields) != 1:
                raise BindingError(f"body {body!r} must name a top-level field")
            self._body_field = fields[0].name
            reserved.add((fields[0].name,))
        self._reserved = frozenset(reserved)

    @property
    def takes_body(self) -> bool:
        return self._body_whole or self._body_field is not None

    @property
    def body_description(self) -> str:
        """Where the body goes, in words (for ``/admin/explain``)."""
        if self._body_whole:
            return "the whole request message (query parameters are not read)"
        if self._body_field is not None:
            return f"the field {self._body_field}"
        return "no body"

    def query_fields(self, query: str) -> dict[str, str]:
        """Each query parameter and the field it sets, or why it cannot (for explaining)."""
        if self._body_whole:
            return {key: "ignored: the body is the whole message" for key, _ in parse_qsl(query)}
        out: dict[str, str] = {}
        for key, _ in parse_qsl(query, keep_blank_values=True):
            try:
                target = self._query_target(key)
            except BadRequest as exc:
                out[key] = f"error: {exc.message}"
                continue
            out[key] = ".".join(target[0]) if target is not None else "ignored"
        return out

    def bind(
        self,
        bindings: Sequence[tuple[tuple[str, ...], str]],
        query: str,
        body: bytes,
    ) -> Message:
        """The request message for one HTTP request; raises BadRequest on any bad input."""
        data: dict[str, Any]
        if self._body_whole:
            decoded = decode_json(body) if body.strip() else {}
            if not isinstance(decoded, dict):
                raise BadRequest("request body must be a JSON object")
            data = decoded
        elif self._body_field is not None:
            data = {self._body_field: decode_json(body)} if body.strip() else {}
            if query:
                self._bind_query(data, query)
        else:
            data = {}
            if query:
                self._bind_query(data, query)
        for field_path, text in bindings:
            binding = self._path[field_path]
            value = binding.convert(text)
            if not binding.fits(value):
                self._check(binding.field, value, text, "path", binding.shown)
            _set_path(data, binding.names, value)
        message = self._input()
        if data:
            self._codec.merge(data, message)
        return message

    def _check(self, field: FieldDescriptor, value: Any, text: str, kind: str, name: str) -> None:
        """Refuse a query or path value that does not fit, in the words of a body error."""
        if value is _UNFIT:
            problem: str | None = f"expected a base64 string, got {quoted(text)}"
        else:
            problem = value_problem(
                value,
                field,
                pool=self._codec.pool,
                ignore_unknown_fields=self._codec.options.ignore_unknown_fields,
            )
        if problem is not None:
            message = f"{kind} parameter {quoted(name)}: {problem}"
            raise self._codec.field_error(name, message, problem)

    def _query_error(self, key: str, problem: str) -> BadRequest:
        return self._codec.field_error(key, f"query parameter {quoted(key)} {problem}", problem)

    def _bind_query(self, data: dict[str, Any], query: str) -> None:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            raise BadRequest("malformed query string", internal=str(exc)) from exc
        for key, text in pairs:
            if key in self._ignored_query:
                continue
            target = self._query_target(key)
            if target is None:
                continue
            names, convert, repeated, leaf, fits = target
            value = convert(text)
            if not fits(value):
                self._check(leaf, value, text, "query", key)
            if repeated:
                parent = data
                for name in names[:-1]:
                    parent = parent.setdefault(name, {})
                parent.setdefault(names[-1], []).append(value)
            else:
                if _get_path(data, names) is not None:
                    raise self._query_error(key, "given more than once")
                _set_path(data, names, value)

    def _query_target(self, key: str) -> _QueryTarget | None:
        cached = self._query_cache.get(key)
        if cached is not None:
            return cached
        try:
            fields = resolve_field_path(message_descriptor(self._input), key.split("."))
        except BindingError as exc:
            if self._reject_unknown_query:
                raise self._codec.field_error(
                    key, f"unknown query parameter {quoted(key)}: {exc}", str(exc)
                ) from exc
            return None
        names = tuple(f.name for f in fields)
        for length in range(1, len(names) + 1):
            if names[:length] in self._reserved:
                raise self._query_error(key, "sets a field already bound by the path or body")
        leaf = fields[-1]
        convert = _scalar_converter(leaf)
        if convert is None or _is_map(leaf):
            raise self._query_error(key, "names a message field, not a value")
        target = (names, convert, _is_repeated(leaf), leaf, quick_fit(leaf))
        if len(self._query_cache) < 1024:  # bounded: keys come from clients
            self._query_cache[key] = target
        return target


def _get_path(data: dict[str, Any], names: Sequence[str]) -> Any:
    current: Any = data
    for name in names:
        if not isinstance(current, dict):
            return None
        current = current.get(name)
    return current
