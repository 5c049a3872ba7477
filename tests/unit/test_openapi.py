"""The OpenAPI document: valid OpenAPI 3.1, and true to the proto3 JSON mapping and rules.

Built from the real test protos (``tests/protos/edgetest/v1/kitchen.proto``, one field of
every kind) and the demo (``protos/``), compiled in-process like the gateway does.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DEMO_PROTOS, TEST_PROTOS, make_config
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from edge.config import Config
from edge.descriptors.registry import build_registry
from edge.openapi import build_openapi, openapi_path
from edge.openapi.comments import Comments
from edge.openapi.schemas import SchemaBuilder
from edge.routes import Routes, load_routes
from edge.routing.template import parse_template

REF = "#/components/schemas/"
Document = dict[str, Any]


def _document(protos: Any, **extra: Any) -> Document:
    config = make_config(1, protos=protos, extra=extra)
    return build_openapi(load_routes(config), config)


@pytest.fixture(scope="module")
def kitchen_routes() -> tuple[Routes, Config]:
    config = make_config(1, protos=TEST_PROTOS)
    return load_routes(config), config


@pytest.fixture(scope="module")
def kitchen(kitchen_routes: tuple[Routes, Config]) -> Document:
    return build_openapi(*kitchen_routes)


@pytest.fixture(scope="module")
def demo() -> Document:
    return _document(DEMO_PROTOS)


def _kitchen_property(document: Document, name: str) -> Any:
    return document["components"]["schemas"]["edgetest.v1.Kitchen"]["properties"][name]


def _parameters(operation: Document) -> dict[str, Document]:
    return {p["name"]: p for p in operation.get("parameters", [])}


# --- validity --------------------------------------------------------------------------


def test_the_demo_document_is_valid_openapi_3_1(demo: Document) -> None:
    assert demo["openapi"] == "3.1.0"
    validate(demo)


def test_the_test_protos_document_is_valid_openapi_3_1(kitchen: Document) -> None:
    validate(kitchen)


def test_a_document_with_every_option_is_valid() -> None:
    document = _document(
        DEMO_PROTOS,
        transcoding={"proto_field_names": True, "enums_as_ints": True, "generic_routes": "all"},
        auth={
            "issuers": [
                {"issuer": "https://a.example/", "algorithms": ["HS256"], "keys": [{"secret": "s"}]}
            ],
            "api_keys": {"keys": {"bot": "k"}, "query_parameter": "key"},
            "token_query_parameter": "access_token",
            "token_cookie": "session",
        },
        policies=[
            {"match": ["*.Get*"], "auth": {"require": "token"}},
            {
                "match": ["*"],
                "auth": {"require": "scopes", "scopes": ["w"]},
                "rate_limits": [{"algorithm": "token_bucket", "limit": 1}],
            },
        ],
        openapi={
            "title": "Library",
            "version": "2.0",
            "description": "Books.",
            "servers": ["https://api.example"],
        },
    )
    validate(document)
    assert document["info"] == {"title": "Library", "version": "2.0", "description": "Books."}
    assert document["servers"] == [{"url": "https://api.example"}]


def test_the_document_is_deterministic(kitchen_routes: tuple[Routes, Config]) -> None:
    assert build_openapi(*kitchen_routes) == build_openapi(*kitchen_routes)


# --- the proto3 JSON mapping, field by field --------------------------------------------

_INT64 = {"type": "string", "format": "int64"}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295}


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("stringValue", {"type": "string"}),
        ("int32Value", {"type": "integer", "format": "int32"}),
        ("int64Value", _INT64),
        ("uint32Value", _UINT32),
        ("uint64Value", {"type": "string", "format": "uint64"}),
        ("sint64Value", _INT64),
        ("fixed64Value", {"type": "string", "format": "uint64"}),
        ("floatValue", {"type": "number", "format": "float"}),
        ("doubleValue", {"type": "number", "format": "double"}),
        ("boolValue", {"type": "boolean"}),
        ("bytesValue", {"type": "string", "format": "byte", "description": "base64"}),
        ("enumValue", {"$ref": REF + "edgetest.v1.Flavour"}),
        ("nested", {"$ref": REF + "edgetest.v1.Nested"}),
        ("repeatedString", {"type": "array", "items": {"type": "string"}}),
        ("repeatedInt64", {"type": "array", "items": _INT64}),
        ("repeatedEnum", {"type": "array", "items": {"$ref": REF + "edgetest.v1.Flavour"}}),
        ("labels", {"type": "object", "additionalProperties": {"type": "string"}}),
        (
            "innerById",
            {
                "type": "object",
                "additionalProperties": {"$ref": REF + "edgetest.v1.Inner"},
                "propertyNames": {"pattern": "^-?[0-9]+$"},
            },
        ),
        ("optionalInt32", {"type": "integer", "format": "int32"}),
        ("timestamp", {"$ref": REF + "google.protobuf.Timestamp"}),
        ("duration", {"$ref": REF + "google.protobuf.Duration"}),
        ("fieldMask", {"$ref": REF + "google.protobuf.FieldMask"}),
        ("int64Wrapper", {"$ref": REF + "google.protobuf.Int64Value"}),
        ("structValue", {"$ref": REF + "google.protobuf.Struct"}),
        ("value", {"$ref": REF + "google.protobuf.Value"}),
        ("listValue", {"$ref": REF + "google.protobuf.ListValue"}),
        ("any", {"$ref": REF + "google.protobuf.Any"}),
        ("empty", {"$ref": REF + "google.protobuf.Empty"}),
    ],
)
def test_field_kinds(kitchen: Document, name: str, schema: Document) -> None:
    assert _kitchen_property(kitchen, name) == schema


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("Timestamp", {"type": "string", "format": "date-time"}),
        ("Duration", {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"}),
        ("FieldMask", {"type": "string"}),
        ("Int64Value", {"type": ["string", "null"], "format": "int64"}),
        ("StringValue", {"type": ["string", "null"]}),
        ("BoolValue", {"type": ["boolean", "null"]}),
        ("DoubleValue", {"type": ["number", "null"], "format": "double"}),
        ("Struct", {"type": "object", "additionalProperties": True}),
        ("Value", {}),
        ("ListValue", {"type": "array", "items": {}}),
        ("Empty", {"type": "object"}),
    ],
)
def test_well_known_types_have_their_json_forms(
    kitchen: Document, name: str, schema: Document
) -> None:
    found = dict(kitchen["components"]["schemas"][f"google.protobuf.{name}"])
    found.pop("description", None)
    assert found == schema


def test_any_carries_its_type_url(kitchen: Document) -> None:
    any_schema = kitchen["components"]["schemas"]["google.protobuf.Any"]
    assert any_schema["type"] == "object"
    assert any_schema["required"] == ["@type"]
    assert any_schema["properties"]["@type"]["type"] == "string"
    assert any_schema["additionalProperties"] is True


def test_enums_are_string_enums_of_value_names(kitchen: Document) -> None:
    flavour = kitchen["components"]["schemas"]["edgetest.v1.Flavour"]
    assert flavour["type"] == "string"
    assert flavour["enum"] == ["FLAVOUR_UNSPECIFIED", "FLAVOUR_SWEET", "FLAVOUR_SOUR"]


def test_enums_as_ints_accepts_names_and_numbers() -> None:
    document = _document(TEST_PROTOS, transcoding={"enums_as_ints": True})
    flavour = document["components"]["schemas"]["edgetest.v1.Flavour"]
    assert flavour["type"] == ["string", "integer"]
    assert flavour["enum"] == ["FLAVOUR_UNSPECIFIED", "FLAVOUR_SWEET", "FLAVOUR_SOUR", 0, 1, 2]


def test_oneofs_are_documented_and_proto3_optional_is_not_a_oneof(kitchen: Document) -> None:
    schema = kitchen["components"]["schemas"]["edgetest.v1.Kitchen"]
    assert schema["x-oneofs"] == {"choice": ["choiceText", "choiceNumber"]}
    assert "oneof `choice`" in schema["description"]
    assert "`choiceNumber`" in _kitchen_property(kitchen, "choiceText")["description"]
    assert "description" not in _kitchen_property(kitchen, "optionalInt32")


def test_proto_field_names_switch_property_and_query_names() -> None:
    document = _document(TEST_PROTOS, transcoding={"proto_field_names": True})
    properties = document["components"]["schemas"]["edgetest.v1.Kitchen"]["properties"]
    assert "int64_value" in properties and "int64Value" not in properties
    operation = document["paths"]["/v1/kitchen/{string_value}"]["get"]
    assert "nested.inner.label" in _parameters(operation)
    assert "repeated_string" in _parameters(operation)


def test_recursive_messages_refer_to_themselves() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="tree.proto", package="t", syntax="proto3")
    node = file.message_type.add(name="Node")
    node.field.add(name="child", number=1, type=11, type_name=".t.Node", label=1)
    node.field.add(name="children", number=2, type=11, type_name=".t.Node", label=3)
    registry = build_registry([descriptor_pb2.FileDescriptorSet(file=[file])])
    builder = SchemaBuilder(Comments(registry.file_protos))
    assert builder.ref(registry.pool.FindMessageTypeByName("t.Node")) == {"$ref": REF + "t.Node"}
    properties = builder.components()["t.Node"]["properties"]
    assert properties["child"] == {"$ref": REF + "t.Node"}
    assert properties["children"] == {"type": "array", "items": {"$ref": REF + "t.Node"}}


def test_error_schema_is_google_rpc_status(kitchen: Document) -> None:
    schemas = kitchen["components"]["schemas"]
    status = schemas["google.rpc.Status"]["properties"]
    assert status["code"]["type"] == "integer"
    assert status["message"] == {**status["message"], "type": "string"}
    assert status["details"]["type"] == "array"
    assert status["details"]["items"]["$ref"] == REF + "google.protobuf.Any"
    error = kitchen["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"] == {"$ref": REF + "google.rpc.Status"}
    for item in kitchen["paths"].values():
        for operation in item.values():
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}


# --- comments ---------------------------------------------------------------------------


def test_proto_comments_become_descriptions(demo: Document) -> None:
    operation = demo["paths"]["/v1/{parent}/books"]["get"]
    assert operation["summary"] == "Lists the books on a shelf, a page at a time."
    assert _parameters(operation)["genre"]["description"] == "Only books of this genre, when set."
    book = demo["components"]["schemas"]["edgedemo.library.v1.Book"]
    assert book["properties"]["name"]["description"] == "shelves/{shelf}/books/{book}"
    stream = demo["paths"]["/v1/{parent}/books:stream"]["get"]
    assert stream["summary"].startswith("Server streaming: the shelf's books")
    assert "Over HTTP: NDJSON" in stream["description"]


# --- paths, parameters and bodies --------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/kitchen/{string_value}", "/v1/kitchen/{string_value}"),
        ("/v1/{name=shelves/*/books/*}:publish", "/v1/{name}:publish"),
        ("/v1/{resource=projects/*/items/**}", "/v1/{resource}"),
        (
            "/v1/deep/{nested.inner.label}/{nested.name}",
            "/v1/deep/{nested.inner.label}/{nested.name}",
        ),
        ("/v1/a/*/b", "/v1/a/*/b"),
    ],
)
def test_openapi_path(template: str, path: str) -> None:
    assert openapi_path(parse_template(template)) == path


def test_operations_of_the_demo(demo: Document) -> None:
    paths = demo["paths"]
    assert set(paths) == {
        "/edgedemo.library.v1.LibraryService/GetShelfStats",
        "/v1/{name}",
        "/v1/{name}:publish",
        "/v1/{parent}/books",
        "/v1/{parent}/books:import",
        "/v1/{parent}/books:stream",
        "/v1/{shelf}:discuss",
    }
    ids = {op["operationId"] for item in paths.values() for op in item.values()}
    prefix = "edgedemo.library.v1.LibraryService."
    assert {prefix + name for name in ("ListBooks", "GetBook", "UpdateBook", "UpdateBook_2")} <= ids
    assert demo["tags"] == [{"name": "edgedemo.library.v1.LibraryService"}]


def test_multi_segment_variables_say_their_pattern(demo: Document) -> None:
    parent = _parameters(demo["paths"]["/v1/{parent}/books"]["get"])["parent"]
    assert parent["required"] is True and parent["in"] == "path"
    assert parent["schema"] == {"type": "string", "pattern": "^shelves/[^/]+$"}
    assert "`shelves/*`" in parent["description"]
    assert "%2F" in parent["description"]


def test_equivalent_paths_share_one_path_and_name(demo: Document) -> None:
    """/v1/{name} and /v1/{book.name} are one OpenAPI path: the field is named instead."""
    item = demo["paths"]["/v1/{name}"]
    assert set(item) == {"get", "delete", "patch", "put"}
    name = _parameters(item["patch"])["name"]
    assert name["description"].startswith("Sets the request field `book.name`.")


def test_query_parameters_are_the_fields_path_and_body_leave_free(kitchen: Document) -> None:
    get = _parameters(kitchen["paths"]["/v1/kitchen/{string_value}"]["get"])
    assert get["string_value"]["in"] == "path"
    assert get["int64Value"]["schema"] == _INT64
    assert get["nested.inner.label"]["schema"] == {"type": "string"}
    assert get["repeatedString"] == {
        "name": "repeatedString",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
    }
    assert get["enumValue"]["schema"] == {"$ref": REF + "edgetest.v1.Flavour"}
    assert get["int64Wrapper"]["schema"] == _INT64  # the wrapped scalar
    assert get["timestamp"]["schema"] == {"$ref": REF + "google.protobuf.Timestamp"}
    for absent in ("labels", "innerById", "nested.inners", "structValue", "any", "stringValue"):
        assert absent not in get, absent
    patch = _parameters(kitchen["paths"]["/v1/kitchen/{string_value}/nested"]["patch"])
    assert not any(name.startswith("nested") for name in patch)
    assert "parameters" not in kitchen["paths"]["/v1/kitchen"]["post"]  # body: "*"
    deep = _parameters(kitchen["paths"]["/v1/deep/{nested.inner.label}/{nested.name}"]["get"])
    assert "nested.inner.count" in deep and "nested.inner.label" in deep
    assert deep["nested.inner.label"]["in"] == "path"


def test_request_bodies(demo: Document, kitchen: Document) -> None:
    create = demo["paths"]["/v1/{parent}/books"]["post"]["requestBody"]
    assert create["content"]["application/json"]["schema"] == {
        "$ref": REF + "edgedemo.library.v1.Book"
    }
    whole = kitchen["paths"]["/v1/kitchen"]["post"]["requestBody"]
    assert whole["content"]["application/json"]["schema"] == {"$ref": REF + "edgetest.v1.Kitchen"}
    assert "requestBody" not in kitchen["paths"]["/v1/kitchen/{string_value}"]["get"]
    generic = demo["paths"]["/edgedemo.library.v1.LibraryService/GetShelfStats"]["post"]
    assert generic["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "edgedemo.library.v1.GetShelfStatsRequest"
    }
    assert "gRPC path" in generic["description"]


def test_client_streaming_takes_ndjson(demo: Document) -> None:
    body = demo["paths"]["/v1/{parent}/books:import"]["post"]["requestBody"]
    assert body["content"] == {
        "application/x-ndjson": {"schema": {"$ref": REF + "edgedemo.library.v1.CreateBookRequest"}}
    }


def test_response_body_is_honoured(demo: Document, kitchen: Document) -> None:
    publish = demo["paths"]["/v1/{name}:publish"]["post"]["responses"]["200"]
    assert publish["content"]["application/json"]["schema"] == {
        "$ref": REF + "google.protobuf.Timestamp"
    }
    tags = kitchen["paths"]["/v1/tags-only/{string_value}"]["get"]["responses"]["200"]
    assert tags["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    count = kitchen["paths"]["/v1/count-only/{string_value}"]["get"]["responses"]["200"]
    assert count["content"]["application/json"]["schema"] == _INT64


def test_server_streaming_offers_three_framings(kitchen: Document) -> None:
    content = kitchen["paths"]["/v1/count/{count}"]["get"]["responses"]["200"]["content"]
    tick = {"$ref": REF + "edgetest.v1.Tick"}
    status = {"$ref": REF + "google.rpc.Status"}
    assert content["application/x-ndjson"]["schema"]["properties"] == {
        "result": tick,
        "error": status,
    }
    assert content["text/event-stream"]["schema"]["type"] == "string"
    array = content["application/json"]["schema"]
    assert array["type"] == "array"
    assert array["items"]["anyOf"][0] == tick


def test_custom_methods_are_listed_as_omitted(kitchen: Document) -> None:
    assert kitchen["x-edge-omitted"] == [
        "PURGE /v1/kitchen/{string_value} (edgetest.v1.KitchenService.Echo): "
        "OpenAPI 3.1 has no custom HTTP methods"
    ]
    ids = [op["operationId"] for item in kitchen["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


# --- security -----------------------------------------------------------------------------


def test_security_follows_the_policies() -> None:
    document = _document(
        DEMO_PROTOS,
        auth={
            "issuers": [
                {"issuer": "https://a.example/", "algorithms": ["HS256"], "keys": [{"secret": "s"}]}
            ],
            "api_keys": {"keys": {"bot": "k"}},
        },
        policies=[
            {"match": ["*.GetBook", "*.ListBooks"], "auth": {"require": "token"}},
            {
                "match": ["*.DeleteBook"],
                "auth": {"require": "scopes", "scopes": ["library.write", "admin"]},
            },
        ],
    )
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT from an accepted issuer (https://a.example/)",
    }
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    item = document["paths"]["/v1/{name}"]
    assert item["get"]["security"] == [{"bearerAuth": []}, {"apiKey": []}]
    assert item["get"]["responses"]["401"] == {"$ref": "#/components/responses/Unauthenticated"}
    assert item["delete"]["security"] == [{"bearerAuth": ["admin", "library.write"]}]
    assert "403" in item["delete"]["responses"]
    assert "security" not in item["patch"]  # public
    assert "401" not in item["patch"]["responses"]


def test_no_security_schemes_without_auth(demo: Document) -> None:
    assert "securitySchemes" not in demo["components"]
