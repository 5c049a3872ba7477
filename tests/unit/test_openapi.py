"""The OpenAPI document: valid OpenAPI 3.1, and true to the proto3 JSON mapping and rules.

Built from the real test protos (``tests/protos/edgetest/v1/kitchen.proto``, one field of
every kind) and the demo (``protos/``), compiled in-process like the gateway does.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from conftest import DEMO_PROTOS, TEST_PROTOS, make_config
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from edge.config import Config
from edge.descriptors.registry import build_registry
from edge.openapi import build_openapi, json_forms, openapi_path
from edge.openapi.comments import Comments
from edge.openapi.json_forms import integer_pattern
from edge.openapi.naming import OperationNames
from edge.openapi.parameters import canonical_integer_pattern
from edge.openapi.schemas import SchemaBuilder
from edge.routes import Routes, load_routes
from edge.routing.table import RouteMatch
from edge.routing.template import parse_template

REF = "#/components/schemas/"
_BASE64 = r"^([A-Za-z0-9+/_-]{4})*([A-Za-z0-9+/_-]{2}={0,2}|[A-Za-z0-9+/_-]{3}=?)?$"
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

_INT64 = {"type": "string", "format": "int64", "pattern": integer_pattern(-(2**63), 2**63 - 1)}
_UINT64 = {"type": "string", "format": "uint64", "pattern": integer_pattern(0, 2**64 - 1)}


def _number(types: list[str], fmt: str, low: int, high: int) -> Document:
    return {
        "type": types,
        "format": fmt,
        "minimum": low,
        "maximum": high,
        "pattern": integer_pattern(low, high),
    }


def _or_null(schema: Document) -> Document:
    return {"anyOf": [schema, {"type": "null"}]}


_FLOAT = r"^(NaN|-?Infinity|-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?)$"


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("stringValue", {"type": ["string", "null"]}),
        ("int32Value", _number(["integer", "string", "null"], "int32", -(2**31), 2**31 - 1)),
        ("int64Value", _number(["string", "integer", "null"], "int64", -(2**63), 2**63 - 1)),
        ("uint32Value", _number(["integer", "string", "null"], "uint32", 0, 2**32 - 1)),
        ("uint64Value", _number(["string", "integer", "null"], "uint64", 0, 2**64 - 1)),
        ("sint64Value", _number(["string", "integer", "null"], "int64", -(2**63), 2**63 - 1)),
        ("fixed64Value", _number(["string", "integer", "null"], "uint64", 0, 2**64 - 1)),
        (
            "floatValue",
            {
                "type": ["number", "string", "null"],
                "format": "float",
                "minimum": -3.4028234663852886e38,
                "maximum": 3.4028234663852886e38,
                "pattern": _FLOAT,
            },
        ),
        (
            "doubleValue",
            {"type": ["number", "string", "null"], "format": "double", "pattern": _FLOAT},
        ),
        ("boolValue", {"type": ["boolean", "null"]}),
        (
            "bytesValue",
            {
                "type": ["string", "null"],
                "format": "byte",
                "pattern": _BASE64,
                "description": "base64 (standard or URL-safe, padding optional)",
            },
        ),
        ("enumValue", _or_null({"$ref": REF + "edgetest.v1.Flavour"})),
        ("nested", _or_null({"$ref": REF + "edgetest.v1.Nested"})),
        ("repeatedString", {"type": ["array", "null"], "items": {"type": "string"}}),
        (
            "repeatedInt64",
            {
                "type": ["array", "null"],
                "items": _number(["string", "integer"], "int64", -(2**63), 2**63 - 1),
            },
        ),
        (
            "repeatedEnum",
            {"type": ["array", "null"], "items": {"$ref": REF + "edgetest.v1.Flavour"}},
        ),
        ("labels", {"type": ["object", "null"], "additionalProperties": {"type": "string"}}),
        (
            "innerById",
            {
                "type": ["object", "null"],
                "additionalProperties": {"$ref": REF + "edgetest.v1.Inner"},
                "propertyNames": {"pattern": canonical_integer_pattern(-(2**31), 2**31 - 1)},
            },
        ),
        ("optionalInt32", _number(["integer", "string", "null"], "int32", -(2**31), 2**31 - 1)),
        ("timestamp", _or_null({"$ref": REF + "google.protobuf.Timestamp"})),
        ("duration", _or_null({"$ref": REF + "google.protobuf.Duration"})),
        ("fieldMask", _or_null({"$ref": REF + "google.protobuf.FieldMask"})),
        ("int64Wrapper", _or_null({"$ref": REF + "google.protobuf.Int64Value"})),
        ("structValue", _or_null({"$ref": REF + "google.protobuf.Struct"})),
        ("value", {"$ref": REF + "google.protobuf.Value"}),  # null is a Value
        ("listValue", _or_null({"$ref": REF + "google.protobuf.ListValue"})),
        ("any", _or_null({"$ref": REF + "google.protobuf.Any"})),
        ("empty", _or_null({"$ref": REF + "google.protobuf.Empty"})),
    ],
)
def test_field_kinds(kitchen: Document, name: str, schema: Document) -> None:
    assert _kitchen_property(kitchen, name) == schema


# the patterns are held to json_format value by value in test_openapi_schemas.py
_TIMESTAMP = json_forms._TIMESTAMP_PATTERN


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("Timestamp", {"type": "string", "format": "date-time", "pattern": _TIMESTAMP}),
        ("Duration", {"type": "string", "pattern": json_forms._DURATION_PATTERN}),
        ("FieldMask", {"type": "string", "pattern": r"^([A-Za-z0-9.]+(,[A-Za-z0-9.]+)*)?$"}),
        ("Int64Value", _number(["string", "integer", "null"], "int64", -(2**63), 2**63 - 1)),
        ("StringValue", {"type": ["string", "null"]}),
        ("BoolValue", {"type": ["boolean", "null"]}),
        (
            "DoubleValue",
            {"type": ["number", "string", "null"], "format": "double", "pattern": _FLOAT},
        ),
        ("Struct", {"type": "object", "additionalProperties": True}),
        ("Value", {}),
        ("ListValue", {"type": "array", "items": {}}),
        ("Empty", {"type": "object", "additionalProperties": False}),
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


def test_enums_are_value_names_or_any_int32(kitchen: Document) -> None:
    """proto3 enums are open: json_format reads any int32 and keeps it as unknown."""
    flavour = kitchen["components"]["schemas"]["edgetest.v1.Flavour"]
    by_name, by_number = flavour["anyOf"]
    assert by_name == {
        "type": "string",
        "enum": ["FLAVOUR_UNSPECIFIED", "FLAVOUR_SWEET", "FLAVOUR_SOUR"],
    }
    assert by_number == {
        "type": "integer",
        "format": "int32",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    }
    assert "Written as value names" in flavour["description"]


def test_enums_as_ints_says_numbers_are_written() -> None:
    document = _document(TEST_PROTOS, transcoding={"enums_as_ints": True})
    flavour = document["components"]["schemas"]["edgetest.v1.Flavour"]
    assert [kind["type"] for kind in flavour["anyOf"]] == ["string", "integer"]
    assert "Written as numbers" in flavour["description"]


def test_oneofs_are_documented_and_proto3_optional_is_not_a_oneof(kitchen: Document) -> None:
    schema = kitchen["components"]["schemas"]["edgetest.v1.Kitchen"]
    assert schema["x-oneofs"] == {"choice": ["choiceText", "choiceNumber"]}
    assert "oneof `choice`" in schema["description"]
    assert "`choiceNumber`" in _kitchen_property(kitchen, "choiceText")["description"]
    assert "description" not in _kitchen_property(kitchen, "optionalInt32")
    assert schema["allOf"] == [
        {
            "not": {
                "required": ["choiceText", "choiceNumber"],
                "properties": {
                    "choiceText": {"not": {"type": "null"}},
                    "choiceNumber": {"not": {"type": "null"}},
                },
            }
        }
    ]


def test_proto_field_names_switch_property_and_query_names() -> None:
    document = _document(TEST_PROTOS, transcoding={"proto_field_names": True})
    properties = document["components"]["schemas"]["edgetest.v1.Kitchen"]["properties"]
    assert "int64_value" in properties and "int64Value" not in properties
    operation = document["paths"]["/v1/kitchen/{string_value}"]["get"]
    assert "nested.inner.label" in _parameters(operation)
    assert "string_value" in _parameters(operation)
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
    assert properties["child"] == {"anyOf": [{"$ref": REF + "t.Node"}, {"type": "null"}]}
    assert properties["children"] == {
        "type": ["array", "null"],
        "items": {"$ref": REF + "t.Node"},
    }


def test_error_schema_is_google_rpc_status(kitchen: Document) -> None:
    schemas = kitchen["components"]["schemas"]
    status = schemas["google.rpc.Status"]["properties"]
    assert "integer" in status["code"]["type"]
    assert status["message"]["type"] == ["string", "null"]
    assert status["details"]["type"] == ["array", "null"]
    assert status["details"]["items"]["$ref"] == REF + "google.protobuf.Any"
    error = kitchen["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"] == {"$ref": REF + "google.rpc.Status"}
    for item in kitchen["paths"].values():
        for operation in item.values():
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}


# --- comments ---------------------------------------------------------------------------


def test_proto_comments_become_descriptions(demo: Document) -> None:
    operation = demo["paths"]["/v1/shelves/{shelf}/books"]["get"]
    assert operation["summary"] == "Lists the books on a shelf, a page at a time."
    assert _parameters(operation)["genre"]["description"] == "Only books of this genre, when set."
    book = demo["components"]["schemas"]["edgedemo.library.v1.Book"]
    assert book["properties"]["name"]["description"] == "shelves/{shelf}/books/{book}"
    stream = demo["paths"]["/v1/shelves/{shelf}/books:stream"]["get"]
    assert stream["summary"].startswith("Server streaming: the shelf's books")
    assert "Over HTTP: NDJSON" in stream["description"]


# --- paths, parameters and bodies --------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expanded", "unexpanded"),
    [
        ("/v1/kitchen/{string_value}", "/v1/kitchen/{string_value}", None),
        (
            "/v1/{name=shelves/*/books/*}:publish",
            "/v1/shelves/{shelf}/books/{book}:publish",
            "/v1/{name}:publish",
        ),
        (
            "/v1/{resource=projects/*/items/**}",
            "/v1/projects/{project}/items/{item}",
            "/v1/{resource}",
        ),
        ("/v1/files/{resource=**}:stat", "/v1/files/{resource}:stat", None),
        (
            "/v1/deep/{nested.inner.label}/{nested.name}",
            "/v1/deep/{nested.inner.label}/{nested.name}",
            None,
        ),
        ("/v1/a/*/b", "/v1/a/*/b", None),
        (  # a fixed segment after the variable, and a collection word used twice
            "/v1/{parent=shelves/*}/books/{name=shelves/*/x}",
            "/v1/shelves/{shelf}/books/shelves/{shelf_2}/x",
            "/v1/{parent}/books/{name}",
        ),
        ("/v1/{name=*/books/*}", "/v1/{name}/books/{book}", "/v1/{name}"),
    ],
)
def test_openapi_path(template: str, expanded: str, unexpanded: str | None) -> None:
    assert openapi_path(parse_template(template)).path == expanded
    assert openapi_path(parse_template(template), expand=False).path == (unexpanded or expanded)


def test_operations_of_the_demo(demo: Document) -> None:
    """Plain OpenAPI paths, and ids that make good method names (get_book, not
    edgedemo_library_v_1_library_service_get_book)."""
    operations = {
        (verb, path): operation["operationId"]
        for path, item in demo["paths"].items()
        for verb, operation in item.items()
    }
    assert {
        ("post", "/edgedemo.library.v1.LibraryService/GetShelfStats"): "getShelfStats",
        ("get", "/v1/shelves/{shelf}/books"): "listBooks",
        ("post", "/v1/shelves/{shelf}/books"): "createBook",
        ("get", "/v1/shelves/{shelf}/books/{book}"): "getBook",
        ("patch", "/v1/shelves/{shelf}/books/{book}"): "updateBook",
        ("put", "/v1/shelves/{shelf}/books/{book}"): "updateBookPut",
        ("delete", "/v1/shelves/{shelf}/books/{book}"): "deleteBook",
        ("post", "/v1/shelves/{shelf}/books/{book}:publish"): "publishBook",
        ("get", "/v1/shelves/{shelf}/books:stream"): "streamBooks",
        ("post", "/v1/shelves/{shelf}/books:import"): "importBooks",
        ("post", "/v1/shelves/{shelf}:discuss"): "discuss",
    }.items() <= operations.items()
    assert demo["tags"] == [
        {"name": "LibraryService", "description": "`edgedemo.library.v1.LibraryService`"}
    ]
    get = demo["paths"]["/v1/shelves/{shelf}/books/{book}"]["get"]
    assert get["tags"] == ["LibraryService"]
    assert get["x-grpc-method"] == "edgedemo.library.v1.LibraryService.GetBook"


def test_operation_ids_are_unique_and_qualified_only_when_shared() -> None:
    names = OperationNames(
        [("a.v1.Shelves", "Get"), ("b.v1.Books", "Get"), ("a.v1.Shelves", "List")]
    )
    assert names.operation_id("a.v1.Shelves", "List", "get") == "list"
    assert names.operation_id("a.v1.Shelves", "Get", "get") == "shelvesGet"
    assert names.operation_id("b.v1.Books", "Get", "get") == "booksGet"
    assert names.operation_id("b.v1.Books", "Get", "put") == "booksGetPut"
    assert names.operation_id("b.v1.Books", "Get", "put") == "booksGet2"
    assert names.tag("a.v1.Shelves") == "Shelves"
    same = OperationNames([("a.v1.Svc", "X"), ("b.v1.Svc", "Y")])
    assert (same.tag("a.v1.Svc"), same.tag("b.v1.Svc")) == ("a.v1.Svc", "b.v1.Svc")


def test_expanded_parameters_are_one_segment_each(demo: Document) -> None:
    get = _parameters(demo["paths"]["/v1/shelves/{shelf}/books/{book}"]["get"])
    assert set(get) == {"shelf", "book"}
    for name in ("shelf", "book"):
        assert get[name]["in"] == "path" and get[name]["required"] is True
        # a `*` segment is never empty: an empty one matches no route
        assert get[name]["schema"] == {"type": "string", "minLength": 1}
        assert "request field `name`" in get[name]["description"]
    assert "`shelves/*/books/*`" in get["book"]["description"]


def test_an_expanded_double_star_part_may_be_empty(kitchen: Document) -> None:
    operation = kitchen["paths"]["/v1/projects/{project}/items/{item}"]["get"]
    get = _parameters(operation)
    assert get["project"]["schema"] == {"type": "string", "minLength": 1}
    assert get["item"]["schema"] == {"type": "string"}  # `**` spans zero or more segments


def test_unexpanded_variables_say_their_pattern() -> None:
    demo = _document(DEMO_PROTOS, openapi={"expand_path_patterns": False})
    validate(demo)
    parent = _parameters(demo["paths"]["/v1/{parent}/books"]["get"])["parent"]
    assert parent["required"] is True and parent["in"] == "path"
    assert parent["schema"] == {"type": "string", "pattern": "^shelves/[^/]+$"}
    assert "`shelves/*`" in parent["description"]
    assert "%2F" in parent["description"]
    # /v1/{name} and /v1/{book.name} are one OpenAPI path: the field is named instead
    item = demo["paths"]["/v1/{name}"]
    assert {"get", "delete", "patch", "put"} <= set(item)
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
    assert get["labels"]["style"] == "deepObject"  # tests/unit/test_openapi_map_params.py
    for absent in ("innerById", "nested.inners", "structValue", "any", "stringValue"):
        assert absent not in get, absent
    patch = _parameters(kitchen["paths"]["/v1/kitchen/{string_value}/nested"]["patch"])
    assert not any(name.startswith("nested") for name in patch)
    assert "parameters" not in kitchen["paths"]["/v1/kitchen"]["post"]  # body: "*"
    deep = _parameters(kitchen["paths"]["/v1/deep/{nested.inner.label}/{nested.name}"]["get"])
    assert "nested.inner.count" in deep and "nested.inner.label" in deep
    assert deep["nested.inner.label"]["in"] == "path"


def test_request_bodies(demo: Document, kitchen: Document) -> None:
    create = demo["paths"]["/v1/shelves/{shelf}/books"]["post"]["requestBody"]
    assert create["content"]["application/json"]["schema"] == _or_null(
        {"$ref": REF + "edgedemo.library.v1.Book"}  # body: "book", and null is no book
    )
    whole = kitchen["paths"]["/v1/kitchen"]["post"]["requestBody"]
    assert whole["content"]["application/json"]["schema"] == {"$ref": REF + "edgetest.v1.Kitchen"}
    assert "requestBody" not in kitchen["paths"]["/v1/kitchen/{string_value}"]["get"]
    generic = demo["paths"]["/edgedemo.library.v1.LibraryService/GetShelfStats"]["post"]
    assert generic["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "edgedemo.library.v1.GetShelfStatsRequest"
    }
    assert "gRPC path" in generic["description"]


def test_fields_the_path_sets_are_not_in_the_body(demo: Document, kitchen: Document) -> None:
    """The gateway replaces them with the path's values, whatever the body holds."""
    publish = demo["paths"]["/v1/shelves/{shelf}/books/{book}:publish"]["post"]
    schema = publish["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"publishTime"}
    assert schema["additionalProperties"] is False
    update = demo["paths"]["/v1/shelves/{shelf}/books/{book}"]["patch"]
    book = update["requestBody"]["content"]["application/json"]["schema"]
    assert book["type"] == ["object", "null"]
    assert "name" not in book["properties"] and "title" in book["properties"]
    put = kitchen["paths"]["/v1/kitchen/{string_value}"]["put"]
    kitchen_body = put["requestBody"]["content"]["application/json"]["schema"]
    assert "stringValue" not in kitchen_body["properties"]
    assert "int64Value" in kitchen_body["properties"]


def test_client_streaming_takes_ndjson(demo: Document) -> None:
    body = demo["paths"]["/v1/shelves/{shelf}/books:import"]["post"]["requestBody"]
    line = body["content"]["application/x-ndjson"]["schema"]
    assert set(body["content"]) == {"application/x-ndjson"}
    assert set(line["properties"]) == {"book", "bookId"}  # parent: from the path


def test_response_body_is_honoured(demo: Document, kitchen: Document) -> None:
    publish = demo["paths"]["/v1/shelves/{shelf}/books/{book}:publish"]["post"]["responses"]["200"]
    assert publish["content"]["application/json"]["schema"] == {
        "$ref": REF + "google.protobuf.Timestamp"
    }
    tags = kitchen["paths"]["/v1/tags-only/{string_value}"]["get"]["responses"]["200"]
    assert tags["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    count = kitchen["paths"]["/v1/count-only/{string_value}"]["get"]["responses"]["200"]
    assert count["content"]["application/json"]["schema"] == _number(
        ["string", "integer"], "int64", -(2**63), 2**63 - 1
    )


def test_error_responses_per_status(demo: Document) -> None:
    responses = demo["paths"]["/v1/shelves/{shelf}/books"]["post"]["responses"]
    assert {
        status: ref["$ref"].rpartition("/")[2] for status, ref in responses.items() if "$ref" in ref
    } == {
        "400": "BadRequest",
        "404": "NotFound",
        "413": "PayloadTooLarge",
        "503": "Unavailable",
        "504": "GatewayTimeout",
        "default": "Error",
    }
    generic = demo["paths"]["/edgedemo.library.v1.LibraryService/GetShelfStats"]["post"]
    assert "404" not in generic["responses"]  # no path variable to name a missing thing
    listed = demo["paths"]["/v1/shelves/{shelf}/books"]["get"]["responses"]
    assert "413" not in listed  # no body
    for response in demo["components"]["responses"].values():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": REF + "google.rpc.Status"
        }


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
    item = document["paths"]["/v1/shelves/{shelf}/books/{book}"]
    assert item["get"]["security"] == [{"bearerAuth": []}, {"apiKey": []}]
    assert item["get"]["responses"]["401"] == {"$ref": "#/components/responses/Unauthenticated"}
    assert item["delete"]["security"] == [{"bearerAuth": ["admin", "library.write"]}]
    assert "403" in item["delete"]["responses"]
    assert "security" not in item["patch"]  # public
    assert "401" not in item["patch"]["responses"]


def test_no_security_schemes_without_auth(demo: Document) -> None:
    assert "securitySchemes" not in demo["components"]


@pytest.mark.parametrize("protos", [DEMO_PROTOS, TEST_PROTOS], ids=["demo", "kitchen"])
def test_expanded_paths_reach_their_route_with_the_field_joined(protos: Any) -> None:
    """A client fills each parameter with one segment and percent-encodes it; the URL it
    sends must be matched by the gateway's own route table to the operation's route, with
    the field set to the joined segments (``**`` and fixed segments after a variable
    included)."""
    config = make_config(1, protos=protos)
    routes = load_routes(config)
    document = build_openapi(routes, config)
    checked = 0
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            values = {p["name"]: f"v{i}" for i, p in enumerate(operation.get("parameters", []))}
            url = re.sub(r"\{([^}]*)\}", lambda m, v=values: quote(v[m.group(1)], safe=""), path)
            found = routes.table.match(verb.upper(), url)
            assert isinstance(found, RouteMatch), (verb, path, url)
            assert found.target.method.full_name == operation["x-grpc-method"], (verb, path)
            sent = url.split("?")[0].removeprefix("/").split("/")
            if found.template.verb is not None:
                sent[-1] = sent[-1].removesuffix(":" + found.template.verb)
            for field_path, value in found.bindings:  # the field is the segments it spans
                variable = next(v for v in found.template.variables if v.field_path == field_path)
                end = len(sent) if variable.end is None else variable.end
                assert value == "/".join(sent[variable.start : end]), (verb, path, field_path)
            checked += 1
    assert checked == sum(len(item) for item in document["paths"].values())
