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
from edge.transcode import field_values, query_params
from edge.transcode.binding import RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions
from edge.transcode.query_params import MAX_QUERY_DEPTH, split_map_key
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


# --- names inside a value carried whole (FieldMask, Timestamp, wrappers, ...) ---------------

KITCHEN_GET = kitchen_binder("GET", "/v1/kitchen/{string_value}", None)
KITCHEN_GET_IGNORING = kitchen_binder(
    "GET", "/v1/kitchen/{string_value}", None, reject_unknown_query=False
)


@pytest.mark.parametrize("binder", [KITCHEN_GET, KITCHEN_GET_IGNORING])
@pytest.mark.parametrize(
    "query",
    [
        "fieldMask=title&fieldMask.paths=x",  # was a 500: "title".setdefault
        "field_mask.paths=x&fieldMask=title",
        "timestamp=2024-01-01T00:00:00Z&timestamp.seconds=5",  # was silently replaced
        "timestamp.seconds=5&timestamp=2024-01-01T00:00:00Z",
        "duration.nanos=1",
        "int64Wrapper.value=7",
        "string_wrapper.value=x",
        "struct_value.fields=1",
        "structValue.fields[a]=1",
        "value.string_value=x",
        "list_value.values=1",
        "any.type_url=x",
        "timestamp.seconds.x=1",
    ],
)
def test_a_name_inside_a_value_is_400(binder: RequestBinder, query: str) -> None:
    with pytest.raises(BadRequest) as caught:
        binder.bind(((("string_value",), "p"),), query, b"")
    assert "names a field inside a value" in caught.value.message
    shown = next(key for key in query.split("&") if "." in key.partition("=")[0])
    assert caught.value.details[0]["fieldViolations"][0]["field"] == shown.partition("=")[0]
    explained = binder.query_fields(query)
    assert explained[shown.partition("=")[0]].startswith("error: ")


def test_a_value_given_whole_still_binds() -> None:
    message: Any = KITCHEN_GET.bind(
        ((("string_value",), "p"),),
        "fieldMask=title,pageCount&timestamp=2024-01-01T00:00:00Z&duration=1.5s"
        "&int64Wrapper=7&nested.inner.label=x",
        b"",
    )
    assert list(message.field_mask.paths) == ["title", "page_count"]
    assert message.timestamp.seconds == 1704067200
    assert message.duration.seconds == 1 and message.duration.nanos == 500_000_000
    assert message.int64_wrapper.value == 7
    assert message.nested.inner.label == "x"


def test_a_name_inside_a_bound_value_is_still_ignored() -> None:
    binder = kitchen_binder("GET", "/v1/kitchen/{timestamp}", None)
    assert binder.query_fields("timestamp.seconds=5") == {
        "timestamp.seconds": "ignored: the path or body binds this field"
    }


# --- deep names: a cap, one walk, a bounded cache ------------------------------------------

PATCH_LOOKUP = RequestBinder(LOOKUP.input_type, LOOKUP.http_rules[1], CODEC)


def deep(levels: int, leaf: str = "title") -> str:
    """``patch.child.child...title``: ``levels`` segments in all (Patch.child recurses)."""
    return ".".join(["patch", *["child"] * (levels - 2), leaf])


def test_a_name_at_the_depth_cap_binds() -> None:
    message: Any = bound(f"{deep(MAX_QUERY_DEPTH)}=x")
    node = message.patch
    for _ in range(MAX_QUERY_DEPTH - 2):
        node = node.child
    assert node.title == "x"


@pytest.mark.parametrize("binder", [GET_LOOKUP, IGNORING, PATCH_LOOKUP])
@pytest.mark.parametrize("levels", [MAX_QUERY_DEPTH + 1, 5000])
def test_a_name_past_the_depth_cap_is_400(binder: RequestBinder, levels: int) -> None:
    """Whatever the name would resolve to (a field, nothing, a bound field): refused."""
    for leaf in ("title", "nope"):
        name = deep(levels, leaf)
        with pytest.raises(BadRequest) as caught:
            binder.bind(((("id",), "L"),), f"{name}=x", b"")
        assert f"more than {MAX_QUERY_DEPTH} levels deep" in caught.value.message
        assert caught.value.details[0]["fieldViolations"][0]["field"] == name


def counting_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def counted(descriptor: Any, name: str) -> Any:
        seen.append(name)
        return field_values.field_named(descriptor, name)

    monkeypatch.setattr(query_params, "field_named", counted)
    return seen


def test_a_name_is_resolved_in_one_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """One field lookup per segment (the walk used to re-resolve every prefix of a name
    that resolves to nothing: quadratic in its depth), and none past the cap."""
    seen = counting_lookups(monkeypatch)
    binder = RequestBinder(LOOKUP.input_type, LOOKUP.http_rules[0], CODEC)
    name = deep(MAX_QUERY_DEPTH, "nope")
    with pytest.raises(BadRequest, match="unknown query parameter"):
        binder.bind(((("id",), "L"),), f"{name}=x", b"")
    assert len(seen) == MAX_QUERY_DEPTH
    seen.clear()
    with pytest.raises(BadRequest, match="levels deep"):
        binder.bind(((("id",), "L"),), f"{deep(100_000)}=x", b"")
    assert seen == []


def test_the_cache_keeps_short_names_of_every_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = counting_lookups(monkeypatch)
    binder = kitchen_binder("PATCH", "/v1/{string_value}/x", "nested", reject_unknown_query=False)
    query = "nope.a=1&nested.name=2&string_value.x=3&int32Value=4"
    for _ in range(3):
        message: Any = binder.bind(((("string_value",), "p"),), query, b"")
        assert message.int32_value == 4 and message.nested.name == ""
    assert len(seen) == 1 + 1 + 1 + 1  # each name walked once: unknown, bound, bound, field


def test_long_names_are_not_cached() -> None:
    """A client picks the names: only short ones are kept, so the cache stays small."""
    binder = RequestBinder(
        LOOKUP.input_type, LOOKUP.http_rules[0], CODEC, reject_unknown_query=False
    )
    long_name, short_name = "n" * 257, "n" * 256
    binder.bind(((("id",), "L"),), f"{long_name}=x&{short_name}=y&by_name[k]=v", b"")
    assert list(binder._query._cache) == [short_name]
    assert list(binder._query._map_cache) == ["by_name"]
