"""Messages to proto3 JSON objects by printers compiled once per message type.

protobuf's ``json_format.MessageToDict`` decides everything per field per call: is it a
map, a wrapper, a well-known type, an enum with a custom JSON name, an int64. For the
gateway's replies that was about a quarter of edge's own CPU per request. The answers
only depend on the field's descriptor, so here they are worked out once, when a type is
first printed (the route table asks for its reply types at load time), into a table of
(JSON key, converter) per field number; printing a message is then one ``ListFields`` and
one converter call per set field.

The output is json_format's, exactly: a property test compares the two on random
messages of every field kind. What this does not specialise goes to json_format itself:
the well-known types (Duration, Struct, Any, wrappers, ...), float and double values
(NaN, infinities, float32's shortest form), enum numbers without a name, and extensions;
and the ``emit_defaults`` option makes the whole message go to json_format. Timestamp,
the well-known type replies carry most (``create_time``, ``update_time``), is printed
here: json_format reaches it through three calls and a ``datetime`` sum (about 3 us);
``timestamp_json`` keeps each day's date text and formats the rest. A Timestamp out of
range still goes to json_format, which raises its own error.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

Printer = Callable[[Message], Any]
Convert = Callable[[Any], Any]

_INT64 = frozenset((FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64))
_PLAIN = frozenset(
    (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_BOOL,
    )
)


def _is_special(descriptor: Descriptor) -> bool:
    """Types whose JSON form is not an object of their fields: json_format's to print."""
    return descriptor.file.name.startswith("google/protobuf/")


# RFC 3339's range, as protobuf bounds a Timestamp: 0001-01-01 to 9999-12-31 (UTC)
TIMESTAMP_SECONDS_MIN = -62_135_596_800
TIMESTAMP_SECONDS_MAX = 253_402_300_799
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_DATES: dict[int, str] = {}  # days since 1970 -> "YYYY-MM-DDT": replies repeat a few days
DATES_KEPT = 4096


def timestamp_json(message: Any, slow: Printer) -> Any:
    """A Timestamp's JSON string as json_format writes it; ``slow`` (json_format) for one
    out of range, which it refuses in its own words."""
    seconds, nanos = message.seconds, message.nanos
    if not (
        TIMESTAMP_SECONDS_MIN <= seconds <= TIMESTAMP_SECONDS_MAX and 0 <= nanos < 1_000_000_000
    ):
        return slow(message)
    days, rest = divmod(seconds, 86_400)
    date = _DATES.get(days)
    if date is None:
        date = datetime.date.fromordinal(_EPOCH_ORDINAL + days).isoformat() + "T"
        if len(_DATES) < DATES_KEPT:
            _DATES[days] = date
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    clock = f"{date}{hours:02d}:{minutes:02d}:{rest:02d}"
    if not nanos:
        return clock + "Z"
    if not nanos % 1_000_000:
        return f"{clock}.{nanos // 1_000_000:03d}Z"
    if not nanos % 1000:
        return f"{clock}.{nanos // 1000:06d}Z"
    return f"{clock}.{nanos:09d}Z"


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class CompiledPrinter:
    """Per-type printers for one pool and one set of options (those of a ``JsonCodec``)."""

    def __init__(
        self,
        pool: descriptor_pool.DescriptorPool,
        *,
        proto_field_names: bool,
        enums_as_ints: bool,
    ) -> None:
        self._names = proto_field_names
        self._ints = enums_as_ints
        # json_format's own printer, for what is not specialised here (private API: the
        # property test in tests/unit/test_json_fast_paths.py fails if it ever changes)
        self._fallback = json_format._Printer(  # type: ignore[attr-defined]
            preserving_proto_field_name=proto_field_names,
            use_integers_for_enums=enums_as_ints,
            descriptor_pool=pool,
        )
        self._printers: dict[str, Printer] = {}

    def printer(self, descriptor: Descriptor) -> Printer:
        """The printer for messages of ``descriptor``, compiled on first request."""
        found = self._printers.get(descriptor.full_name)
        if found is not None:
            return found
        if _is_special(descriptor):
            printer: Printer = self._fallback._MessageToJsonObject
            if descriptor.full_name == "google.protobuf.Timestamp":
                slow = printer

                def printer(message: Message) -> Any:
                    return timestamp_json(message, slow)

            self._printers[descriptor.full_name] = printer
            return printer
        fields: dict[int, tuple[str, Convert]] = {}

        def print_message(message: Message) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for field, value in message.ListFields():
                spec = fields.get(field.number)
                try:
                    if spec is None or field.is_extension:
                        out[self._key(field)] = self._slow(field, value)
                        continue
                    key, convert = spec
                    out[key] = convert(value)
                except ValueError as exc:  # json_format's error, worded as it words it
                    raise json_format.SerializeToJsonError(
                        f"Failed to serialize {field.name} field: {exc}."
                    ) from exc
            return out

        # registered before the fields are compiled: a type may contain itself
        self._printers[descriptor.full_name] = print_message
        for field in descriptor.fields:
            fields[field.number] = (self._key(field), self._converter(field))
        return print_message

    def _key(self, field: FieldDescriptor) -> str:
        if field.is_extension:
            return f"[{field.full_name}]"
        return field.name if self._names else field.json_name

    def _slow(self, field: FieldDescriptor, value: Any) -> Any:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return self._map(field)(value)
        if field.is_repeated:
            one = self._fallback._FieldToJsonObject
            return [one(field, item) for item in value]
        return self._fallback._FieldToJsonObject(field, value)

    def _converter(self, field: FieldDescriptor) -> Convert:
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            return self._map(field)
        single = self._single(field)
        if field.is_repeated:
            if single is None:
                return list
            return lambda values: [single(item) for item in values]
        if single is None:
            return _same
        return single

    def _map(self, field: FieldDescriptor) -> Convert:
        entry = field.message_type
        assert entry is not None
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        convert = self._single(value_field) or _same
        key = _bool_key if key_field.cpp_type == FieldDescriptor.CPPTYPE_BOOL else str
        return lambda value: {key(item): convert(value[item]) for item in value}

    def _single(self, field: FieldDescriptor) -> Convert | None:
        """How one value of ``field`` becomes JSON; None: it is its own JSON value."""
        cpp = field.cpp_type
        if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
            nested: dict[str, Printer] = {}
            descriptor = field.message_type
            assert descriptor is not None
            name = descriptor.full_name

            def message(value: Message) -> Any:
                printer = nested.get(name)
                if printer is None:  # compiled on first use: types may be recursive
                    printer = nested[name] = self.printer(descriptor)
                return printer(value)

            return message
        if cpp == FieldDescriptor.CPPTYPE_STRING:
            return _bytes if field.type == FieldDescriptor.TYPE_BYTES else None
        if cpp in _PLAIN:
            return None
        if cpp in _INT64:
            return str
        if cpp == FieldDescriptor.CPPTYPE_ENUM:
            if self._ints:
                return None
            slow = self._fallback._FieldToJsonObject
            assert field.enum_type is not None
            names = {number: slow(field, number) for number in field.enum_type.values_by_number}

            def enum(value: int) -> Any:
                name = names.get(value, names)
                # a number without a name: json_format's rule (the number, or an error)
                return slow(field, value) if name is names else name

            return enum
        # float and double: NaN, infinities and float32's shortest form, as json_format
        slow_scalar = self._fallback._FieldToJsonObject
        return lambda value: slow_scalar(field, value)


def _same(value: Any) -> Any:
    return value


def _bool_key(value: Any) -> str:
    return "true" if value else "false"
