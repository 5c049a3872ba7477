"""JSON that does not fit a request gets a 400 naming the field, never Python's words.

Three layers. Tables: a bad body, query or path value gives the exact message and a
``google.rpc.BadRequest`` detail naming the field as the client spelled it. The checker:
``json_check.find_violation`` must refuse exactly what ``json_format.ParseDict`` refuses,
on random values shaped like the message (with wrong types mixed in) and on arbitrary JSON,
for the test service's types, the demo's and a proto2 type made here (closed enums, maps
with bool and integer keys, an extension). The binding: whatever JSON arrives, binding
either gives ParseDict's message or raises ``BadRequest`` whose words hold no exception
text; query strings likewise.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edge.descriptors.http_rules import HttpRule
from edge.errors import BadRequest
from edge.routing.template import parse_template
from edge.transcode.binding import RequestBinder
from edge.transcode.json_check import find_violation, quick_fit, value_problem
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edgedemo.library.v1 import library_pb2
from edgetest.v1 import kitchen_pb2

FD = FieldDescriptor
F = descriptor_pb2.FieldDescriptorProto

# what Python and json_format say when they fail: none of it may reach a client
LEAKS = re.compile(
    r"object of type|Traceback|<class|NoneType|Failed to parse|invalid literal|bytes-like"
    r"|has no attribute|not iterable|indices must|codec can't|\w+Error\b|Couldn't parse"
    r"|Message type \"|\bat Kitchen\b|does not fit"
)

DEFAULT = descriptor_pool.Default()
CODEC = JsonCodec(DEFAULT, JsonOptions())


def binder(
    message: type[Message],
    method: str,
    template: str,
    body: str | None,
    codec: JsonCodec = CODEC,
) -> RequestBinder:
    return RequestBinder(message, HttpRule(method, parse_template(template), body, None), codec)


CREATE = binder(library_pb2.CreateBookRequest, "POST", "/v1/{parent=shelves/*}/books", "book")
KITCHEN = binder(kitchen_pb2.Kitchen, "POST", "/v1/kitchen", "*")
QUERY = binder(kitchen_pb2.Kitchen, "GET", "/v1/kitchen/{string_value}", None)
TYPED = binder(
    kitchen_pb2.Kitchen,
    "GET",
    "/v1/typed/{int64_value}/{bool_value}/{enum_value}/{double_value}",
    None,
)
PARENT = [(("parent",), "shelves/1")]


def refusal(call: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        call()
    return caught.value


def violations(error: BadRequest) -> list[dict[str, str]]:
    (detail,) = error.details
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    return list(detail["fieldViolations"])


# -- the words, row by row ----------------------------------------------------------------

BODIES = [
    (CREATE, {"title": 5}, "book.title", "expected a string, got 5"),
    (CREATE, {"tags": 3}, "book.tags", "expected an array, got 3"),
    (CREATE, {"tags": ["a", "b", 3]}, "book.tags[2]", "expected a string, got 3"),
    (CREATE, {"tags": ["a", None]}, "book.tags[1]", "expected a string, got null"),
    (
        CREATE,
        {"pageCount": "many"},
        "book.pageCount",
        'expected an integer (int64, as a number or a string), got "many"',
    ),
    (
        CREATE,
        {"page_count": 1.5},
        "book.page_count",
        "expected an integer (int64, as a number or a string), got 1.5",
    ),
    (
        CREATE,
        {"genre": "GENRE_NOPE"},
        "book.genre",
        "expected one of GENRE_UNSPECIFIED, GENRE_FICTION, GENRE_HISTORY, GENRE_SCIENCE,"
        ' GENRE_POETRY (edgedemo.library.v1.Genre) or a number, got "GENRE_NOPE"',
    ),
    (
        CREATE,
        {"createTime": "yesterday"},
        "book.createTime",
        'expected an RFC 3339 timestamp such as "2024-01-31T12:00:00Z", got "yesterday"',
    ),
    (
        CREATE,
        {"titel": "x"},
        "book.titel",
        'unknown field: edgedemo.library.v1.Book has no "titel"',
    ),
    (CREATE, [1], "book", "expected an object (edgedemo.library.v1.Book), got an array"),
    (KITCHEN, {"nested": 5}, "nested", "expected an object (edgetest.v1.Nested), got 5"),
    (KITCHEN, {"nested": "x"}, "nested", 'expected an object (edgetest.v1.Nested), got "x"'),
    (
        KITCHEN,
        {"nested": {"inners": [{"count": "x"}]}},
        "nested.inners[0].count",
        'expected an integer (int32), got "x"',
    ),
    (
        KITCHEN,
        {"int32Value": 99999999999},
        "int32Value",
        "expected an integer (int32) from -2147483648 to 2147483647, got 99999999999",
    ),
    (KITCHEN, {"boolValue": "yes"}, "boolValue", 'expected a boolean (true or false), got "yes"'),
    (KITCHEN, {"bytesValue": 5}, "bytesValue", "expected a base64 string, got 5"),
    (KITCHEN, {"bytesValue": "a"}, "bytesValue", 'expected a base64 string, got "a"'),
    (
        KITCHEN,
        {"floatValue": 1e39},
        "floatValue",
        "expected a number (float) from -3.4028235e+38 to 3.4028235e+38, got 1e+39",
    ),
    (
        KITCHEN,
        {"doubleValue": "nan"},
        "doubleValue",
        'expected a number (double) or "NaN", "Infinity", "-Infinity", got "nan"',
    ),
    (KITCHEN, {"labels": {"a": None}}, 'labels["a"]', "expected a string, got null"),
    (KITCHEN, {"labels": []}, "labels", "expected an object (a map), got an array"),
    (
        KITCHEN,
        {"innerById": {"x": {}}},
        'innerById["x"]',
        'expected the key to be an integer (int32), got "x"',
    ),
    (
        KITCHEN,
        {"innerById": {"1": {"label": True}}},
        'innerById["1"].label',
        "expected a string, got true",
    ),
    (KITCHEN, {"any": "x"}, "any", 'expected an object with "@type", got "x"'),
    (KITCHEN, {"any": {"@type": 5}}, 'any["@type"]', "expected a type URL, got 5"),
    (
        KITCHEN,
        {"any": {"@type": "type.googleapis.com/no.Such"}},
        'any["@type"]',
        'expected the type URL of a known message, got "type.googleapis.com/no.Such"',
    ),
    (
        KITCHEN,
        {"any": {"label": "x"}},
        'any["@type"]',
        'missing: an Any names its type ("type.googleapis.com/...")',
    ),
    (  # ParseDict raised a bare KeyError here: a 500 before
        KITCHEN,
        {"any": {"@type": "type.googleapis.com/google.protobuf.StringValue"}},
        "any.value",
        "missing: an Any of google.protobuf.StringValue holds it here",
    ),
    (
        KITCHEN,
        {"any": {"@type": "type.googleapis.com/edgetest.v1.Inner", "count": "x"}},
        "any.count",
        'expected an integer (int32), got "x"',
    ),
    (
        KITCHEN,
        {"fieldMask": 5},  # a bare AttributeError from json_format
        "fieldMask",
        'expected a field mask such as "title,pageCount" (lowerCamelCase paths,'
        " comma-separated), got 5",
    ),
    (KITCHEN, {"duration": "1"}, "duration", 'expected a duration such as "1.5s", got "1"'),
    (KITCHEN, {"structValue": [1]}, "structValue", "expected an object, got an array"),
    (KITCHEN, {"listValue": {}}, "listValue", "expected an array, got an object"),
    (
        KITCHEN,
        {"int64Wrapper": True},
        "int64Wrapper",
        "expected an integer (int64, as a number or a string), got true",
    ),
    (
        KITCHEN,
        {"choiceText": "a", "choiceNumber": 1},
        "choiceNumber",
        'only one field of oneof "choice" may be set; "choiceText" is',
    ),
    (KITCHEN, {"optionalInt32": 1, "optional_int32": 2}, "optional_int32", None),
    (
        KITCHEN,
        {"odd key\n": 1},
        '["odd key\\n"]',
        'unknown field: edgetest.v1.Kitchen has no "odd key\\n"',
    ),
    (
        KITCHEN,
        {"structValue": {"a": {"a": {"a": {"a": {}}}}}, "nested": {"name": 1}},
        "nested.name",
        "expected a string, got 1",
    ),
]


@pytest.mark.parametrize(
    ("target", "body", "field", "description"),
    BODIES,
    ids=[orjson.dumps(row[1]).decode()[:40] for row in BODIES],
)
def test_a_bad_body_names_the_field_and_what_belongs_there(
    target: RequestBinder, body: Any, field: str, description: str | None
) -> None:
    bindings = PARENT if target is CREATE else []
    error = refusal(lambda: target.bind(bindings, "", orjson.dumps(body)))
    if description is None:  # one field given by both its names, in a (synthetic) oneof
        description = 'given twice (also as "optionalInt32")'
    assert error.message == f"{field}: {description}"
    assert violations(error) == [{"field": field, "description": description}]
    assert error.status == 400 and error.grpc_code == 3
    assert error.internal  # json_format's words, for the log


@pytest.mark.parametrize(
    ("query", "field", "description"),
    [
        ("int32Value=abc", "int32Value", 'expected an integer (int32), got "abc"'),
        (
            "int32_value=99999999999",
            "int32_value",
            'expected an integer (int32) from -2147483648 to 2147483647, got "99999999999"',
        ),
        ("boolValue=maybe", "boolValue", 'expected a boolean (true or false), got "maybe"'),
        (
            "doubleValue=abc",
            "doubleValue",
            'expected a number (double) or "NaN", "Infinity", "-Infinity", got "abc"',
        ),
        (
            "enumValue=FLAVOUR_BITTER",
            "enumValue",
            "expected one of FLAVOUR_UNSPECIFIED, FLAVOUR_SWEET, FLAVOUR_SOUR"
            ' (edgetest.v1.Flavour) or a number, got "FLAVOUR_BITTER"',
        ),
        (
            "timestamp=yesterday",
            "timestamp",
            'expected an RFC 3339 timestamp such as "2024-01-31T12:00:00Z", got "yesterday"',
        ),
        ("bytesValue=***", "bytesValue", 'expected a base64 string, got "***"'),
        (
            "repeatedInt64=1&repeatedInt64=x",
            "repeatedInt64",
            'expected an integer (int64, as a number or a string), got "x"',
        ),
        (
            "int64Wrapper=1.5",
            "int64Wrapper",
            'expected an integer (int64, as a number or a string), got "1.5"',
        ),
        ("nested.inner.count=x", "nested.inner.count", 'expected an integer (int32), got "x"'),
        ("int32Value=1&int32Value=2", "int32Value", "given more than once"),
        ("nested=1", "nested", "names a message field, not a value"),
    ],
)
def test_a_bad_query_parameter_is_named_as_sent(query: str, field: str, description: str) -> None:
    error = refusal(lambda: QUERY.bind([(("string_value",), "s")], query, b""))
    assert violations(error) == [{"field": field, "description": description}]
    separator = ": " if description.startswith("expected") else " "
    assert error.message == f'query parameter "{field}"{separator}{description}'
    assert error.internal is None


def test_an_unknown_query_parameter_is_named() -> None:
    error = refusal(lambda: QUERY.bind([(("string_value",), "s")], "noSuchField=1", b""))
    assert error.message.startswith('unknown query parameter "noSuchField": ')
    assert violations(error)[0]["field"] == "noSuchField"


@pytest.mark.parametrize(
    ("values", "field", "description"),
    [
        (
            ("x", "true", "FLAVOUR_SWEET", "1"),
            "int64_value",
            'expected an integer (int64, as a number or a string), got "x"',
        ),
        (("1", "maybe", "X", "1"), "bool_value", 'expected a boolean (true or false), got "maybe"'),
        (("1", "t", "FLAVOUR_SWEET", "one"), "double_value", None),
    ],
)
def test_a_bad_path_parameter_is_named(
    values: tuple[str, ...], field: str, description: str | None
) -> None:
    names = [("int64_value",), ("bool_value",), ("enum_value",), ("double_value",)]
    error = refusal(lambda: TYPED.bind(list(zip(names, values, strict=True)), "", b""))
    description = description or (
        'expected a number (double) or "NaN", "Infinity", "-Infinity", got "one"'
    )
    assert error.message == f'path parameter "{field}": {description}'
    assert violations(error) == [{"field": field, "description": description}]


def test_malformed_json_says_where_and_logs_what() -> None:
    error = refusal(lambda: KITCHEN.bind([], "", b'{"stringValue": '))
    assert error.message == "malformed JSON body at line 1, column 17"
    assert error.internal  # orjson's words
    assert error.details == []


def test_details_follow_the_proto_field_names_option() -> None:
    codec = JsonCodec(DEFAULT, JsonOptions(proto_field_names=True))
    target = binder(kitchen_pb2.Kitchen, "POST", "/v1/kitchen", "*", codec)
    error = refusal(lambda: target.bind([], "", b'{"int32_value": "x"}'))
    (detail,) = error.details
    assert detail["field_violations"] == [
        {"field": "int32_value", "description": 'expected an integer (int32), got "x"'}
    ]


def test_ignored_unknown_fields_and_enum_names_stay_ignored() -> None:
    codec = JsonCodec(DEFAULT, JsonOptions(ignore_unknown_fields=True))
    target = binder(kitchen_pb2.Kitchen, "POST", "/v1/kitchen", "*", codec)
    message = target.bind([], "", b'{"mystery": 1, "repeatedEnum": ["NOPE", "FLAVOUR_SOUR"]}')
    assert list(message.repeated_enum) == [kitchen_pb2.FLAVOUR_SOUR]
    error = refusal(lambda: target.bind([], "", b'{"mystery": 1, "int32Value": "x"}'))
    assert error.message == 'int32Value: expected an integer (int32), got "x"'


def test_a_long_or_hostile_key_is_clipped_and_escaped() -> None:
    key = "k\u2028" + "x" * 5000
    error = refusal(lambda: KITCHEN.bind([], "", orjson.dumps({key: 1})))
    assert len(error.message) < 300
    assert "\n" not in error.message and "\u2028" in error.message
    assert error.message.startswith('["k\u2028xxx')


# -- the checker against ParseDict ------------------------------------------------------


def _proto2_pool() -> tuple[descriptor_pool.DescriptorPool, Descriptor]:
    """``edgetest.odd.Odd``: what the test service lacks (closed enums, odd map keys...)."""
    pool = descriptor_pool.DescriptorPool()
    for known in (any_pb2, struct_pb2, timestamp_pb2, wrappers_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        known.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="edgetest/odd.proto",
        package="edgetest.odd",
        syntax="proto2",
        dependency=[
            "google/protobuf/any.proto",
            "google/protobuf/struct.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
        ],
    )
    shade = file.enum_type.add(name="Shade")  # closed: proto2
    shade.value.add(name="SHADE_NONE", number=0)  # a map's enum values start at 0
    shade.value.add(name="SHADE_DARK", number=1)
    shade.value.add(name="SHADE_LIGHT", number=5)
    odd = file.message_type.add(name="Odd")
    odd.extension_range.add(start=100, end=200)
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def field(name: str, kind: int, label: int = optional, type_name: str = "") -> None:
        added = odd.field.add(name=name, number=len(odd.field) + 1, type=kind, label=label)
        added.json_name = "".join(
            part if i == 0 else part.capitalize() for i, part in enumerate(name.split("_"))
        )
        if type_name:
            added.type_name = type_name

    def map_field(name: str, key: int, value: int, type_name: str = "") -> None:
        entry = odd.nested_type.add(name=f"{name.capitalize()}Entry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=key, label=optional)
        added = entry.field.add(name="value", number=2, type=value, label=optional)
        if type_name:
            added.type_name = type_name
        field(name, F.TYPE_MESSAGE, repeated, f".edgetest.odd.Odd.{entry.name}")

    field("shade", F.TYPE_ENUM, type_name=".edgetest.odd.Shade")
    field("shades", F.TYPE_ENUM, repeated, ".edgetest.odd.Shade")
    field("ratio", F.TYPE_FLOAT)
    field("big", F.TYPE_SINT64)
    field("small", F.TYPE_FIXED32, repeated)
    field("data", F.TYPE_BYTES)
    field("flag", F.TYPE_BOOL)
    field("child", F.TYPE_MESSAGE, type_name=".edgetest.odd.Odd")
    field("things", F.TYPE_MESSAGE, repeated, ".google.protobuf.Value")
    field("wrapped", F.TYPE_MESSAGE, repeated, ".google.protobuf.UInt32Value")
    field("when", F.TYPE_MESSAGE, repeated, ".google.protobuf.Timestamp")
    field("packed", F.TYPE_MESSAGE, type_name=".google.protobuf.Any")
    map_field("flags", F.TYPE_BOOL, F.TYPE_STRING)
    map_field("shading", F.TYPE_UINT32, F.TYPE_ENUM, ".edgetest.odd.Shade")
    map_field("blobs", F.TYPE_INT64, F.TYPE_BYTES)
    map_field("kids", F.TYPE_STRING, F.TYPE_MESSAGE, ".edgetest.odd.Odd")
    map_field("anything", F.TYPE_SFIXED32, F.TYPE_MESSAGE, ".google.protobuf.Value")
    field("decoy", F.TYPE_STRING)  # its json name is another field's name: the json name wins
    odd.field[-1].json_name = "target_name"
    field("target_name", F.TYPE_BOOL)
    pick = odd.oneof_decl.add(name="pick")
    for name, kind in (("word", F.TYPE_STRING), ("count", F.TYPE_UINT64)):
        field(name, kind)
        odd.field[-1].oneof_index = 0
    assert pick.name == "pick"
    extra = file.extension.add(name="extra", number=100, type=F.TYPE_INT32, label=optional)
    extra.extendee = ".edgetest.odd.Odd"
    pool.Add(file)
    return pool, pool.FindMessageTypeByName("edgetest.odd.Odd")


ODD_POOL, ODD = _proto2_pool()
TYPES = [
    (DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR),
    (DEFAULT, library_pb2.CreateBookRequest.DESCRIPTOR),
    (DEFAULT, library_pb2.UpdateBookRequest.DESCRIPTOR),
    (DEFAULT, kitchen_pb2.FailRequest.DESCRIPTOR),
    (ODD_POOL, ODD),
]

_INT64 = (-(2**63), 2**64 - 1)  # what orjson can carry as an integer
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(*_INT64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
# values near each rule's edges: drawn as often as random ones
WRONG = [None, True, False, [], [1], {}, {"a": 1}, "", 0]
INTEGER_TRICKS = [
    *(2**31, 2**32 - 1, 2**32, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -1),
    *("1", "-1", "1e3", "1.5", " 1", "\t7", "0x10", "1_000", "99999999999", "٣", "inf"),
    *(2.0, 1.5, -0.0, 1e20, "1e20", "NaN", "4294967296", "-9223372036854775809"),
]
FLOAT_TRICKS = [
    *("1.5", "NaN", "nan", "NAN", "Infinity", "-Infinity", "inf", "1e39", "x", " 2", "1_0"),
    *(1e39, -1e39, 3.4e38, 3.5e38, 2**64 - 1, 1, "1e400", "-1e400"),
]
ENUM_TRICKS = ["NOPE", "1", "1.5", " 1", 2, 7, 1.5, 2**31, 2**40, -(2**40), 2**63, -(2**31)]
BYTES_TRICKS = ["", "AAEC", "AAE", "a", "ab$c", "-_-_", "é", "====", "A\ud800", "AA==AA"]
STRING_TRICKS = ["", "a\ud800", "\udc00b", "\ud83d\ude00", "é"]
ANY_URLS = [
    "type.googleapis.com/edgetest.v1.Inner",
    "type.googleapis.com/google.protobuf.StringValue",
    "type.googleapis.com/google.protobuf.Timestamp",
    "type.googleapis.com/google.protobuf.Struct",
    "type.googleapis.com/google.protobuf.Any",
    "type.googleapis.com/edgetest.odd.Odd",
    "edgetest.v1.Nested",
    "type.googleapis.com/no.Such",
    "",
]


def scalar_values(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of the right JSON shape for a scalar field, and the wrong ones near it."""
    kind = field.cpp_type
    if kind in (FD.CPPTYPE_INT32, FD.CPPTYPE_UINT32, FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        numbers = st.integers(-(2**40), 2**40)
        tricks = st.sampled_from(INTEGER_TRICKS)
        usual: st.SearchStrategy[Any] = numbers | numbers.map(str)
    elif kind in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        tricks = st.sampled_from(FLOAT_TRICKS)
        usual = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == FD.CPPTYPE_BOOL:
        tricks = st.sampled_from(["true", "false", 1])
        usual = st.booleans()
    elif kind == FD.CPPTYPE_ENUM:
        assert field.enum_type is not None
        names = [value.name for value in field.enum_type.values]
        tricks = st.sampled_from(ENUM_TRICKS)
        usual = st.sampled_from(names)
    elif field.type == FD.TYPE_BYTES:
        tricks = st.sampled_from(BYTES_TRICKS)
        usual = st.sampled_from(["AAEC", "_-8=", ""])
    else:
        tricks = st.sampled_from(STRING_TRICKS)
        usual = st.text(max_size=6)
    return st.one_of(usual, usual, tricks, tricks, st.sampled_from(WRONG))


def key_values(field: FieldDescriptor) -> st.SearchStrategy[str]:
    if field.cpp_type == FD.CPPTYPE_BOOL:
        return st.sampled_from(["true", "false", "True", "1", "TRUE", ""])
    if field.cpp_type == FD.CPPTYPE_STRING:
        return st.text(max_size=3) | st.sampled_from(STRING_TRICKS)
    return st.sampled_from(
        ["1", "-1", "1.0", "1e0", " 1", "x", "4294967296", "-2147483649", "1.5", "٣", "", "1_0"]
    )


def message_values(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Any]:
    """JSON of the message's shape, mostly: known keys with fitting values, some not."""
    name = descriptor.full_name
    if descriptor.file.name == "google/protobuf/wrappers.proto":
        return scalar_values(descriptor.fields_by_name["value"])
    if name == "google.protobuf.Timestamp":
        return st.sampled_from(["2024-01-31T12:00:00Z", "2024-01-31T12:00:00", "yesterday", 5])
    if name == "google.protobuf.Duration":
        return st.sampled_from(["1.5s", "-0.000000001s", "1 s", "1", 1.5])
    if name == "google.protobuf.FieldMask":
        return st.sampled_from(["a,b.c", "aB", "a_b", "", 5, ["a"]])
    if name in ("google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"):
        return json_values
    if name == "google.protobuf.Any":
        return st.one_of(
            st.just({}),
            st.fixed_dictionaries(
                {"@type": st.sampled_from([*ANY_URLS, 5, None])},
                optional={"value": json_values, "label": scalars, "count": scalars, "@x": scalars},
            ),
        )
    if depth > 2:
        return st.just({})
    unknown: list[tuple[str, FieldDescriptor | None]] = [
        ("mystery", None),
        ("[bad]", None),
        ("@type", None),
    ]
    choices: list[tuple[str, FieldDescriptor | None]] = []
    for field in descriptor.fields:
        choices.append((field.json_name, field))
        if field.name != field.json_name:
            choices.append((field.name, field))
    if descriptor.is_extendable:
        extra = descriptor.file.pool.FindExtensionByName("edgetest.odd.extra")
        choices.append(("[edgetest.odd.extra]", extra))
        unknown.append(("[edgetest.odd.nope]", None))

    def values_for(keys: list[tuple[str, FieldDescriptor | None]]) -> st.SearchStrategy[Any]:
        fitting = {key: field_values(field, depth) for key, field in keys}
        return st.fixed_dictionaries(
            {key: st.one_of(value, value, value, json_values) for key, value in fitting.items()}
        )

    known = st.sampled_from(choices or unknown)
    keys = st.one_of(known, known, known, known, st.sampled_from(unknown))  # unknown: 1 in 5
    objects = st.lists(keys, max_size=4, unique_by=lambda c: c[0])
    not_objects = [[], "", ["mystery"], "zz", None, [5], [None], ["[x]"], [["a"]], "[x]", 3]
    return objects.flatmap(values_for) | st.sampled_from(not_objects)


def field_values(field: FieldDescriptor | None, depth: int) -> st.SearchStrategy[Any]:
    if field is None:
        return json_values
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        return st.dictionaries(key_values(key), field_values(value, depth + 1), max_size=3)
    one = (
        st.deferred(lambda: message_values(message, depth + 1))
        if message is not None
        else scalar_values(field)
    )
    if field.is_repeated:
        return st.lists(one | st.none(), max_size=3)
    return one | st.none()


def parse_dict_accepts(
    value: Any, descriptor: Descriptor, pool: descriptor_pool.DescriptorPool, ignore: bool
) -> Message | None:
    message = message_factory.GetMessageClass(descriptor)()
    try:
        json_format.ParseDict(
            copy.deepcopy(value), message, ignore_unknown_fields=ignore, descriptor_pool=pool
        )
    except Exception:  # the reference may fail any way it likes
        return None
    return message


@st.composite
def requests(draw: st.DrawFn) -> tuple[descriptor_pool.DescriptorPool, Descriptor, Any]:
    pool, descriptor = draw(st.sampled_from(TYPES))
    value = draw(message_values(descriptor, 0) | json_values)
    return pool, descriptor, value


@st.composite
def single_fields(draw: st.DrawFn) -> tuple[descriptor_pool.DescriptorPool, Descriptor, Any]:
    """One field of one type, of any value: where the leaf rules are tried hardest."""
    pool, descriptor = draw(st.sampled_from(TYPES))
    fields = list(descriptor.fields)
    structured = [f for f in fields if f.message_type is not None] or fields
    field = draw(st.sampled_from(fields) | st.sampled_from(structured))
    key = draw(st.sampled_from([field.json_name, field.name]))
    return pool, descriptor, {key: draw(field_values(field, 1) | json_values)}


def assert_agrees(
    pool: descriptor_pool.DescriptorPool, descriptor: Descriptor, value: Any, ignore: bool
) -> None:
    """Refused by both or by neither; and the walk blames the key ParseDict failed at."""
    accepted = parse_dict_accepts(value, descriptor, pool, ignore)
    violation = find_violation(value, descriptor, pool=pool, ignore_unknown_fields=ignore)
    assert (violation is None) == (accepted is not None), violation
    if violation is None:
        return
    assert not LEAKS.search(violation.message), violation
    if not isinstance(value, dict):
        return
    items = list(value.items())
    # ParseDict takes keys in order: the first prefix it refuses ends at the bad key
    failing = next(
        end
        for end in range(1, len(items) + 1)
        if parse_dict_accepts(dict(items[:end]), descriptor, pool, ignore) is None
    )
    before = dict(items[: failing - 1])
    assert find_violation(before, descriptor, pool=pool, ignore_unknown_fields=ignore) is None
    through = dict(items[:failing])
    blamed = find_violation(through, descriptor, pool=pool, ignore_unknown_fields=ignore)
    assert blamed == violation


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), ignore=st.booleans())
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"nested": []}), ignore=False)
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"nested": ["x"]}), ignore=True)
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"enumValue": 2**40}), ignore=False)
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"doubleValue": True}), ignore=False)
@example(request=(ODD_POOL, ODD, {"[edgetest.odd.extra]": 3}), ignore=False)
@example(request=(ODD_POOL, ODD, {"shade": 3}), ignore=False)  # a closed enum
@example(request=(ODD_POOL, ODD, {"things": None}), ignore=False)  # null, repeated Value
@example(request=(ODD_POOL, ODD, {"word": "a", "count": None}), ignore=False)
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"nested": [5]}), ignore=True)
@example(request=(DEFAULT, kitchen_pb2.Kitchen.DESCRIPTOR, {"nested": ["zz"]}), ignore=True)
@example(request=(ODD_POOL, ODD, {"count": None, "word": "a"}), ignore=False)
@example(request=(ODD_POOL, ODD, {"word": "a", "count": 1}), ignore=False)
def test_the_checker_refuses_what_parse_dict_refuses(
    request: tuple[descriptor_pool.DescriptorPool, Descriptor, Any], ignore: bool
) -> None:
    assert_agrees(*request, ignore)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=single_fields(), ignore=st.booleans())
def test_the_checker_agrees_field_by_field(
    request: tuple[descriptor_pool.DescriptorPool, Descriptor, Any], ignore: bool
) -> None:
    assert_agrees(*request, ignore)


def _tricks(field: FieldDescriptor) -> list[Any]:
    kind = field.cpp_type
    if kind in (FD.CPPTYPE_INT32, FD.CPPTYPE_UINT32, FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        return INTEGER_TRICKS
    if kind in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        return FLOAT_TRICKS
    if kind == FD.CPPTYPE_ENUM:
        return ENUM_TRICKS
    if field.type == FD.TYPE_BYTES:
        return BYTES_TRICKS
    return [*STRING_TRICKS, "true", "false", 1]


def _every_trick() -> list[tuple[descriptor_pool.DescriptorPool, Descriptor, Any]]:
    """Each scalar place (field, element, map key, map value) of each type, each trick."""
    cases = []
    for pool, descriptor in TYPES:
        for field in descriptor.fields:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
                fitting = {} if value.message_type is not None else "1"
                if value.message_type is None and value.type == FD.TYPE_ENUM:
                    fitting = value.enum_type.values[0].name
                for trick in [*_tricks(key), "True", "TRUE", "1.0", " 1"]:
                    if isinstance(trick, str):
                        cases.append((pool, descriptor, {field.json_name: {trick: fitting}}))
                if value.message_type is None:
                    for trick in [*_tricks(value), *WRONG]:
                        cases.append((pool, descriptor, {field.json_name: {"1": trick}}))
            elif entry is None or entry.file.name == "google/protobuf/wrappers.proto":
                leaf = field if entry is None else entry.fields_by_name["value"]
                for trick in [*_tricks(leaf), *WRONG]:
                    one = [trick] if field.is_repeated else trick
                    cases.append((pool, descriptor, {field.json_name: one}))
    return cases


def test_the_checker_agrees_on_every_edge_value() -> None:
    for pool, descriptor, value in _every_trick():
        for ignore in (False, True):
            assert_agrees(pool, descriptor, value, ignore)


SCALAR_PLACES = [
    (pool, field)
    for pool, descriptor in TYPES
    for field in descriptor.fields
    if field.message_type is None
    or field.message_type.file.name == "google/protobuf/wrappers.proto"
]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), place=st.sampled_from(SCALAR_PLACES))
def test_the_quick_check_passes_only_what_fits(
    data: Any, place: tuple[descriptor_pool.DescriptorPool, FieldDescriptor]
) -> None:
    pool, field = place
    leaf = field if field.message_type is None else field.message_type.fields_by_name["value"]
    value = data.draw(scalar_values(leaf) | scalar_values(leaf).map(str) | json_values)
    if quick_fit(field)(value):
        assert value_problem(value, field, pool=pool, ignore_unknown_fields=False) is None


def test_the_quick_check_passes_no_edge_value_that_does_not_fit() -> None:
    for pool, field in SCALAR_PLACES:
        leaf = field if field.message_type is None else field.message_type.fields_by_name["value"]
        fits = quick_fit(field)
        for trick in [*_tricks(leaf), *WRONG]:
            for value in (trick, str(trick)):
                if fits(value):
                    problem = value_problem(value, field, pool=pool, ignore_unknown_fields=False)
                    assert problem is None, (field.full_name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("string_value", "shelves/1"),
        ("int32_value", "10"),
        ("int64_value", "-9223372036854775808"),
        ("uint64_value", "18446744073709551615"),
        ("bool_value", True),
        ("enum_value", "FLAVOUR_SOUR"),
        ("double_value", 1.5),
        ("float_value", "NaN"),
        ("int64_wrapper", "7"),
    ],
)
def test_the_quick_check_passes_the_usual_values(name: str, value: Any) -> None:
    # what a path or query value usually is never pays for the full check
    assert quick_fit(kitchen_pb2.Kitchen.DESCRIPTOR.fields_by_name[name])(value)


def test_depth_is_counted_as_parse_dict_counts_it() -> None:
    deep: Any = "leaf"
    for _ in range(60):  # a Struct level is two messages (Struct, Value): 120 deep
        deep = {"a": deep}
    kitchen = kitchen_pb2.Kitchen.DESCRIPTOR
    for value, fits in (({"structValue": deep}, False), ({"value": [[[[[[1]]]]]]}, True)):
        violation = find_violation(value, kitchen, pool=DEFAULT, ignore_unknown_fields=False)
        assert (parse_dict_accepts(value, kitchen, DEFAULT, False) is not None) == fits
        if fits:
            assert violation is None
        else:
            assert violation is not None
            assert violation.description == "nested too deeply (more than 100 levels)"
            assert violation.field.startswith("structValue.a.a.a")


# -- the binding, whatever arrives ------------------------------------------------------

BINDINGS = [
    (KITCHEN, [], kitchen_pb2.Kitchen, None),
    (CREATE, PARENT, library_pb2.CreateBookRequest, "book"),
    (
        binder(library_pb2.UpdateBookRequest, "PATCH", "/v1/{book.name=shelves/*/books/*}", "book"),
        [(("book", "name"), "shelves/1/books/2")],
        library_pb2.UpdateBookRequest,
        "book",
    ),
    (binder(kitchen_pb2.FailRequest, "POST", "/v1/fail", "*"), [], kitchen_pb2.FailRequest, None),
]


def assert_clean(error: BadRequest) -> None:
    assert not LEAKS.search(error.message), error.message
    for detail in error.details:
        for violation in detail["fieldViolations"]:
            assert not LEAKS.search(violation["description"]), violation
            assert error.message.endswith(violation["description"])


def _with_bindings(value: Any, bindings: list[tuple[tuple[str, ...], str]]) -> Any:
    """What binding hands ParseDict: the body, path variables set over it."""
    for names, text in bindings:
        target = value
        for name in names[:-1]:
            child = target.get(name)
            if not isinstance(child, dict):
                child = target[name] = {}
            target = child
        target[names[-1]] = text
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), index=st.integers(0, len(BINDINGS) - 1))
def test_binding_gives_parse_dict_s_message_or_a_clean_400(data: Any, index: int) -> None:
    target, bindings, message_type, body_field = BINDINGS[index]
    shape = message_type.DESCRIPTOR
    if body_field is not None:
        shape = shape.fields_by_name[body_field].message_type
    value = data.draw(message_values(shape, 0) | json_values)
    try:
        body = orjson.dumps(value)
    except TypeError:  # a surrogate: no JSON body can carry one
        assume(False)
    whole = {body_field: copy.deepcopy(value)} if body_field is not None else copy.deepcopy(value)
    if isinstance(whole, dict):
        _with_bindings(whole, bindings)
    try:
        bound = target.bind(bindings, "", body)
    except BadRequest as error:
        assert_clean(error)
        if not isinstance(whole, dict):
            assert error.message == "request body must be a JSON object"
            return
        assert error.details, error.message  # a field is named
        if bindings and body_field is not None and value is not None and type(value) is not dict:
            return  # the path binds inside a body that is not an object: never replaced
        assert parse_dict_accepts(whole, message_type.DESCRIPTOR, DEFAULT, False) is None
        return
    assert isinstance(whole, dict)
    reference = parse_dict_accepts(whole, message_type.DESCRIPTOR, DEFAULT, False)
    assert reference is not None
    assert bound == reference


QUERY_KEYS = [
    "int32Value", "int32_value", "int64Value", "uint64Value", "floatValue", "doubleValue",
    "boolValue", "bytesValue", "enumValue", "repeatedString", "repeatedInt64", "repeatedEnum",
    "timestamp", "duration", "fieldMask", "int64Wrapper", "boolWrapper", "doubleWrapper",
    "nested.name", "nested.inner.count", "nested.inners", "labels", "choiceText",
    "choiceNumber", "optionalInt32", "stringValue", "mystery", "nested.nope", "a..b", "",
    "structValue", "value", "any",
]  # fmt: skip
query_values = st.one_of(
    st.sampled_from([str(trick) for trick in INTEGER_TRICKS + FLOAT_TRICKS + ENUM_TRICKS]),
    st.sampled_from(["true", "t", "FLAVOUR_SOUR", "1s", "a,b", "2024-01-31T12:00:00Z"]),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(QUERY_KEYS), query_values), max_size=4),
    ignore=st.booleans(),
)
def test_any_query_string_binds_or_gives_a_clean_400(
    pairs: list[tuple[str, str]], ignore: bool
) -> None:
    from urllib.parse import urlencode

    codec = JsonCodec(DEFAULT, JsonOptions(ignore_unknown_fields=ignore))
    target = RequestBinder(
        kitchen_pb2.Kitchen,
        HttpRule("GET", parse_template("/v1/kitchen/{string_value}"), None, None),
        codec,
        reject_unknown_query=not ignore,
    )
    try:
        target.bind([(("string_value",), "s")], urlencode(pairs), b"")
    except BadRequest as error:
        assert_clean(error)
        assert error.details, error.message
