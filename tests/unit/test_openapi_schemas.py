"""The document's schemas say what the gateway reads: held to json_format, value by value.

A schema that refuses what the gateway accepts (``null``, an int64 as a number) makes a
client or a fuzzer believe a valid request is invalid; one that allows what the gateway
refuses (an unknown field, two members of a oneof) makes it send requests that fail. So
each value below is judged twice, by the document's schema (JSON Schema 2020-12, the
document's components resolved) and by ``json_format.ParseDict``, which decides what the
gateway accepts, and the two verdicts must agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_PROTOS, TEST_PROTOS, make_config
from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from edge.openapi import build_openapi
from edge.openapi.json_forms import integer_pattern
from edge.routes import Routes, load_routes
from edge.transcode.field_values import UNFIT, _to_bytes

Document = dict[str, Any]


def _load(protos: Path, **extra: Any) -> tuple[Routes, Document]:
    config = make_config(1, protos=protos, extra=extra)
    routes = load_routes(config)
    return routes, build_openapi(routes, config)


@pytest.fixture(scope="module")
def demo() -> tuple[Routes, Document]:
    return _load(DEMO_PROTOS)


@pytest.fixture(scope="module")
def kitchen() -> tuple[Routes, Document]:
    return _load(TEST_PROTOS)


def _schema_accepts(document: Document, type_name: str, value: Any) -> bool:
    schema = {"$ref": f"#/components/schemas/{type_name}", "components": document["components"]}
    return Draft202012Validator(schema).is_valid(value)


def _gateway_accepts(routes: Routes, type_name: str, value: Any) -> bool:
    descriptor = routes.registry.pool.FindMessageTypeByName(type_name)
    try:
        json_format.ParseDict(value, GetMessageClass(descriptor)())
    except (json_format.ParseError, ValueError, TypeError, AttributeError):
        return False
    return True


BOOK = "edgedemo.library.v1.Book"
KITCHEN = "edgetest.v1.Kitchen"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ({"title": "Dune", "pageCount": "412"}, True),
        ({"pageCount": 412}, True),  # int64 as a number, as proto3 JSON allows
        ({"pageCount": "-9223372036854775808"}, True),
        ({"pageCount": "9223372036854775808"}, False),  # out of range
        ({"pageCount": "4x"}, False),
        ({"pageCount": None, "title": None, "tags": None, "createTime": None}, True),
        ({"genre": None}, True),
        ({"tags": [None]}, False),  # null inside a list is refused
        ({"genre": "GENRE_FICTION"}, True),
        ({"genre": 2}, True),
        ({"genre": 99}, True),  # open enum: kept as an unknown value
        ({"genre": "FICTION"}, False),
        ({"nope": 1}, False),  # transcoding.unknown_fields: reject
        ({"title": 1}, False),
        ({"createTime": "2024-05-01T12:30:00.5Z"}, True),
        ({"createTime": "2024-05-01T12:30:00+02:00"}, True),
        ({"createTime": "2024-05-01 12:30:00Z"}, False),
        ({"createTime": "2024-05-01T12:30:00.1234567891Z"}, False),
        ({"createTime": "2024-05-01T12:30:00"}, False),
    ],
)
def test_book_values(demo: tuple[Routes, Document], value: Any, accepted: bool) -> None:
    routes, document = demo
    assert _gateway_accepts(routes, BOOK, value) is accepted
    assert _schema_accepts(document, BOOK, value) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ({"choiceText": "a"}, True),
        ({"choiceText": "a", "choiceNumber": 1}, False),  # two members of one oneof
        ({"choiceText": "a", "choiceNumber": None}, True),  # null is unset
        ({"int32Value": "12"}, True),
        ({"int32Value": 2147483648}, False),
        ({"uint32Value": -1}, False),
        ({"doubleValue": "NaN"}, True),
        ({"doubleValue": "-Infinity"}, True),
        ({"doubleValue": "1.5e3"}, True),
        ({"floatValue": 1e39}, False),
        ({"boolValue": "true"}, False),
        ({"value": None}, True),  # a google.protobuf.Value holds null
        ({"listValue": [1, "a", None]}, True),
        ({"labels": {"a": "b"}}, True),
        ({"labels": {"a": None}}, False),
        ({"int64Wrapper": None}, True),
        ({"empty": {}}, True),
        ({"empty": {"x": 1}}, False),
    ],
)
def test_kitchen_values(kitchen: tuple[Routes, Document], value: Any, accepted: bool) -> None:
    routes, document = kitchen
    assert _gateway_accepts(routes, KITCHEN, value) is accepted
    assert _schema_accepts(document, KITCHEN, value) is accepted


def test_unknown_fields_allowed_when_the_gateway_ignores_them() -> None:
    _, document = _load(DEMO_PROTOS, transcoding={"unknown_fields": "ignore"})
    validate(document)
    assert "additionalProperties" not in document["components"]["schemas"][BOOK]
    assert _schema_accepts(document, BOOK, {"title": "x", "nope": 1})


_LIMITS = [(-(2**31), 2**31 - 1), (0, 2**32 - 1), (-(2**63), 2**63 - 1), (0, 2**64 - 1)]


@given(st.sampled_from(_LIMITS), st.integers(-(2**66), 2**66), st.integers(0, 3))
def test_integer_patterns_say_the_range_exactly(
    limits: tuple[int, int], number: int, zeros: int
) -> None:
    low, high = limits
    pattern = re.compile(integer_pattern(low, high))
    text = ("-" if number < 0 else "") + "0" * zeros + str(abs(number))
    assert bool(pattern.fullmatch(text)) is (low <= number <= high), text


@pytest.mark.parametrize("bound", [2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, 10**19])
def test_integer_patterns_at_the_bounds(bound: int) -> None:
    pattern = re.compile(integer_pattern(-bound - 1, bound))
    assert pattern.fullmatch(str(bound)) and pattern.fullmatch(str(-bound - 1))
    assert not pattern.fullmatch(str(bound + 1)) and not pattern.fullmatch(str(-bound - 2))


_HTTP_BODY_PROTO = """
syntax = "proto3";
package upload.v1;
import "google/api/annotations.proto";
import "google/api/httpbody.proto";
import "google/protobuf/empty.proto";
service Uploads {
  rpc Put(PutRequest) returns (google.protobuf.Empty) {
    option (google.api.http) = { post: "/v1/{name=files/*}" body: "file" };
  }
  rpc Raw(google.api.HttpBody) returns (google.api.HttpBody) {
    option (google.api.http) = { post: "/v1/raw" body: "*" };
  }
}
message PutRequest {
  string name = 1;
  google.api.HttpBody file = 2;
}
"""


def test_http_body_is_raw_bytes_not_json(tmp_path: Path, demo: tuple[Routes, Document]) -> None:
    (tmp_path / "upload.proto").write_text(_HTTP_BODY_PROTO)
    _, document = _load(tmp_path)
    validate(document)
    binary = {"type": "string", "format": "binary"}
    put = document["paths"]["/v1/files/{file}"]["post"]
    assert put["requestBody"]["content"] == {"*/*": {"schema": binary}}
    raw = document["paths"]["/v1/raw"]["post"]
    assert raw["requestBody"]["content"] == {"*/*": {"schema": binary}}
    assert raw["responses"]["200"]["content"] == {
        "application/octet-stream": {"schema": binary},
        "*/*": {"schema": binary},
    }
    _, demo_document = demo
    raw_replies = [
        operation["responses"]["200"]["content"]
        for item in demo_document["paths"].values()
        for operation in item.values()
        if operation["x-grpc-method"].endswith((".ExportShelf", ".DownloadBook"))
    ]
    assert raw_replies and all(content["*/*"] == {"schema": binary} for content in raw_replies)


# --- bytes, Duration and Timestamp: the patterns against the gateway's own decoders ---------


def _field_accepts(document: Document, field: str, value: Any) -> bool:
    return _schema_accepts(document, KITCHEN, {field: value})


@settings(max_examples=600)
@given(st.text(alphabet="Aa0+/_-=!", max_size=14))
def test_the_bytes_pattern_keeps_to_the_decoders(
    kitchen: tuple[Routes, Document], text: str
) -> None:
    """Lengths matter: "A", "AAAAA" and "A=" decode to nothing and are refused (400)."""
    routes, document = kitchen
    in_schema = _field_accepts(document, "bytesValue", text)
    body = _gateway_accepts(routes, KITCHEN, {"bytesValue": text})
    query = _to_bytes(text) is not UNFIT
    if in_schema:
        assert body and query, text
    data = text.rstrip("=")
    padding = len(text) - len(data)
    promised = "=" not in data and "!" not in data and (padding == 0 or len(data) % 4 != 0)
    if promised and padding <= 4 - len(data) % 4:  # no junk, no excess padding
        assert in_schema is body is query, text


@pytest.mark.parametrize("text", ["A", "AAAAA", "A=", "A==", "AAAAA==="])
def test_bytes_of_no_length_a_decoder_takes_are_refused(
    kitchen: tuple[Routes, Document], text: str
) -> None:
    routes, document = kitchen
    assert not _field_accepts(document, "bytesValue", text)
    assert not _gateway_accepts(routes, KITCHEN, {"bytesValue": text})


_DURATION_MAX = 315_576_000_000


@settings(max_examples=600)
@given(
    st.one_of(
        st.integers(-(10**13), 10**13),
        st.integers(-3, 3).map(lambda d: _DURATION_MAX + d),
        st.integers(-3, 3).map(lambda d: -_DURATION_MAX + d),
    ),
    st.booleans(),
    st.text(alphabet="0123456789", max_size=10),
)
def test_the_duration_pattern_says_the_range(
    kitchen: tuple[Routes, Document], seconds: int, negative_zero: bool, fraction: str
) -> None:
    routes, document = kitchen
    sign = "-" if seconds < 0 or (seconds == 0 and negative_zero) else ""
    text = f"{sign}{abs(seconds)}{'.' + fraction if fraction else ''}s"
    in_schema = _field_accepts(document, "duration", text)
    accepted = _gateway_accepts(routes, KITCHEN, {"duration": text})
    if in_schema:
        assert accepted, text
    if len(fraction) <= 9:  # more digits are read and rounded: accepted, not promised
        assert in_schema is accepted, text


def _timestamp_parts() -> st.SearchStrategy[tuple[int, ...]]:
    edge_years = st.sampled_from([0, 1, 2, 4, 100, 400, 1900, 2000, 2024, 9998, 9999])
    return st.tuples(
        st.one_of(edge_years, st.integers(0, 9999)),
        st.integers(0, 13),
        st.one_of(st.sampled_from([1, 28, 29, 30, 31]), st.integers(0, 32)),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 61),
        st.integers(-24 * 60, 24 * 60),
    )


@settings(max_examples=1500)
@given(_timestamp_parts(), st.booleans(), st.text(alphabet="0123456789", max_size=9))
def test_the_timestamp_pattern_says_the_range(
    kitchen: tuple[Routes, Document], parts: tuple[int, ...], utc: bool, fraction: str
) -> None:
    """No second 60, real days, and no offset that carries a time past year 1 or 9999."""
    routes, document = kitchen
    year, month, day, hour, minute, second, offset = parts
    zone = (
        "Z" if utc else f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02}:{abs(offset) % 60:02}"
    )
    text = (
        f"{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
        f"{'.' + fraction if fraction else ''}{zone}"
    )
    in_schema = _field_accepts(document, "timestamp", text)
    accepted = _gateway_accepts(routes, KITCHEN, {"timestamp": text})
    if in_schema:
        assert accepted, text
    # left out on purpose: offsets of 24:00 and more, and on the first and last days,
    # offsets that could carry the time out of range
    edge_day = (text.startswith("0001-01-01") and zone[0] == "+") or (
        text.startswith("9999-12-31") and zone[0] == "-"
    )
    if abs(offset) < 24 * 60 and not (edge_day and zone[1:] != "00:00"):
        assert in_schema is accepted, text


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("2016-12-31T23:59:60Z", False),  # a leap second: json_format refuses it
        ("0001-01-01T00:00:00Z", True),
        ("0001-01-01T00:30:00+01:00", False),  # year 0 in UTC
        ("9999-12-31T23:30:00-01:00", False),  # year 10000 in UTC
        ("9999-12-31T23:30:00+01:00", True),
        ("2023-02-29T00:00:00Z", False),
        ("2024-02-29T00:00:00Z", True),
    ],
)
def test_timestamps_at_the_edges(
    kitchen: tuple[Routes, Document], text: str, accepted: bool
) -> None:
    routes, document = kitchen
    assert _gateway_accepts(routes, KITCHEN, {"timestamp": text}) is accepted
    assert _field_accepts(document, "timestamp", text) is accepted


@pytest.mark.parametrize(
    ("text", "accepted"),
    [("315576000000s", True), ("-315576000000.999999999s", True), ("315576000001s", False)],
)
def test_durations_at_the_edges(
    kitchen: tuple[Routes, Document], text: str, accepted: bool
) -> None:
    routes, document = kitchen
    assert _gateway_accepts(routes, KITCHEN, {"duration": text}) is accepted
    assert _field_accepts(document, "duration", text) is accepted


_REPEATED_HTTP_BODY_PROTO = """
syntax = "proto3";
package many.v1;
import "google/api/annotations.proto";
import "google/api/httpbody.proto";
import "google/protobuf/empty.proto";
service Many {
  rpc Put(PutRequest) returns (google.protobuf.Empty) {
    option (google.api.http) = { post: "/v1/{name=piles/*}" body: "files" };
  }
}
message PutRequest {
  string name = 1;
  repeated google.api.HttpBody files = 2;
}
"""


def test_a_repeated_http_body_field_is_json(tmp_path: Path) -> None:
    """The binder reads a repeated HttpBody body field as a JSON array, not raw bytes."""
    (tmp_path / "many.proto").write_text(_REPEATED_HTTP_BODY_PROTO)
    routes, document = _load(tmp_path)
    validate(document)
    (operation,) = (item["post"] for item in document["paths"].values())
    content = operation["requestBody"]["content"]
    assert list(content) == ["application/json"]
    assert content["application/json"]["schema"]["type"][0] == "array"
    (route,) = (r for r in routes.routes if r.binder.takes_body and r.method.name == "Put")
    assert not route.binder.raw_body  # the document agrees with the binder


@pytest.mark.parametrize(
    ("keys", "accepted"),
    [
        (["0", "7", "-2147483648", "2147483647"], True),
        (["2147483648"], False),  # past int32: the gateway refuses it
        (["-2147483649"], False),
        (["x"], False),
    ],
)
def test_integer_map_keys_say_the_range(
    kitchen: tuple[Routes, Document], keys: list[str], accepted: bool
) -> None:
    routes, document = kitchen
    value = {"innerById": {key: {} for key in keys}}
    assert _gateway_accepts(routes, KITCHEN, value) is accepted
    assert _schema_accepts(document, KITCHEN, value) is accepted
