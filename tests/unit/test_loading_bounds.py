"""The pure parts of loading, against hostile shapes: nothing recurses as deep as its input.

Descriptors are made here as FileDescriptorProtos (no protoc): chains and rings of
message types thousands long, import chains thousands of files long, a reflected copy of
a symbol on disk. Also what the compiler reads off protoc and .proto text, the bounded
YAML loader of sidecars, the /docs security headers and the OpenAPI document's cache key.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT
from google.protobuf import descriptor_pb2

from edge.config import parse_config
from edge.descriptors.compiler import file_name_of, split_descriptor_set
from edge.descriptors.proto_source import imports_of, locate_error, protoc_errors
from edge.descriptors.registry import MAX_MESSAGE_RING, build_registry
from edge.openapi.comments import Comments
from edge.openapi.document import document_key
from edge.openapi.schemas import REF_PREFIX, SchemaBuilder
from edge.openapi.views import docs_headers
from edge.routes import build_routes
from edge.sidecar import MAX_YAML_DEPTH, YamlProblem, load_yaml

FD = descriptor_pb2.FieldDescriptorProto
Files = list[descriptor_pb2.FileDescriptorProto]

# deeper than Python's recursion limit, whatever the test runner set it to
DEEP = max(3_000, sys.getrecursionlimit() + 500)


def chain(
    length: int, *, ring: bool = False, package: str = "deep"
) -> descriptor_pb2.FileDescriptorProto:
    """M0 holds M1 holds ... M<length-1> (which holds M0 when ``ring``); a service on M0."""
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package)
    file.syntax = "proto3"
    for index in range(length):
        message = file.message_type.add(name=f"M{index}")
        following = index + 1 if index + 1 < length else (0 if ring else None)
        if following is not None:
            message.field.add(
                name="next",
                number=1,
                type=FD.TYPE_MESSAGE,
                label=FD.LABEL_OPTIONAL,
                type_name=f".{package}.M{following}",
            )
        message.field.add(name="value", number=2, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL)
    service = file.service.add(name="Deep")
    service.method.add(name="Get", input_type=f".{package}.M0", output_type=f".{package}.M0")
    return file


def small(
    name: str, package: str, *, imports: tuple[str, ...] = (), service: str = ""
) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name=name, package=package, dependency=imports)
    file.syntax = "proto3"
    file.message_type.add(name="Msg").field.add(
        name="value", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL
    )
    if service:
        file.service.add(name=service).method.add(
            name="Get", input_type=f".{package}.Msg", output_type=f".{package}.Msg"
        )
    return file


def as_set(*files: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet(file=list(files))


# -- message types: chains of any length, rings up to MAX_MESSAGE_RING --------------------


def test_a_chain_of_message_types_deeper_than_the_recursion_limit_loads() -> None:
    registry = build_registry([as_set(chain(DEEP))])
    assert registry.problems == []
    request = registry.methods["deep.Deep.Get"].input_type()
    request.next.next.next.value = "three down"  # the classes work, nested as declared
    assert request.next.next.next.value == "three down"


def test_the_longest_ring_loads_and_one_more_is_left_out_alone() -> None:
    fits = chain(MAX_MESSAGE_RING, ring=True, package="fits")
    too_long = chain(MAX_MESSAGE_RING + 1, ring=True, package="toolong")
    registry = build_registry([as_set(fits, too_long, small("ok.proto", "ok", service="Ok"))])
    assert set(registry.methods) == {"fits.Deep.Get", "ok.Ok.Get"}
    assert "toolong.proto" not in registry.files
    (problem,) = registry.problems
    assert problem.file == "toolong.proto"
    assert f"ring of more than {MAX_MESSAGE_RING} message types" in problem.message


def test_a_method_on_a_type_too_deep_to_build_is_not_served() -> None:
    ring = chain(DEEP, ring=True, package="ring")
    user = small("user.proto", "user", imports=("ring.proto",))
    user.service.add(name="User").method.add(
        name="Get", input_type=".ring.M0", output_type=".user.Msg"
    )
    registry = build_registry([as_set(ring, user)])
    assert registry.methods == {}
    messages = [str(p) for p in registry.problems]
    assert any(m.startswith("ring.proto: message ring.M") for m in messages)
    assert "user.proto: user.User.Get: its messages cannot be built; not served" in messages


# -- imports: chains of any length, cycles, gaps -----------------------------------------


def import_chain(length: int) -> Files:
    """c0.proto (with a service) imports c1.proto ... imports c<length-1>.proto."""
    return [
        small(
            f"c{i}.proto",
            f"c{i}",
            imports=(f"c{i + 1}.proto",) if i + 1 < length else (),
            service="Chain" if i == 0 else "",
        )
        for i in range(length)
    ]


def test_a_reflected_import_chain_deeper_than_the_recursion_limit_loads() -> None:
    registry = build_registry([], reflected=[("deep", as_set(*import_chain(DEEP)))])
    assert registry.problems == []
    assert "c0.Chain.Get" in registry.methods


def test_a_gap_in_a_reflected_chain_costs_the_files_above_it_and_names_the_upstream() -> None:
    files = import_chain(50)
    del files[30]
    registry = build_registry([], reflected=[("gappy", as_set(*files))])
    assert registry.methods == {}
    problems = [str(p) for p in registry.problems]
    assert len(problems) == 30  # c0 .. c29, each for its own import
    assert (
        "reflection from upstream gappy: c29.proto: missing or broken import 'c30.proto'"
        in problems
    )
    assert all(p.startswith("reflection from upstream gappy: ") for p in problems)
    assert "c31.proto" in registry.files


def test_an_import_cycle_is_a_problem_not_a_hang() -> None:
    a = small("a.proto", "a", imports=("b.proto",))
    b = small("b.proto", "b", imports=("a.proto",))
    registry = build_registry([], reflected=[("loop", as_set(a, b))])
    assert not {"a.proto", "b.proto"} & set(registry.files)
    assert all("missing or broken import" in str(p) for p in registry.problems)


# -- a reflected file against the disk ---------------------------------------------------


def test_a_reflected_copy_of_a_symbol_on_disk_is_left_out_alone() -> None:
    disk = small("kitchen/v1/kitchen.proto", "kitchen.v1", service="Kitchen")
    copy = small("copy/kitchen.proto", "kitchen.v1", service="Kitchen")
    other = small("other.proto", "other", service="Other")  # the same upstream's other file
    registry = build_registry([as_set(disk)], reflected=[("twin", as_set(copy, other))])
    assert registry.methods["kitchen.v1.Kitchen.Get"].source_file == "kitchen/v1/kitchen.proto"
    assert "other.Other.Get" in registry.methods
    assert [str(p) for p in registry.problems] == [
        "reflection from upstream twin: copy/kitchen.proto: defines kitchen.v1.Msg, already "
        "defined by kitchen/v1/kitchen.proto on disk; kitchen/v1/kitchen.proto is used"
    ]


def test_a_reflected_file_differing_from_the_disk_copy_names_the_upstream() -> None:
    disk = small("shared.proto", "shared", service="Shared")
    changed = small("shared.proto", "shared", service="Shared")
    changed.message_type.add(name="Extra")
    registry = build_registry([as_set(disk)], reflected=[("drift", as_set(changed))])
    assert "shared.Shared.Get" in registry.methods
    assert [str(p) for p in registry.problems] == [
        "reflection from upstream drift: shared.proto: differs from the file of that name "
        "on disk, which is used"
    ]


def test_two_upstreams_reflecting_one_symbol_the_first_wins() -> None:
    first = small("one.proto", "same", service="Same")
    second = small("two.proto", "same", service="Same")
    registry = build_registry([], reflected=[("a", as_set(first)), ("b", as_set(second))])
    assert registry.methods["same.Same.Get"].source_file == "one.proto"
    (problem,) = [str(p) for p in registry.problems]
    assert problem.startswith("reflection from upstream b: two.proto: defines same.Msg")
    assert "already defined by one.proto from upstream a" in problem


# -- documentation walkers ---------------------------------------------------------------


def test_schemas_for_a_chain_deeper_than_the_recursion_limit() -> None:
    registry = build_registry([as_set(chain(DEEP))])
    builder = SchemaBuilder(Comments(registry.file_protos))
    assert builder.ref(registry.pool.FindMessageTypeByName("deep.M0")) == {
        "$ref": REF_PREFIX + "deep.M0"
    }
    components = builder.components()
    assert len(components) == DEEP
    next_field = components["deep.M7"]["properties"]["next"]
    assert next_field["anyOf"][0] == {"$ref": REF_PREFIX + "deep.M8"}


def test_comments_of_messages_nested_deeper_than_the_recursion_limit() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="nest.proto", package="n")
    message = file.message_type.add(name="N0")
    path = [4, 0]
    for depth in range(1, DEEP):
        message = message.nested_type.add(name=f"N{depth}")
        path += [3, 0]
    file.source_code_info.location.add(path=path, leading_comments=" The innermost.\n")
    comments = Comments({"nest.proto": file})
    innermost = "n." + ".".join(f"N{depth}" for depth in range(DEEP))
    assert comments.get(innermost) == "The innermost."


def test_the_document_key_follows_files_and_routes_not_objects() -> None:
    config = parse_config(
        {
            "descriptors": {"proto_paths": [], "watch": False},
            "upstreams": {"u": {"address": "127.0.0.1:1"}},
            "services": {"*": {"upstream": "u"}},
        },
        base=ROOT,
        env={},
    )
    file = small("k.proto", "k", service="K")

    def key(files_set: descriptor_pb2.FileDescriptorSet) -> bytes:
        return document_key(build_routes(config, build_registry([files_set])))

    assert key(as_set(file)) == key(as_set(file))  # a no-op reload: the same key
    commented = descriptor_pb2.FileDescriptorProto()
    commented.CopyFrom(file)
    commented.source_code_info.location.add(path=[4, 0], leading_comments=" Now documented.")
    assert key(as_set(commented)) != key(as_set(file))


# -- what the compiler reads -------------------------------------------------------------


def test_protoc_errors_with_and_without_a_position() -> None:
    stderr = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        '/p/a/two.proto:3:9: "c.A" is already defined in file "one.proto".\n'
        "b/bad.proto: Field numbers 19000 through 19999 are reserved for the protocol buffer "
        "library implementation.\n"
        "c.proto:1:1: warning: Import google/api/annotations.proto is unused.\n"
    )
    found = protoc_errors(stderr)
    assert [(e.file, e.line, e.column) for e in found] == [
        ("/p/a/two.proto", 3, 9),
        ("b/bad.proto", 0, 0),
    ]
    assert found[0].message == '"c.A" is already defined in file "one.proto".'


def test_imports_are_read_past_comments_and_strings() -> None:
    text = (
        'syntax = "proto3";\n'
        '// import "commented.proto";\n'
        '/* import "blocked.proto";\n'
        '   still a comment */ import "after_block.proto";\n'
        'import public "public.proto"; import weak "weak.proto";\n'
        'option (x) = { get: "/v1/*/import \\"no.proto\\";" };\n'
        'import "last.proto";\n'
    )
    assert imports_of(text) == [
        ("after_block.proto", 4),
        ("public.proto", 5),
        ("weak.proto", 5),
        ("last.proto", 7),
    ]


def test_the_reserved_field_number_error_is_located() -> None:
    text = (
        'syntax = "proto3";\n'
        "enum E { ZERO = 0; HIGH = 19001; }  // an enum value may be 19001\n"
        "message M {\n"
        "  // string x = 19002; in a comment\n"
        "  map<string, string> m = 19003;\n"
        "}\n"
    )
    message = "Field numbers 19000 through 19999 are reserved for the protocol buffer library."
    assert locate_error(text, message) == (5, 27)
    assert locate_error(text, "Something else.") == (0, 0)


def test_a_descriptor_set_splits_into_named_files_without_decoding() -> None:
    files = [small("a.proto", "a"), small("b/b.proto", "b")]
    raw = split_descriptor_set(as_set(*files).SerializeToString())
    assert [file_name_of(entry) for entry in raw] == ["a.proto", "b/b.proto"]
    assert file_name_of(b"\xff") is None


# -- YAML: bounded, and errors that never quote the file ----------------------------------


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 500, 20_000])
def test_yaml_nested_past_the_bound_is_refused_before_it_is_composed(depth: int) -> None:
    with pytest.raises(YamlProblem) as refused:
        load_yaml("[" * depth + "]" * depth)
    # at the first level too deep, or where libyaml's own bound (1,000) stopped its scanner
    assert refused.value.line == 1 and refused.value.column in (MAX_YAML_DEPTH + 1, 1001)
    assert refused.value.about("x.edge.yaml") == (
        f"x.edge.yaml:1:{refused.value.column}: nested deeper than {MAX_YAML_DEPTH} levels"
    )


def test_yaml_nested_to_the_bound_loads() -> None:
    nested = "a: " + "{b: " * (MAX_YAML_DEPTH - 1) + "1" + "}" * (MAX_YAML_DEPTH - 1)
    assert load_yaml(nested)["a"]["b"]["b"]


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("methods:\n  a: {timeout: 5s\nDB_PASSWORD: hunter2-secret\n", 3, 12),
        ("DB_PASSWORD: hunter2-secret\n\tkey: 1\n", 2, 1),
        ("methods: *hunter2-secret\n", 1, 10),
        ("methods: !!python/name:hunter2-secret x\n", 1, 10),
        ("a: 1\nb: hunter2-secret\x07\n", 2, 18),
        ("ok: [1, 2\nDB_PASSWORD: 'hunter2-secret'\n", 2, 12),
    ],
)
def test_yaml_errors_say_where_and_what_kind_never_the_text(
    text: str, line: int, column: int
) -> None:
    with pytest.raises(YamlProblem) as refused:
        load_yaml(text)
    problem = refused.value
    assert (problem.line, problem.column) == (line, column)
    described = problem.about("s.edge.yaml")
    assert described.startswith(f"s.edge.yaml:{line}:{column}: ")
    assert "hunter2" not in described and "DB_PASSWORD" not in described
    assert problem.__cause__ is None and problem.__suppress_context__


# -- /docs headers -----------------------------------------------------------------------


def test_docs_headers_are_strict_and_let_try_it_out_reach_the_servers() -> None:
    headers = docs_headers(("https://api.example.com/v1", "/relative", "ftp://x.example"))
    policy = dict(d.split(" ", 1) for d in headers["content-security-policy"].split("; "))
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "font-src": "'self' data:",
        "connect-src": "'self' https://api.example.com",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
