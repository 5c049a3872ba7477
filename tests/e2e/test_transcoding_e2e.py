"""HTTP/JSON -> gRPC through real Hypercorn and a real grpc.aio upstream: every rule form."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


async def get_json(stack: Any, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with stack.client() as client:
        response = await client.request(method, url, **kwargs)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("method", "url", "body", "expected"),
    [
        ("GET", "/v1/kitchen/abc", None, {"stringValue": "abc"}),
        ("DELETE", "/v1/kitchen/abc", None, {"stringValue": "abc"}),
        ("PURGE", "/v1/kitchen/abc", None, {"stringValue": "abc"}),
        (
            "POST",
            "/v1/kitchen",
            {"stringValue": "x", "int32Value": 4},
            {"stringValue": "x", "int32Value": 4},
        ),
        # body "*" with a path variable: the path wins over the body
        (
            "PUT",
            "/v1/kitchen/abc",
            {"stringValue": "zzz", "boolValue": True},
            {"stringValue": "abc", "boolValue": True},
        ),
        # body "field": the body is that field; the rest from the query (and, for a
        # PATCH, the request's one FieldMask from the body: tests/e2e/test_mapping_e2e.py)
        (
            "PATCH",
            "/v1/kitchen/abc/nested?int32Value=3",
            {"name": "n"},
            {"stringValue": "abc", "int32Value": 3, "nested": {"name": "n"}, "fieldMask": "name"},
        ),
        # custom verbs, for both a body and a body-less rule
        (
            "POST",
            "/v1/kitchen/abc:wash",
            {"int32Value": 1},
            {"stringValue": "abc", "int32Value": 1},
        ),
        ("GET", "/v1/kitchen/abc:wash", None, {"stringValue": "abc"}),
        # nested field paths in the template
        ("GET", "/v1/deep/L/N", None, {"nested": {"name": "N", "inner": {"label": "L"}}}),
        # multi-segment variables with ** keep their slashes
        ("GET", "/v1/projects/p1/items/a/b/c", None, {"resource": "projects/p1/items/a/b/c"}),
        ("GET", "/v1/files/a/b%2Fc:stat", None, {"resource": "a/b%2Fc"}),
        ("GET", "/v1/files:stat", None, {}),
        # a literal beats a variable
        ("GET", "/v1/literal/items", None, {}),
        ("GET", "/v1/literal/other", None, {"stringValue": "other"}),
        # single-segment variables are fully percent-decoded
        ("GET", "/v1/kitchen/a%2Fb%20c%C3%A9", None, {"stringValue": "a/b cé"}),
        # typed path variables
        (
            "GET",
            "/v1/typed/-9007199254740993/true/FLAVOUR_SOUR/2.5",
            None,
            {
                "int64Value": "-9007199254740993",
                "boolValue": True,
                "enumValue": "FLAVOUR_SOUR",
                "doubleValue": 2.5,
            },
        ),
        (
            "GET",
            "/v1/typed/1/false/1/NaN",
            None,
            {"int64Value": "1", "enumValue": "FLAVOUR_SWEET", "doubleValue": "NaN"},
        ),
        # an unannotated method, at its gRPC path
        ("POST", "/edgetest.v1.KitchenService/Plain", {"stringValue": "p"}, {"stringValue": "p"}),
    ],
)
async def test_rule_forms(stack: Any, method: str, url: str, body: Any, expected: Any) -> None:
    status, payload = await get_json(stack, method, url, json=body)
    assert status == 200, payload
    assert payload == expected


async def test_query_parameters_map_onto_every_field_kind(stack: Any) -> None:
    query = [
        ("int32Value", "-5"),
        ("int64_value", "9007199254740993"),
        ("uint64Value", "18446744073709551615"),
        ("repeatedString", "a"),
        ("repeatedString", "b"),
        ("repeatedInt64", "1"),
        ("repeatedInt64", "2"),
        ("enumValue", "FLAVOUR_SOUR"),
        ("repeatedEnum", "1"),
        ("repeatedEnum", "FLAVOUR_SOUR"),
        ("nested.inner.count", "3"),
        ("nested.name", "deep"),
        ("timestamp", "2024-01-02T03:04:05.500Z"),
        ("duration", "1.5s"),
        ("fieldMask", "a,b.c"),
        ("int64Wrapper", "7"),
        ("boolWrapper", "false"),
        ("stringWrapper", ""),
        ("doubleWrapper", "0.25"),
        ("boolValue", "true"),
        ("floatValue", "-Infinity"),
        ("bytesValue", base64.urlsafe_b64encode(b"\xfb\xff").decode()),
        ("optionalInt32", "0"),
        ("choiceNumber", "9"),
    ]
    async with stack.client() as client:
        response = await client.get("/v1/kitchen/q", params=query)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "stringValue": "q",
        "int32Value": -5,
        "int64Value": "9007199254740993",
        "uint64Value": "18446744073709551615",
        "repeatedString": ["a", "b"],
        "repeatedInt64": ["1", "2"],
        "enumValue": "FLAVOUR_SOUR",
        "repeatedEnum": ["FLAVOUR_SWEET", "FLAVOUR_SOUR"],
        "nested": {"name": "deep", "inner": {"count": 3}},
        "timestamp": "2024-01-02T03:04:05.500Z",
        "duration": "1.500s",
        "fieldMask": "a,b.c",
        "int64Wrapper": "7",
        "boolWrapper": False,
        "stringWrapper": "",
        "doubleWrapper": 0.25,
        "boolValue": True,
        "floatValue": "-Infinity",
        "bytesValue": base64.b64encode(b"\xfb\xff").decode(),
        "optionalInt32": 0,
        "choiceNumber": 9,
    }


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("int32Value=abc", "int32"),
        ("int32Value=99999999999", "int32"),
        ("boolValue=maybe", "boolean"),
        ("enumValue=FLAVOUR_BITTER", "FLAVOUR_BITTER"),
        ("noSuchField=1", "unknown query parameter"),
        ("nested=1", "message field"),
        ("labels=1", "message field"),
        ("int32Value=1&int32Value=2", "more than once"),
        ("timestamp=yesterday", "timestamp"),
        ("bytesValue=***", "base64"),
    ],
)
async def test_bad_query_parameters_are_400(stack: Any, query: str, problem: str) -> None:
    status, payload = await get_json(stack, "GET", f"/v1/kitchen/q?{query}")
    assert status == 400
    assert payload["code"] == 3
    assert problem.lower() in payload["message"].lower()
    (detail,) = payload["details"]  # a google.rpc.BadRequest naming the parameter
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0]["field"] == query.partition("=")[0]


async def test_query_cannot_override_path_or_body_fields(stack: Any) -> None:
    # ignored, as grpc-gateway does: the path or body value wins
    status, payload = await get_json(
        stack, "PATCH", "/v1/kitchen/abc/nested?nested.name=x", json={}
    )
    assert status == 200
    assert payload["nested"] == {}  # the body's, without the parameter's name
    status, payload = await get_json(stack, "GET", "/v1/kitchen/abc?stringValue=other")
    assert status == 200
    assert payload["stringValue"] == "abc"


async def test_proto3_json_mapping_round_trips(stack: Any) -> None:
    body = {
        "stringValue": "s",
        "int64Value": "-12",
        "uint64Value": "12",
        "sint64Value": "-3",
        "fixed64Value": "4",
        "floatValue": 1.5,
        "doubleValue": "Infinity",
        "bytesValue": base64.b64encode(b"\x00\x01binary").decode(),
        "enumValue": 2,
        "nested": {"name": "n", "inners": [{"label": "a"}, {"count": 2}]},
        "labels": {"k": "v"},
        "innerById": {"7": {"label": "seven"}},
        "choiceText": "t",
        "timestamp": "1970-01-01T00:00:01Z",
        "duration": "-0.000000001s",
        "fieldMask": "stringValue,nested.name",
        "int64Wrapper": "-1",
        "structValue": {"a": [1, "x", None, True, {"b": 2.5}]},
        "value": "a string value",
        "listValue": [1, 2],
        "any": {"@type": "type.googleapis.com/edgetest.v1.Inner", "label": "in-any", "count": 5},
        "empty": {},
    }
    status, payload = await get_json(stack, "POST", "/v1/kitchen", json=body)
    assert status == 200, payload
    expected = dict(body)
    expected["enumValue"] = "FLAVOUR_SOUR"  # enums are written by name
    expected["structValue"] = {"a": [1.0, "x", None, True, {"b": 2.5}]}
    expected["listValue"] = [1.0, 2.0]
    assert payload == expected
    # accepted in original proto names too
    status, payload = await get_json(
        stack, "POST", "/v1/kitchen", json={"string_value": "x", "int64_value": 5}
    )
    assert payload == {"stringValue": "x", "int64Value": "5"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"stringValue": ', "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"int32Value": "many"}', "int32"),
        (b'{"int32Value": 1.5}', "int32"),
        (b'{"boolValue": "yes"}', "bool"),
        (b'{"nested": 5}', "nested"),
        (b'{"enumValue": "NOPE"}', "NOPE"),
        (b'{"any": {"@type": "type.googleapis.com/no.Such"}}', "no.Such"),
        (b'{"noSuchField": 1}', "noSuchField"),
    ],
)
async def test_bad_bodies_are_400_with_status_body(stack: Any, body: bytes, problem: str) -> None:
    status, payload = await get_json(
        stack, "POST", "/v1/kitchen", content=body, headers={"content-type": "application/json"}
    )
    assert status == 400
    assert set(payload) == {"code", "message", "details"}
    assert payload["code"] == 3
    assert problem.lower() in payload["message"].lower()


async def test_json_options(stack_factory: Any) -> None:
    extra = {
        "transcoding": {
            "unknown_fields": "ignore",
            "unknown_query_parameters": "ignore",
            "emit_defaults": True,
            "proto_field_names": True,
        }
    }
    async with stack_factory(**extra) as stack:
        status, payload = await get_json(
            stack, "POST", "/v1/kitchen?ignored=1", json={"stringValue": "x", "mystery": 1}
        )
        assert status == 200, payload
        assert payload["string_value"] == "x"
        assert payload["int32_value"] == 0
        assert payload["repeated_string"] == []
        status, payload = await get_json(stack, "GET", "/v1/kitchen/a?mystery=1")
        assert status == 200


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/v1/nested-only/x?nested.name=q", {"name": "q"}),
        ("/v1/nested-only/x", {}),
        ("/v1/tags-only/x?repeatedString=a&repeatedString=b", ["a", "b"]),
        ("/v1/tags-only/x", []),
        ("/v1/count-only/x?int64Value=5", "5"),
        ("/v1/count-only/x", "0"),
    ],
)
async def test_response_body(stack: Any, url: str, expected: Any) -> None:
    status, payload = await get_json(stack, "GET", url)
    assert status == 200
    assert payload == expected


async def test_annotated_method_is_not_exposed_generically_by_default(stack: Any) -> None:
    status, payload = await get_json(stack, "POST", "/edgetest.v1.KitchenService/Echo", json={})
    assert status == 404
    assert payload["code"] == 5


async def test_generic_routes_all(stack_factory: Any) -> None:
    async with stack_factory(transcoding={"generic_routes": "all"}) as stack:
        status, payload = await get_json(
            stack, "POST", "/edgetest.v1.KitchenService/Echo", json={"stringValue": "g"}
        )
        assert (status, payload) == (200, {"stringValue": "g"})
