"""Query parameters onto the fields of a request message (pure, no I/O).

The rules are grpc-gateway v2's (``runtime/query.go``), with its silent cases made
explicit:

- ``a.b.c=x`` sets a field by its dotted path, proto or JSON names; a repeated field
  takes repeated keys (``tag=a&tag=b``); a singular field given twice is a 400.
- ``m[key]=value`` sets one entry of a map field (grpc-gateway's syntax: the last ``[``
  of a key ending in ``]`` splits it, so ``m[a][b]`` names a field ``m[a]``, which does
  not exist). Keys are held to the map's key type (decimal integers, ``true``/``false``
  or ``1``/``0`` for bool keys); a key given twice, a map of messages, or brackets on a
  field that is not a map are 400s (grpc-gateway refuses the first two and appends the
  key to a repeated field as a value).
- A parameter naming a field the path or the body already binds (the field itself or
  anything under it) is ignored: the path or body value wins (grpc-gateway's filter).
- A name that goes inside a message carried whole as one JSON value (Timestamp,
  Duration, FieldMask, the wrappers, Struct, Value, ListValue, Any: ``updateMask.paths``,
  ``ts.seconds``) is a 400: it would set, beside or over the value, what the value says.
- Any other unknown parameter is a 400, or ignored when the route says so.
- A name of more than ``MAX_QUERY_DEPTH`` dotted segments is a 400 (a recursive message
  has names of any depth, and a client should not make the gateway walk them).

A name is resolved in one walk of its segments, and what it resolves to (a field, bound,
or nothing) is cached per route for short names (bounded: names come from clients), so a
request pays one dict probe per parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from edge.errors import BadRequest
from edge.transcode.field_values import (
    FD,
    VALUE_FORM_TYPES,
    Converter,
    check_value,
    field_named,
    get_path,
    is_map,
    is_repeated,
    scalar_converter,
    set_path,
    to_bool,
)
from edge.transcode.json_check import quick_fit
from edge.transcode.json_codec import JsonCodec
from edge.transcode.json_words import quoted

Fits = Callable[[Any], bool]
_CACHE_LIMIT = 1024
_CACHED_NAME_CHARS = 256  # longer names are resolved each time, never kept
MAX_QUERY_DEPTH = 32  # segments of a dotted query name (docs/http-mapping.md)
_MISSING: Any = object()
_DECIMAL = re.compile(r"-?[0-9]+")
_INT_KEYS = frozenset(
    {
        FD.TYPE_INT32,
        FD.TYPE_INT64,
        FD.TYPE_UINT32,
        FD.TYPE_UINT64,
        FD.TYPE_SINT32,
        FD.TYPE_SINT64,
        FD.TYPE_FIXED32,
        FD.TYPE_FIXED64,
        FD.TYPE_SFIXED32,
        FD.TYPE_SFIXED64,
    }
)


class _Field:
    """A parameter that sets a plain field: its names, converter and quick check."""

    __slots__ = ("convert", "fits", "leaf", "names", "repeated")

    def __init__(self, fields: Sequence[FieldDescriptor], convert: Converter) -> None:
        self.names = tuple(f.name for f in fields)
        self.leaf = fields[-1]
        self.convert = convert
        self.repeated = is_repeated(self.leaf)
        self.fits = quick_fit(self.leaf)


class _MapField:
    """A parameter ``m[key]`` that sets one entry of a map field."""

    __slots__ = ("convert", "fits", "key_field", "names", "value_field")

    def __init__(self, fields: Sequence[FieldDescriptor], convert: Converter) -> None:
        entry = fields[-1].message_type
        assert entry is not None  # a map field's entry message
        self.names = tuple(f.name for f in fields)
        self.key_field: FieldDescriptor = entry.fields_by_name["key"]
        self.value_field: FieldDescriptor = entry.fields_by_name["value"]
        self.convert = convert
        self.fits = quick_fit(self.value_field)


_BOUND: Any = object()  # a parameter for a field the path or body binds: ignored
_Target = _Field | _MapField


def split_map_key(key: str) -> tuple[str, str] | None:
    """``("m", "k")`` for ``m[k]``, as grpc-gateway's ``^(.*)\\[(.*)\\]$`` splits it."""
    if not key.endswith("]") or "\n" in key:  # RE2's "." stops at a newline
        return None
    open_at = key.rfind("[")
    if open_at <= 0:
        return None
    return key[:open_at], key[open_at + 1 : -1]


class QueryBinder:
    """Binds the query string of one route; made once at load time."""

    __slots__ = (
        "_cache",
        "_codec",
        "_descriptor",
        "_ignored",
        "_map_cache",
        "_reject_unknown",
        "_reserved",
        "_reserved_prefixes",
    )

    def __init__(
        self,
        descriptor: Descriptor,
        codec: JsonCodec,
        reserved: frozenset[tuple[str, ...]],
        *,
        reject_unknown: bool,
        ignored: frozenset[str],
    ) -> None:
        self._descriptor = descriptor
        self._codec = codec
        self._reserved = reserved
        # the names that lead to a bound field, so a walk stops looking once past them
        self._reserved_prefixes = frozenset(
            names[:length] for names in reserved for length in range(1, len(names))
        )
        self._reject_unknown = reject_unknown
        self._ignored = ignored
        # what each name sets, or None for a name ignored as unknown
        self._cache: dict[str, _Target | None] = {}  # plain names
        self._map_cache: dict[str, _Target | None] = {}  # the names before [key]

    def bind(self, data: dict[str, Any], query: str) -> None:
        """Add the query's values to ``data`` (the request's JSON form); 400 on bad input."""
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            raise BadRequest("malformed query string", internal=str(exc)) from exc
        for key, text in pairs:
            if key in self._ignored:
                continue
            split = split_map_key(key)
            target = self._target(key) if split is None else self._target(split[0], key)
            if target is None or target is _BOUND:
                continue
            if type(target) is _MapField:
                assert split is not None
                self._bind_entry(data, target, key, split[1], text)
                continue
            assert type(target) is _Field
            value = target.convert(text)
            if not target.fits(value):
                check_value(self._codec, target.leaf, value, text, "query", key)
            names = target.names
            if target.repeated:
                parent = data
                for name in names[:-1]:
                    parent = parent.setdefault(name, {})
                parent.setdefault(names[-1], []).append(value)
            else:
                if get_path(data, names) is not None:
                    raise self._error(key, "given more than once")
                set_path(data, names, value)

    def describe(self, query: str) -> dict[str, str]:
        """Each parameter and the field it sets, or why it does not (``/admin/explain``)."""
        out: dict[str, str] = {}
        for key, _ in parse_qsl(query, keep_blank_values=True):
            if key in self._ignored:
                out[key] = "ignored"
                continue
            split = split_map_key(key)
            try:
                target = self._target(key) if split is None else self._target(split[0], key)
            except BadRequest as exc:
                out[key] = f"error: {exc.message}"
                continue
            if target is None:
                out[key] = "ignored"
            elif target is _BOUND:
                out[key] = "ignored: the path or body binds this field"
            elif split is not None:
                out[key] = f"{'.'.join(target.names)}[{split[1]}]"
            else:
                out[key] = ".".join(target.names)
        return out

    def _bind_entry(
        self, data: dict[str, Any], target: _MapField, key: str, map_key: str, text: str
    ) -> None:
        entry_key = self._map_key(target.key_field, key, map_key)
        value = target.convert(text)
        if not target.fits(value):
            check_value(self._codec, target.value_field, value, text, "query", key)
        names = target.names
        parent = data
        for name in names[:-1]:
            parent = parent.setdefault(name, {})
        entries = parent.setdefault(names[-1], {})
        if entry_key in entries:
            raise self._error(key, "given more than once")
        entries[entry_key] = value

    def _map_key(self, field: FieldDescriptor, key: str, text: str) -> str:
        """The map key's JSON form (a string), or a 400 naming the parameter."""
        kind = field.type
        if kind == FD.TYPE_STRING:
            return text
        if kind == FD.TYPE_BOOL:
            flag = to_bool(text)
            if isinstance(flag, bool):
                return "true" if flag else "false"
            raise self._error(key, f"has map key {quoted(text)}, expected true or false")
        if kind in _INT_KEYS and _DECIMAL.fullmatch(text):
            check_value(self._codec, field, text, text, "query", key)  # its range
            return str(int(text))
        raise self._error(key, f"has map key {quoted(text)}, expected a decimal integer")

    def _error(self, key: str, problem: str) -> BadRequest:
        return self._codec.field_error(key, f"query parameter {quoted(key)} {problem}", problem)

    def _target(self, name: str, shown: str | None = None) -> _Target | None:
        """What the parameter ``name`` sets; ``shown`` is the whole key of an ``m[k]``."""
        cache = self._cache if shown is None else self._map_cache
        cached = cache.get(name, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        target = self._walk(name, shown if shown is not None else name, entry=shown is not None)
        # bounded: names come from clients, so only short ones, and only so many, are kept
        if len(name) <= _CACHED_NAME_CHARS and len(cache) < _CACHE_LIMIT:
            cache[name] = target
        return target

    def _walk(self, name: str, key: str, *, entry: bool) -> _Target | None:
        """Resolve ``name`` segment by segment, once: a bound prefix ends the walk.

        The walk is linear in the name and the name is capped at ``MAX_QUERY_DEPTH``
        segments, so a long dotted name costs a client more than it costs the gateway.
        """
        parts = name.split(".", MAX_QUERY_DEPTH)
        if len(parts) > MAX_QUERY_DEPTH:
            raise self._error(key, f"names a field more than {MAX_QUERY_DEPTH} levels deep")
        fields: list[FieldDescriptor] = []
        names: tuple[str, ...] = ()
        tracking = True
        current: Descriptor = self._descriptor
        last = len(parts) - 1
        for index, part in enumerate(parts):
            field = field_named(current, part)
            if field is None:
                return self._unknown(key, parts, index, current)
            fields.append(field)
            if tracking:  # only while the names so far lead to a bound field
                names = (*names, field.name)
                if names in self._reserved:
                    return _BOUND  # type: ignore[no-any-return]
                tracking = names in self._reserved_prefixes
            if index == last:
                break
            message = field.message_type
            if message is not None and message.full_name in VALUE_FORM_TYPES:
                whole = quoted(".".join(parts[: index + 1]))
                raise self._error(
                    key, f"names a field inside a value ({whole} is given whole, as JSON)"
                )
            if message is None or is_repeated(field):
                return self._unknown(key, parts, index + 1, None)
            current = message
        return self._resolve(fields, key, entry=entry)

    def _unknown(
        self, key: str, parts: list[str], index: int, message: Descriptor | None
    ) -> _Target | None:
        """A name that sets no field: a 400, or ignored when the route says so."""
        if not self._reject_unknown:
            return None
        if message is None:
            problem = f"{quoted('.'.join(parts[:index]))} is not a singular message field"
        else:
            problem = f"{message.full_name} has no field {quoted(parts[index])}"
        raise self._codec.field_error(
            key, f"unknown query parameter {quoted(key)}: {problem}", problem
        )

    def _resolve(self, fields: list[FieldDescriptor], key: str, *, entry: bool) -> _Target:
        leaf = fields[-1]
        if entry:
            if not is_map(leaf):
                raise self._error(key, "uses [key] on a field that is not a map")
            entry_type = leaf.message_type
            assert entry_type is not None
            convert = scalar_converter(entry_type.fields_by_name["value"])
            if convert is None:
                raise self._error(key, "sets a map of messages, which needs a body")
            return _MapField(fields, convert)
        convert = scalar_converter(leaf)
        if convert is None or is_map(leaf):
            raise self._error(key, "names a message field, not a value")
        return _Field(fields, convert)
