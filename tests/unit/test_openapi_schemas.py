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
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from edge.openapi import build_openapi
from edge.openapi.json_forms import integer_pattern
from edge.routes import Routes, load_routes

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
