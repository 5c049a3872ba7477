"""Query parameters: map entries (``m[key]=value``) and fields the path or body binds."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from google.protobuf import descriptor_pool
from hypothesis import given, settings
from hypothesis import strategies as st
from mapping_upstream import mapping_registry

from edge.descriptors.http_rules import HttpRule
from edge.errors import BadRequest
from edge.routing.template import parse_template
from edge.transcode.binding import RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edge.transcode.query_params import split_map_key
from edgetest.v1 import kitchen_pb2

REGISTRY = mapping_registry()
LOOKUP = next(
    m for m in REGISTRY.services()["edgetest.mapping.v1.MappingService"] if m.name == "Lookup"
)
CODEC = JsonCodec(REGISTRY.pool, JsonOptions())
GET_LOOKUP = RequestBinder(LOOKUP.input_type, LOOKUP.http_rules[0], CODEC)
IGNORING = RequestBinder(LOOKUP.input_type, LOOKUP.http_rules[0], CODEC, reject_unknown_query=False)

# grpc-gateway v2 runtime/query.go: valuesKeyRegexp (RE2: "." is any character but \n)
GO_REGEXP = re.compile(r"^(.*)\[(.*)\]$")


@settings(max_examples=2000)
@given(st.text(alphabet="ab[]\n.=", max_size=10))
def test_keys_split_as_grpc_gateway_s_regexp(key: str) -> None:
    match = GO_REGEXP.fullmatch(key)
    if match is None or not match.group(1):
        # no split, or an empty field name: either way no field is named
        assert split_map_key(key) is None
    else:
        assert split_map_key(key) == (match.group(1), match.group(2))


def bound(query: str, binder: RequestBinder = GET_LOOKUP) -> Any:
    return binder.bind(((("id",), "L"),), query, b"")


def test_entries_of_every_key_kind() -> None:
    message: Any = bound(
        "by_name[a]=1&byName[b]=2&by_number[-3]=x&by_flag[t]=4&by_flag[FALSE]=5"
        "&colours[7]=COLOUR_GREEN&blobs[z]=_-8"
    )
    assert dict(message.by_name) == {"a": "1", "b": "2"}
    assert dict(message.by_number) == {-3: "x"}
    assert dict(message.by_flag) == {True: 4, False: 5}
    assert dict(message.colours) == {7: 2}
    assert dict(message.blobs) == {"z": b"\xff\xef"}


def test_an_empty_key_and_brackets_inside_a_key() -> None:
    message: Any = bound("by_name[]=e&by_name[a]b]=c")
    # "by_name[a]b]" splits at its last "[": the key is "a]b"
    assert dict(message.by_name) == {"": "e", "a]b": "c"}
    with pytest.raises(BadRequest, match="unknown query parameter"):
        bound("by_name[%5B%5D]=x")  # "by_name[[]]" names a field "by_name["


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("by_name[a]=1&by_name[a]=2", "given more than once"),
        ("by_number[7]=1&by_number[07]=2", "given more than once"),
        ("by_number[]=1", "expected a decimal integer"),
        ("by_number[%2B1]=1", "expected a decimal integer"),
        ("by_number[1_0]=1", "expected a decimal integer"),
        ("by_number[%201]=1", "expected a decimal integer"),
        ("by_number[9223372036854775808]=1", "query parameter"),
        ("by_flag[2]=1", "expected true or false"),
        ("by_flag[true]=x", "query parameter"),
        ("colours[4294967296]=1", "query parameter"),
        ("blobs[a]=%%%", "base64"),
        ("patches[a]=1", "map of messages"),
        ("patch.title[a]=1", "not a map"),
        ("by_name=1", "message field"),
        ("by_name[a", "unknown query parameter"),
        ("nope[a]=1", "unknown query parameter"),
        ("by_name[a][b]=1", "unknown query parameter"),
    ],
)
def test_refused_entries_name_the_parameter(query: str, problem: str) -> None:
    with pytest.raises(BadRequest) as caught:
        bound(query)
    assert problem in caught.value.message
    shown = query.rpartition("&")[2].partition("=")[0]
    assert caught.value.details[0]["fieldViolations"][0]["field"] == unquote(shown)


def test_unknown_bracketed_names_may_be_ignored() -> None:
    message: Any = bound("nope[a]=1&by_name[a][b]=2&by_name[k]=v", IGNORING)
    assert dict(message.by_name) == {"k": "v"}


def test_many_entries_cost_one_resolution() -> None:
    query = "&".join(f"by_name[k{i}]=v" for i in range(2000))
    message: Any = bound(query)
    assert len(message.by_name) == 2000
    assert len(GET_LOOKUP._query._map_cache) < 10  # keyed by field, not by map key


# --- parameters for fields the path or body binds --------------------------------------------

KITCHEN_CODEC = JsonCodec(descriptor_pool.Default(), JsonOptions())


def kitchen_binder(method: str, template: str, body: str | None, **options: Any) -> RequestBinder:
    rule = HttpRule(method, parse_template(template), body, None)
    return RequestBinder(kitchen_pb2.Kitchen, rule, KITCHEN_CODEC, **options)


@pytest.mark.parametrize("reject", [True, False])
def test_a_parameter_under_a_bound_field_is_ignored(reject: bool) -> None:
    binder = kitchen_binder(
        "PATCH",
        "/v1/{string_value}/{nested.inner.label}",
        "repeated_string",
        reject_unknown_query=reject,
    )
    query = (
        "stringValue=q&string_value=q&nested.inner.label=q&nested.inner.label.x=q"
        "&repeatedString=q&int32Value=5&nested.name=kept"
    )
    message: Any = binder.bind(
        ((("string_value",), "p"), (("nested", "inner", "label"), "p")), query, b'["b"]'
    )
    assert message.string_value == "p"
    assert message.nested.inner.label == "p"
    assert list(message.repeated_string) == ["b"]
    assert message.int32_value == 5
    assert message.nested.name == "kept"  # a sibling of a bound field is not bound
    assert binder.query_fields("string_value=1&int32Value=2") == {
        "string_value": "ignored: the path or body binds this field",
        "int32Value": "int32_value",
    }
