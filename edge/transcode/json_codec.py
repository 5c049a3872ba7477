"""The proto3 JSON mapping, both ways, with the gateway's options fixed at load time.

protobuf's json_format does the mapping (int64 as strings, bytes as base64, enums by
name, the well-known types, ``Any`` resolved through the registry's pool); replies are
printed by ``json_printer``'s per-type compiled printers, which give json_format's output
for a fraction of its cost. orjson does the byte-level encode and decode, which is several
times faster than the json module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

import orjson
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from edge.errors import BadRequest
from edge.transcode.json_check import LIBRARY_REFUSALS, find_violation
from edge.transcode.json_merge import NOT_FAST, Check, fast_values, plain_fields
from edge.transcode.json_printer import CompiledPrinter, Printer

# ParseDict's refusals: its ParseError, and what it lets out of library calls unwrapped
_REFUSALS: tuple[type[Exception], ...] = (json_format.ParseError, *LIBRARY_REFUSALS)
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_INTERNAL_CHARS = 300  # of an exception's text in the log: it may quote the body


@dataclass(frozen=True, slots=True)
class JsonOptions:
    ignore_unknown_fields: bool = False
    emit_defaults: bool = False
    proto_field_names: bool = False
    enums_as_ints: bool = False


class JsonCodec:
    """Encodes and decodes messages of one descriptor pool under one set of options."""

    __slots__ = (
        "_compiled",
        "_emit",
        "_ignore",
        "_ints",
        "_names",
        "_plain",
        "options",
        "pool",
    )

    def __init__(self, pool: descriptor_pool.DescriptorPool, options: JsonOptions) -> None:
        self.pool = pool
        self.options = options
        self._ignore = options.ignore_unknown_fields
        self._emit = options.emit_defaults
        self._names = options.proto_field_names
        self._ints = options.enums_as_ints
        self._plain: dict[str, dict[str, tuple[str, Check]]] = {}  # per type, made once
        # emit_defaults is json_format's alone (rare, and its rules are subtle)
        self._compiled = (
            None
            if options.emit_defaults
            else CompiledPrinter(
                pool, proto_field_names=options.proto_field_names, enums_as_ints=self._ints
            )
        )

    def printer(self, descriptor: Descriptor) -> Printer:
        """The JSON-object printer for one message type; ask once, at load time."""
        if self._compiled is None:
            return self._slow_dict
        return self._compiled.printer(descriptor)

    def to_dict(self, message: Message) -> dict[str, Any]:
        return self.printer(message.DESCRIPTOR)(message)  # type: ignore[arg-type,no-any-return]

    def _slow_dict(self, message: Message) -> Any:
        return json_format.MessageToDict(
            message,
            always_print_fields_with_no_presence=self._emit,
            preserving_proto_field_name=self._names,
            use_integers_for_enums=self._ints,
            descriptor_pool=self.pool,
        )

    def encode(self, message: Message) -> bytes:
        return orjson.dumps(self.to_dict(message))

    def merge(self, value: Any, message: Message) -> None:
        """Fill ``message`` from a decoded JSON value; type errors become 400s."""
        if type(value) is dict:
            descriptor = message.DESCRIPTOR
            table = self._plain.get(descriptor.full_name)
            if table is None:
                table = self._plain[descriptor.full_name] = plain_fields(descriptor)  # type: ignore[arg-type]
            pairs = fast_values(table, value)
            if pairs is not NOT_FAST:
                try:
                    for name, item in pairs:
                        setattr(message, name, item)
                    return
                except (ValueError, TypeError):  # e.g. a lone surrogate: ParseDict's to say
                    message.Clear()
        try:
            json_format.ParseDict(
                value, message, ignore_unknown_fields=self._ignore, descriptor_pool=self.pool
            )
        except _REFUSALS as exc:
            raise self._refusal(value, cast(Descriptor, message.DESCRIPTOR), exc) from exc

    def _refusal(self, value: Any, descriptor: Descriptor, exc: Exception) -> BadRequest:
        """A 400 naming where ``value`` breaks ``descriptor``; exc's words go to the log."""
        internal = _clipped(f"{type(exc).__name__}: {exc}")
        violation = find_violation(
            value, descriptor, pool=self.pool, ignore_unknown_fields=self._ignore
        )
        if violation is None:  # json_check misses a rule ParseDict has: still no Python text
            return BadRequest(f"the request does not fit {descriptor.full_name}", internal=internal)
        return self.field_error(
            violation.field, violation.message, violation.description, internal=internal
        )

    def field_error(
        self, field: str, message: str, description: str, *, internal: str | None = None
    ) -> BadRequest:
        """A 400 about one field, with a ``google.rpc.BadRequest`` detail naming it.

        ``field`` is the path as the client spelled it (``book.tags[2]``) or the query or
        path parameter's name; the detail's keys follow the route's JSON naming option.
        """
        key = "field_violations" if self._names else "fieldViolations"
        detail = {
            "@type": _BAD_REQUEST_TYPE,
            key: [{"field": field, "description": description}],
        }
        return BadRequest(message, details=[detail], internal=internal)


def _clipped(text: str) -> str:
    """Exception text fit for one log line: it quotes the client's values, so it is
    clipped, and its newlines and control characters are escaped."""
    if len(text) > _INTERNAL_CHARS:
        text = text[:_INTERNAL_CHARS] + "..."
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8", "backslashreplace").decode()


def decode_json(body: bytes) -> Any:
    """Parse a request body; malformed JSON is a 400 that says where it broke.

    The position is the client's to act on; orjson's words for the fault ("unexpected
    character", "depth limit exceeded") change between its releases and go to the log.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise BadRequest(f"malformed JSON body at {where}", internal=exc.msg) from exc
    if type(value) is dict and duplicate_keys(body, value):
        raise BadRequest("malformed JSON body: a key appears twice in one object")
    return value


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def duplicate_keys(body: bytes | str, value: Any) -> bool:
    """Whether some object in ``body`` names a key twice (``value`` is what it parsed to).

    orjson keeps the last of two equal keys; ``json_format.Parse`` (which the fast path
    stands in for) and grpc-gateway refuse them, and two parsers that disagree on which
    one counts (a WAF in front reading the first) are a classic bypass. Outside strings,
    every ``:`` in JSON separates a key from its value, so a body holds as many keys as
    colons, and the parsed objects as many keys unless two collapsed into one. Linear, and
    nothing is walked for a body without objects.
    """
    raw = body.encode() if isinstance(body, str) else body
    colons = _JSON_STRING.sub(b"", raw).count(b":")
    keys = 0
    stack = [value] if type(value) in (dict, list) else []
    while stack:
        item = stack.pop()
        if type(item) is dict:
            keys += len(item)
            stack.extend(v for v in item.values() if type(v) in (dict, list))
        else:
            stack.extend(v for v in item if type(v) in (dict, list))
    return colons != keys
