"""Update masks derived from PATCH bodies (edge.transcode.field_mask).

Two references: grpc-gateway v2's ``FieldMaskFromRequestBody``, transcribed step for
step below (the paths must be identical, but for the documented differences), and
protobuf itself: merging the parsed body through the derived mask must rebuild the whole
body (``FieldMask.MergeMessage``), so the mask names every field the client set. Every
field it *sent* is not quite the same: as in grpc-gateway, an empty object under a
``Struct`` (``{"structValue": {}}``) names no path, so it clears nothing.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.transcode.field_mask import mask_paths
from edgetest.v1 import kitchen_pb2

KITCHEN: Descriptor = kitchen_pb2.Kitchen.DESCRIPTOR
NESTED: Descriptor = kitchen_pb2.Nested.DESCRIPTOR
FD = FieldDescriptor
_DYNAMIC = ("google.protobuf.Struct", "google.protobuf.Value")


class _Refused(Exception):
    pass


def grpc_gateway_paths(body: Any, descriptor: Descriptor) -> list[str]:
    """runtime/fieldmask.go FieldMaskFromRequestBody, transcribed (quirks included)."""
    paths: list[str] = []
    queue: list[tuple[str, Any, Descriptor | None]] = [("", body, descriptor)]
    while queue:
        path, node, message = queue.pop(0)
        if isinstance(node, dict) and node:
            for key, value in node.items():
                if message is None:
                    raise _Refused("JSON structure did not match request type")
                field = message.fields_by_name.get(key)
                if field is None:
                    field = next((f for f in message.fields if f.json_name == key), None)
                if field is None:
                    raise _Refused(f"could not find field {key!r}")
                child_type = field.message_type
                if child_type is not None and child_type.full_name in _DYNAMIC:
                    for blind in _blindly(field.name, value):
                        queue.append((f"{path}.{blind}" if path else blind, None, None))
                    continue
                if (
                    child_type is not None
                    and child_type.full_name == "google.protobuf.Any"
                    and not field.is_repeated
                ):
                    if "@type" not in value:
                        raise _Refused("no @type")
                    queue.append((key, None, None))  # the bare key: its slip
                    continue
                child_path = f"{path}.{field.name}" if path else field.name
                if field.is_repeated:
                    paths.append(child_path)
                elif child_type is not None:
                    queue.append((child_path, value, child_type))
                else:
                    queue.append((child_path, value, None))
        elif isinstance(node, dict) or path:
            paths.append(path)  # an empty object falls through to the leaf case
    return sorted(paths)


def _blindly(name: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [name]
    out: list[str] = []
    queue = [(name, value)]
    while queue:
        path, node = queue.pop(0)
        for key, item in node.items():
            if isinstance(item, dict):
                queue.append((f"{path}.{key}", item))
            else:
                out.append(f"{path}.{key}")
    return out


# --- bodies: valid proto3 JSON for a descriptor, with proto or JSON names ----------------------

_INTS = {FD.CPPTYPE_INT32, FD.CPPTYPE_INT64, FD.CPPTYPE_UINT32, FD.CPPTYPE_UINT64}
_WKT: dict[str, st.SearchStrategy[Any]] = {
    "google.protobuf.Timestamp": st.just("1970-01-01T00:00:01Z"),
    "google.protobuf.Duration": st.sampled_from(["1s", "0.5s"]),
    "google.protobuf.FieldMask": st.sampled_from(["a", "a.b,c", ""]),
    "google.protobuf.Int64Value": st.integers(-5, 5),
    "google.protobuf.StringValue": st.text(max_size=3),
    "google.protobuf.BoolValue": st.booleans(),
    "google.protobuf.DoubleValue": st.floats(-10, 10),
    "google.protobuf.Empty": st.just({}),
    "google.protobuf.ListValue": st.lists(st.integers(0, 3), max_size=2),
}
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(0, 9) | st.text(string.ascii_lowercase, max_size=2),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=2), inner, max_size=3
        )
    ),
    max_leaves=6,
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.cpp_type
    if kind == FD.CPPTYPE_STRING:
        if field.type == FD.TYPE_BYTES:
            return st.sampled_from(["", "AAEC", "aGk="])
        return st.text(max_size=3)
    if kind == FD.CPPTYPE_BOOL:
        return st.booleans()
    if kind in _INTS:
        return st.integers(0, 100)
    if kind in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        return st.floats(-10, 10, width=32)
    assert kind == FD.CPPTYPE_ENUM
    return st.sampled_from([v.name for v in field.enum_type.values])


def _value(field: FieldDescriptor, depth: int, dynamic: bool) -> st.SearchStrategy[Any]:
    child = field.message_type
    if child is None:
        return _scalar(field)
    if child.full_name in _DYNAMIC:
        if child.full_name == "google.protobuf.Struct":
            return st.dictionaries(st.text(string.ascii_lowercase, max_size=2), _JSON, max_size=3)
        return _JSON
    if child.full_name in _WKT:
        return _WKT[child.full_name]
    if child.GetOptions().map_entry:
        return (
            _scalar(child.fields_by_name["value"])
            if child.fields_by_name["value"].message_type is None
            else bodies(child.fields_by_name["value"].message_type, depth - 1)
        )
    return bodies(child, depth - 1, dynamic=dynamic)


def _field_value(field: FieldDescriptor, depth: int, dynamic: bool) -> st.SearchStrategy[Any]:
    child = field.message_type
    if child is not None and child.GetOptions().map_entry:
        key = child.fields_by_name["key"]
        keys = st.integers(0, 9).map(str) if key.cpp_type in _INTS else st.text(max_size=2)
        return st.dictionaries(keys, _value(field, depth, dynamic), max_size=2)
    if field.is_repeated:
        return st.lists(_value(field, depth, dynamic), max_size=2)
    if child is not None and child.full_name == "google.protobuf.Value":
        return _JSON  # a null here is a Value's null, not a cleared field
    return st.none() | _value(field, depth, dynamic)


def _usable(field: FieldDescriptor, dynamic: bool) -> bool:
    child = field.message_type
    if child is not None and child.full_name == "google.protobuf.Any":
        return False  # the paths differ by design (see the table test)
    return dynamic or child is None or child.full_name not in _DYNAMIC


@st.composite
def _object(draw: st.DrawFn, descriptor: Descriptor, depth: int, dynamic: bool) -> dict[str, Any]:
    fields = [f for f in descriptor.fields if _usable(f, dynamic)]
    if depth <= 0:
        fields = [f for f in fields if f.message_type is None]
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=5)) if fields else []
    out: dict[str, Any] = {}
    oneofs: set[str] = set()
    for field in chosen:
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if oneof.name in oneofs:
                continue  # json_format refuses two members of one oneof
            oneofs.add(oneof.name)
        name = field.json_name if draw(st.booleans()) else field.name
        out[name] = draw(_field_value(field, depth, dynamic))
    return out


def bodies(descriptor: Descriptor, depth: int = 3, *, dynamic: bool = True) -> Any:
    return _object(descriptor, depth, dynamic)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(body=bodies(KITCHEN))
def test_paths_are_grpc_gateway_s(body: dict[str, Any]) -> None:
    expected = grpc_gateway_paths(body, KITCHEN)
    if body == {}:
        assert expected == [""]  # grpc-gateway's slip: one empty path
        expected = []
    assert mask_paths(body, KITCHEN) == expected


@settings(max_examples=300, deadline=None)
@given(body=bodies(KITCHEN, dynamic=False))
def test_merging_through_the_mask_rebuilds_the_body(body: dict[str, Any]) -> None:
    parsed = json_format.ParseDict(body, kitchen_pb2.Kitchen())
    mask = field_mask_pb2.FieldMask(paths=mask_paths(body, KITCHEN))
    assert mask.IsValidForDescriptor(KITCHEN)
    rebuilt = kitchen_pb2.Kitchen()
    mask.MergeMessage(parsed, rebuilt, replace_message_field=True, replace_repeated_field=True)
    assert rebuilt == parsed


@settings(max_examples=200, deadline=None)
@given(body=bodies(KITCHEN, dynamic=False))
def test_a_field_left_out_is_left_alone(body: dict[str, Any]) -> None:
    """The converse: what the mask names is exactly what the body touched, so merging
    it onto a full message changes nothing the body did not mention."""
    full = kitchen_pb2.Kitchen(string_value="keep", int32_value=7, nested={"name": "keep"})
    parsed = json_format.ParseDict(body, kitchen_pb2.Kitchen())
    paths = mask_paths(body, KITCHEN)
    mask = field_mask_pb2.FieldMask(paths=paths)
    merged = kitchen_pb2.Kitchen()
    merged.CopyFrom(full)
    mask.MergeMessage(parsed, merged, replace_message_field=True, replace_repeated_field=True)
    touched = {path.split(".")[0] for path in paths}
    for field in ("string_value", "int32_value", "nested"):
        if field not in touched:
            assert getattr(merged, field) == getattr(full, field)


# --- tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        (None, []),
        ([], []),
        ("text", []),
        ({}, []),
        ({"stringValue": "x"}, ["string_value"]),
        ({"string_value": "x", "int32Value": 0}, ["int32_value", "string_value"]),
        ({"nested": {"name": "n", "inner": {"label": "l"}}}, ["nested.inner.label", "nested.name"]),
        ({"nested": {}}, ["nested"]),
        ({"nested": None}, ["nested"]),
        ({"nested": {"inner": {}}}, ["nested.inner"]),
        ({"nested": {"inners": [{"label": "l"}]}}, ["nested.inners"]),
        ({"repeatedString": []}, ["repeated_string"]),
        ({"labels": {"a": "b"}}, ["labels"]),
        ({"innerById": {}}, ["inner_by_id"]),
        ({"timestamp": "1970-01-01T00:00:00Z"}, ["timestamp"]),
        ({"int64Wrapper": None}, ["int64_wrapper"]),
        ({"empty": {}}, ["empty"]),
        (
            {"structValue": {"a": {"b": 1, "c": {}}, "d": None}},
            ["struct_value.a.b", "struct_value.d"],
        ),
        ({"structValue": {}}, []),  # grpc-gateway's rule: nothing to name
        ({"structValue": None}, ["struct_value"]),
        ({"value": 3}, ["value"]),
        ({"value": {"x": [1]}}, ["value.x"]),
        ({"any": {"@type": "type.googleapis.com/edgetest.v1.Inner", "label": "l"}}, ["any"]),
        ({"nope": 1, "stringValue": "x"}, ["string_value"]),  # unknown: the parse's to refuse
        ({"stringValue": "x", "string_value": "y"}, ["string_value"]),  # both names: once
        ({"structValue": {"a": {}}}, []),  # an empty object under a Struct: nothing
    ],
)
def test_paths(body: Any, paths: list[str]) -> None:
    assert mask_paths(body, KITCHEN) == paths


def test_an_empty_object_under_a_struct_clears_nothing() -> None:
    """grpc-gateway's rule, kept: ``{}`` under a Struct names no path, so an upstream that
    applies the mask leaves the stored Struct as it was (to clear it, send ``null``)."""
    stored = kitchen_pb2.Kitchen(string_value="kept")
    stored.struct_value.update({"a": 1})
    for body, cleared in (({"structValue": {}}, False), ({"structValue": None}, True)):
        paths = mask_paths(body, KITCHEN)
        parsed = json_format.ParseDict(body, kitchen_pb2.Kitchen())
        merged = kitchen_pb2.Kitchen()
        merged.CopyFrom(stored)
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(
            parsed, merged, replace_message_field=True
        )
        assert merged.HasField("struct_value") is not cleared, body
        assert merged.string_value == "kept"


def test_paths_are_relative_to_the_body_message() -> None:
    assert mask_paths({"name": "n", "inner": {"count": 2}}, NESTED) == ["inner.count", "name"]


def test_a_deep_body_costs_no_stack() -> None:
    """Recursive messages nest as deep as a body does; the walk is iterative."""
    from google.protobuf import struct_pb2

    depth = 5000
    body: Any = 1
    for _ in range(depth):
        body = {"k": body}
    paths = mask_paths({"fields": {}}, struct_pb2.Struct.DESCRIPTOR)
    assert paths == ["fields"]
    (path,) = mask_paths({"structValue": body}, KITCHEN)
    assert path == "struct_value" + ".k" * depth
