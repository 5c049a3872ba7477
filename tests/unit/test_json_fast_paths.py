"""The JSON fast paths give json_format's results exactly, on random input.

Printing: two message types are filled at random: the test service's ``Kitchen`` (the
well-known types, a oneof, proto3 optional, maps) and ``All``, made here, with every
scalar type singular, repeated and as map keys and values, enums with unknown numbers,
and itself as a field (recursion). Each is printed by ``CompiledPrinter`` and by
``MessageToDict`` under every option the printer takes, and the orjson bytes (so key order
too) must be equal. Parsing: random flat JSON objects go through ``JsonCodec.merge`` (with
its fast path) and ``ParseDict``; both must fail, or both give the same message.
"""

from __future__ import annotations

import datetime
import math
import random
import struct
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.transcode import json_printer
from edge.transcode.json_printer import (
    TIMESTAMP_SECONDS_MAX,
    TIMESTAMP_SECONDS_MIN,
    CompiledPrinter,
)
from edgetest.v1 import kitchen_pb2

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": F.TYPE_DOUBLE,
    "float": F.TYPE_FLOAT,
    "int64": F.TYPE_INT64,
    "uint64": F.TYPE_UINT64,
    "int32": F.TYPE_INT32,
    "fixed64": F.TYPE_FIXED64,
    "fixed32": F.TYPE_FIXED32,
    "bool": F.TYPE_BOOL,
    "string": F.TYPE_STRING,
    "bytes": F.TYPE_BYTES,
    "uint32": F.TYPE_UINT32,
    "sfixed32": F.TYPE_SFIXED32,
    "sfixed64": F.TYPE_SFIXED64,
    "sint32": F.TYPE_SINT32,
    "sint64": F.TYPE_SINT64,
}
MAP_KEYS = ("int64", "uint32", "bool", "string", "sint32", "fixed64")


def _all_type() -> tuple[descriptor_pool.DescriptorPool, type[Message]]:
    """A pool holding ``edgetest.printer.All``: every field shape the printer handles."""
    file = descriptor_pb2.FileDescriptorProto(
        name="edgetest/printer.proto", package="edgetest.printer", syntax="proto3"
    )
    colour = file.enum_type.add(name="Colour")
    for number, name in enumerate(("COLOUR_UNSPECIFIED", "COLOUR_RED", "COLOUR_BLUE")):
        colour.value.add(name=name, number=number)
    message = file.message_type.add(name="All")
    number = 1

    def add(name: str, kind: int, label: int = F.LABEL_OPTIONAL, type_name: str = "") -> None:
        nonlocal number
        field = message.field.add(name=name, number=number, type=kind, label=label)
        field.json_name = "".join(
            part if i == 0 else part.capitalize() for i, part in enumerate(name.split("_"))
        )
        if type_name:
            field.type_name = type_name
        number += 1

    for name, kind in SCALARS.items():
        add(f"one_{name}", kind)
        add(f"many_{name}", kind, F.LABEL_REPEATED)
    # one field's json name is another field's name: ParseDict takes the json name
    add("decoy", F.TYPE_STRING)
    message.field[-1].json_name = "target_name"
    add("target_name", F.TYPE_STRING)
    add("colour", F.TYPE_ENUM, type_name=".edgetest.printer.Colour")
    add("colours", F.TYPE_ENUM, F.LABEL_REPEATED, ".edgetest.printer.Colour")
    add("child", F.TYPE_MESSAGE, type_name=".edgetest.printer.All")
    add("children", F.TYPE_MESSAGE, F.LABEL_REPEATED, ".edgetest.printer.All")
    values = {"colour": (F.TYPE_ENUM, ".edgetest.printer.Colour")}
    values.update({name: (SCALARS[name], "") for name in ("double", "bytes", "int64", "bool")})
    values["all"] = (F.TYPE_MESSAGE, ".edgetest.printer.All")
    for key in MAP_KEYS:
        for value, (kind, type_name) in values.items():
            entry_name = f"Map{key.capitalize()}{value.capitalize()}Entry"
            entry = message.nested_type.add(name=entry_name)
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=SCALARS[key], label=F.LABEL_OPTIONAL)
            field = entry.field.add(name="value", number=2, type=kind, label=F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
            add(
                f"map_{key}_{value}",
                F.TYPE_MESSAGE,
                F.LABEL_REPEATED,
                f".edgetest.printer.All.{entry_name}",
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool, message_factory.GetMessageClass(pool.FindMessageTypeByName("edgetest.printer.All"))


POOL, ALL = _all_type()


def _scalar(field: FieldDescriptor, rnd: random.Random) -> Any:
    kind = field.type
    if kind == F.TYPE_DOUBLE:
        return rnd.choice([0.0, -0.0, 1.5, 1e300, math.nan, math.inf, -math.inf, rnd.random()])
    if kind == F.TYPE_FLOAT:
        value = rnd.choice([0.1, 3.4e38, math.nan, -math.inf, rnd.uniform(-1e6, 1e6)])
        return struct.unpack("f", struct.pack("f", value))[0]
    if kind == F.TYPE_BOOL:
        return rnd.random() < 0.5
    if kind == F.TYPE_STRING:
        return "".join(rnd.choice('aé☃\x00"\\ z𝄞') for _ in range(rnd.randint(0, 6)))
    if kind == F.TYPE_BYTES:
        return rnd.randbytes(rnd.randint(0, 7))
    if kind == F.TYPE_ENUM:
        assert field.enum_type is not None
        known = list(field.enum_type.values_by_number)
        return rnd.choice([*known, 7, -3])  # open enums keep unknown numbers
    bits = 64 if kind in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64,
                          F.TYPE_SINT64) else 32  # fmt: skip
    if kind in (F.TYPE_UINT64, F.TYPE_UINT32, F.TYPE_FIXED64, F.TYPE_FIXED32):
        return rnd.choice([0, 1, 2**bits - 1, rnd.randrange(2**bits)])
    return rnd.choice([0, -1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, rnd.randrange(-99, 99)])


def _well_known(message: Message, rnd: random.Random, depth: int) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.seconds, message.nanos = rnd.randint(0, 2**34), rnd.choice([0, 1000, 1])
    elif name == "google.protobuf.Duration":
        message.seconds = rnd.randint(-(10**9), 10**9)
        message.nanos = 0 if message.seconds else rnd.choice([0, 5, -5])
    elif name == "google.protobuf.FieldMask":
        message.paths.extend(rnd.sample(["a", "b_c", "d.e_f"], rnd.randint(0, 3)))
    elif name == "google.protobuf.Struct":
        message.update({"k": rnd.random(), "s": "x", "n": None, "l": [1, "two", True]})
    elif name == "google.protobuf.Value":
        message.string_value = "v"
    elif name == "google.protobuf.ListValue":
        message.extend([1.5, "x", None, {"a": False}])
    elif name == "google.protobuf.Any":
        inner = kitchen_pb2.Nested()
        fill(inner, rnd, depth + 1)
        message.Pack(inner)
    elif name == "google.protobuf.Empty":
        pass
    else:  # a wrapper
        field = message.DESCRIPTOR.fields_by_name["value"]
        message.value = _scalar(field, rnd)


def fill(message: Message, rnd: random.Random, depth: int = 0) -> None:
    """Set a random selection of ``message``'s fields to random values."""
    descriptor: Descriptor = message.DESCRIPTOR
    if descriptor.file.name.startswith("google/protobuf/"):
        _well_known(message, rnd, depth)
        return
    for field in descriptor.fields:
        if rnd.random() < 0.4:
            continue
        value_type = field.message_type
        if value_type is not None and value_type.GetOptions().map_entry:
            key_field = value_type.fields_by_name["key"]
            value_field = value_type.fields_by_name["value"]
            target = getattr(message, field.name)
            for _ in range(rnd.randint(0, 3)):
                key = _scalar(key_field, rnd)
                if value_field.message_type is not None:
                    if depth < 2:
                        fill(target[key], rnd, depth + 1)
                else:
                    target[key] = _scalar(value_field, rnd)
        elif value_type is not None:
            if depth >= 2:
                continue
            if field.is_repeated:
                for _ in range(rnd.randint(0, 2)):
                    fill(getattr(message, field.name).add(), rnd, depth + 1)
            else:
                fill(getattr(message, field.name), rnd, depth + 1)
                getattr(message, field.name).SetInParent()
        elif field.is_repeated:
            getattr(message, field.name).extend(
                _scalar(field, rnd) for _ in range(rnd.randint(0, 3))
            )
        else:
            setattr(message, field.name, _scalar(field, rnd))


OPTIONS = [(names, ints) for names in (False, True) for ints in (False, True)]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), kitchen=st.booleans())
def test_compiled_printer_matches_json_format(seed: int, kitchen: bool) -> None:
    rnd = random.Random(seed)
    message: Message = kitchen_pb2.Kitchen() if kitchen else ALL()
    pool = descriptor_pool.Default() if kitchen else POOL
    fill(message, rnd)
    for names, ints in OPTIONS:
        compiled = CompiledPrinter(pool, proto_field_names=names, enums_as_ints=ints)
        fast = compiled.printer(message.DESCRIPTOR)(message)
        slow = json_format.MessageToDict(
            message,
            preserving_proto_field_name=names,
            use_integers_for_enums=ints,
            descriptor_pool=pool,
        )
        assert orjson.dumps(fast) == orjson.dumps(slow), (names, ints)


# -- the request side: JsonCodec.merge's fast path against ParseDict ----------------------

_VALUES = st.one_of(
    st.text(max_size=4),
    st.integers(-(2**65), 2**65),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["COLOUR_RED", "COLOUR_BLUE", "COLOUR_GREEN", "1", "-5", "true"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "1"]), st.integers(0, 3), max_size=1),
)
_KEYS = st.sampled_from(
    [f"one_{name}" for name in SCALARS]
    + [f"one{name.capitalize()}" for name in SCALARS]
    + ["colour", "colours", "child", "nope", "many_string", "target_name", "targetName"]
    + ["decoy"]
)


@settings(max_examples=400, deadline=None)
@given(data=st.dictionaries(_KEYS, _VALUES, max_size=4), ignore=st.booleans())
@example(data={"target_name": "v"}, ignore=False)  # a json name that is another's name
def test_merge_fast_path_agrees_with_parse_dict(data: dict[str, Any], ignore: bool) -> None:
    from edge.errors import BadRequest
    from edge.transcode.json_codec import JsonCodec, JsonOptions

    codec = JsonCodec(POOL, JsonOptions(ignore_unknown_fields=ignore))
    fast, slow = ALL(), ALL()
    try:
        codec.merge(data, fast)
    except BadRequest:
        fast_failed = True
    else:
        fast_failed = False
    try:
        json_format.ParseDict(data, slow, ignore_unknown_fields=ignore, descriptor_pool=POOL)
    except (json_format.ParseError, ValueError, TypeError, AttributeError):
        slow_failed = True
    else:
        slow_failed = False
    assert fast_failed == slow_failed
    if not fast_failed:
        assert fast == slow


def test_merge_leaves_well_known_request_types_to_parse_dict() -> None:
    from google.protobuf import duration_pb2, timestamp_pb2, wrappers_pb2

    from edge.errors import BadRequest
    from edge.transcode.json_codec import JsonCodec, JsonOptions

    codec = JsonCodec(descriptor_pool.Default(), JsonOptions())
    for message, data in (
        (wrappers_pb2.StringValue(), {"value": "x"}),  # its JSON is "x", not an object
        (timestamp_pb2.Timestamp(), {"seconds": 5}),
        (duration_pb2.Duration(), {"seconds": 5, "nanos": 7}),
    ):
        try:
            codec.merge(data, message)
        except BadRequest:
            continue
        raise AssertionError(f"{type(message).__name__} took {data} as an object")


def test_an_unprintable_reply_fails_as_json_format_fails() -> None:
    # a Timestamp out of range: the same exception type and words from both
    message = kitchen_pb2.Kitchen(string_value="x")
    message.timestamp.seconds = 2**62
    compiled = CompiledPrinter(
        descriptor_pool.Default(), proto_field_names=False, enums_as_ints=False
    )
    errors = []
    for printer in (compiled.printer(message.DESCRIPTOR), json_format.MessageToDict):
        try:
            printer(message)
        except Exception as exc:
            errors.append((type(exc), str(exc)))
    assert len(errors) == 2
    assert errors[0] == errors[1]


@settings(max_examples=3000, deadline=None)
@given(
    seconds=st.one_of(
        st.integers(TIMESTAMP_SECONDS_MIN - 2, TIMESTAMP_SECONDS_MAX + 2),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([TIMESTAMP_SECONDS_MIN, TIMESTAMP_SECONDS_MAX, 0, -1, 86_399, 86_400]),
    ),
    nanos=st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 999).map(lambda n: n * 1_000_000),
        st.integers(0, 999_999).map(lambda n: n * 1000),
        st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1]),
    ),
)
def test_a_timestamp_prints_as_json_format_prints_it(seconds: int, nanos: int) -> None:
    """edge's own Timestamp printer (not json_format's) against json_format, refusals too."""
    from google.protobuf import timestamp_pb2

    message = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    compiled = CompiledPrinter(
        descriptor_pool.Default(), proto_field_names=False, enums_as_ints=False
    )
    outcomes = []
    for printer in (compiled.printer(message.DESCRIPTOR), json_format.MessageToDict):
        try:
            outcomes.append(printer(message))
        except Exception as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]


def test_a_timestamp_in_range_is_printed_by_edge(monkeypatch: Any) -> None:
    """The point of ``timestamp_json``: json_format is not asked (the test above would pass
    if it always were); and the dates it keeps are bounded."""
    from google.protobuf import timestamp_pb2

    monkeypatch.setattr(json_printer, "_DATES", {})
    compiled = CompiledPrinter(
        descriptor_pool.Default(), proto_field_names=False, enums_as_ints=False
    )
    printer = compiled.printer(timestamp_pb2.Timestamp.DESCRIPTOR)
    monkeypatch.setattr(timestamp_pb2.Timestamp, "ToJsonString", None)
    monkeypatch.setattr(json_format._Printer, "_MessageToJsonObject", None)  # type: ignore[attr-defined]
    for day in range(json_printer.DATES_KEPT + 10):
        message = timestamp_pb2.Timestamp(seconds=day * 86_400 + 3_661, nanos=5_000)
        assert (
            printer(message)
            == (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
            + "T01:01:01.000005Z"
        )
    assert len(json_printer._DATES) == json_printer.DATES_KEPT
