"""Map fields as query parameters in the OpenAPI document: ``m[key]=value``, as ``deepObject``.

The request binder reads grpc-gateway's ``m[key]=value`` (edge/transcode/query_params.py);
OpenAPI 3 says the same with an object parameter of style ``deepObject``. These tests build
the document from the real test protos and check that what it allows is what the binder
takes: every key the document allows sets exactly that entry, once.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import TEST_PROTOS, make_config
from hypothesis import given, settings
from hypothesis import strategies as st
from mapping_upstream import MAPPING_PROTOS, mapping_registry
from openapi_spec_validator import validate

from edge.errors import BadRequest
from edge.openapi import build_openapi
from edge.openapi.parameters import canonical_integer_pattern
from edge.routes import load_routes
from edge.transcode.binding import RequestBinder
from edge.transcode.json_codec import JsonCodec, JsonOptions

REF = "#/components/schemas/"
Document = dict[str, Any]
INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
STRING_KEY = {"pattern": "^[^\\[\\n]*$"}


def _document(protos: Any) -> Document:
    config = make_config(1, protos=protos)
    return build_openapi(load_routes(config), config)


MAPPING = _document(MAPPING_PROTOS)
KITCHEN = _document(TEST_PROTOS)
REGISTRY = mapping_registry()
LOOKUP = next(
    m for m in REGISTRY.services()["edgetest.mapping.v1.MappingService"] if m.name == "Lookup"
)
GET_LOOKUP = RequestBinder(
    LOOKUP.input_type, LOOKUP.http_rules[0], JsonCodec(REGISTRY.pool, JsonOptions())
)


def _parameters(document: Document, path: str, method: str) -> dict[str, Document]:
    return {p["name"]: p for p in document["paths"][path][method].get("parameters", [])}


def _map(name: str, values: Document, keys: Document) -> Document:
    return {
        "name": name,
        "in": "query",
        "description": f"One query parameter per entry: `{name}[key]=value`.",
        "style": "deepObject",
        "explode": True,
        "schema": {"type": "object", "additionalProperties": values, "propertyNames": keys},
    }


def test_documents_with_map_parameters_are_valid_openapi_3_1() -> None:
    validate(MAPPING)
    validate(KITCHEN)


def test_a_map_of_scalars_is_one_deep_object_parameter() -> None:
    get = _parameters(MAPPING, "/v1/lookups/{id}", "get")
    uint32 = {"pattern": canonical_integer_pattern(0, 2**32 - 1)}
    assert get["byName"] == _map("byName", {"type": "string"}, STRING_KEY)
    assert get["byNumber"] == _map(
        "byNumber", {"type": "string"}, {"pattern": canonical_integer_pattern(-(2**63), 2**63 - 1)}
    )
    assert get["byFlag"] == _map("byFlag", INT32, {"enum": ["true", "false"]})
    assert get["colours"] == _map("colours", {"$ref": REF + "edgetest.mapping.v1.Colour"}, uint32)
    assert get["blobs"]["schema"]["additionalProperties"]["format"] == "byte"
    assert get["patch.labels"] == _map("patch.labels", {"type": "string"}, STRING_KEY)


def test_maps_of_messages_and_maps_the_body_binds_are_not_parameters() -> None:
    get = _parameters(MAPPING, "/v1/lookups/{id}", "get")
    assert "patches" not in get  # map<string, Patch>: body only, as the binder says
    patch = _parameters(MAPPING, "/v1/lookups/{id}", "patch")  # body: "patch"
    assert "byName" in patch and "patch.labels" not in patch
    kitchen = _parameters(KITCHEN, "/v1/kitchen/{string_value}", "get")
    assert kitchen["labels"] == _map("labels", {"type": "string"}, STRING_KEY)
    assert "innerById" not in kitchen  # map<int32, Inner>


def test_a_proto_comment_leads_the_description() -> None:
    described = [
        p
        for item in KITCHEN["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for p in operation.get("parameters", [])
        if p.get("style") == "deepObject"
    ]
    assert described
    for parameter in described:
        assert parameter["description"].endswith(
            f"One query parameter per entry: `{parameter['name']}[key]=value`."
        )


# One valid value per map parameter of GET /v1/lookups/{id}, and how the message reads it.
_VALUES = {
    "byName": ("v", "v"),
    "byNumber": ("v", "v"),
    "byFlag": ("-7", -7),
    "colours": ("COLOUR_RED", 1),
    "blobs": ("AA==", b"\x00"),
    "patch.labels": ("v", "v"),
}


def _keys(schema: Document) -> st.SearchStrategy[str]:
    keys = schema["propertyNames"]
    if "enum" in keys:
        return st.sampled_from(keys["enum"])
    return st.from_regex(keys["pattern"], fullmatch=True)


def _entries(message: Any, name: str) -> dict[Any, Any]:
    field: Any = message
    for part in name.split("."):
        snake = re.sub(r"(?<=[a-z])([A-Z])", r"_\1", part).lower()
        field = getattr(field, snake)
    return dict(field)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(_VALUES)))
def test_every_key_the_document_allows_sets_that_entry(data: st.DataObject, name: str) -> None:
    schema = _parameters(MAPPING, "/v1/lookups/{id}", "get")[name]["schema"]
    keys = data.draw(st.lists(_keys(schema), max_size=4, unique=True))
    text, value = _VALUES[name]
    query = urlencode([(f"{name}[{key}]", text) for key in keys])  # deepObject, exploded
    message: Any = GET_LOOKUP.bind(((("id",), "L"),), query, b"")
    entries = _entries(message, name)
    assert len(entries) == len(keys)  # no two allowed keys name one entry
    for key in keys:
        typed: Any = {"true": True, "false": False}.get(key, key) if name == "byFlag" else key
        if name in ("byNumber", "colours"):
            typed = int(key)
        assert entries[typed] == value


@pytest.mark.parametrize("key", ["a[b", "a\nb"])
def test_string_keys_the_document_leaves_out_name_no_entry(key: str) -> None:
    assert not re.fullmatch(STRING_KEY["pattern"], key)
    with pytest.raises(BadRequest, match="unknown query parameter"):
        GET_LOOKUP.bind(((("id",), "L"),), urlencode({f"byName[{key}]": "v"}), b"")


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (-(2**31), 2**31 - 1),
        (0, 2**32 - 1),
        (-(2**63), 2**63 - 1),
        (0, 2**64 - 1),
        (0, 9),
        (-1, 10),
    ],
)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_canonical_integer_pattern(data: st.DataObject, low: int, high: int) -> None:
    pattern = re.compile(canonical_integer_pattern(low, high))
    near = st.sampled_from([low - 1, low, low + 1, 0, high - 1, high, high + 1, -1, 1])
    number = data.draw(st.one_of(near, st.integers(low * 2 - 10, high * 2 + 10)))
    assert bool(pattern.fullmatch(str(number))) == (low <= number <= high), number
    padded = data.draw(st.sampled_from(["0", "-0", "+", "00"])) + str(abs(number))
    assert not pattern.fullmatch(padded), padded  # one spelling per number
