"""The descriptor registry: every loaded file in one private DescriptorPool.

A fresh pool per load (never the process-wide default pool) lets a reload replace a
message definition and keeps user protos from clashing with the gateway's own imports.
Message classes are made once here and reused by every request; nothing on the request
path looks a descriptor up by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from edge.descriptors.compiler import CompileProblem, compile_protos, read_descriptor_set
from edge.descriptors.http_rules import HttpRule, read_http_rules

# Always present so error details from any upstream decode to JSON.
_BUILTIN_FILES = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)
# Library files every producer (protoc, each language's runtime, each upstream's
# reflection) ships in its own version: descriptor.proto gains options with each protobuf
# release. Two copies of one of these are not a conflict; the first one merged wins.
_LIBRARY_PREFIXES = ("google/protobuf/", "google/api/", "google/rpc/")


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class MethodInfo:
    service: str  # package.Service
    name: str  # Method
    input_type: type[Message]
    output_type: type[Message]
    client_streaming: bool
    server_streaming: bool
    http_rules: tuple[HttpRule, ...]
    source_file: str
    # declared idempotent (idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS): safe to retry
    idempotent: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.service}.{self.name}"

    @property
    def grpc_path(self) -> str:
        """The HTTP/2 :path of the gRPC call, also our generic route."""
        return f"/{self.service}/{self.name}"


@dataclass(slots=True)
class Registry:
    pool: descriptor_pool.DescriptorPool
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    problems: list[CompileProblem] = field(default_factory=list)
    # file name -> its FileDescriptorProto, source info (comments) included: for the docs
    file_protos: dict[str, descriptor_pb2.FileDescriptorProto] = field(default_factory=dict)

    def message_class(self, full_name: str) -> type[Message]:
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def services(self) -> dict[str, list[MethodInfo]]:
        grouped: dict[str, list[MethodInfo]] = {}
        for method in self.methods.values():
            grouped.setdefault(method.service, []).append(method)
        return grouped


def _merge(
    sets: Iterable[descriptor_pb2.FileDescriptorSet], problems: list[CompileProblem]
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    merged: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for files_set in sets:
        for file in files_set.file:
            known = merged.get(file.name)
            if known is None:
                merged[file.name] = file
            elif _canonical(known) != _canonical(file) and not file.name.startswith(
                _LIBRARY_PREFIXES
            ):
                problems.append(
                    CompileProblem(file.name, 0, 0, "defined twice with different contents")
                )
    pending = list(_BUILTIN_FILES)
    while pending:
        builtin = pending.pop()
        if builtin.name not in merged:
            proto = descriptor_pb2.FileDescriptorProto()
            builtin.CopyToProto(proto)
            merged[proto.name] = proto
            pending.extend(builtin.dependencies)
    return merged


def _canonical(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    """The file's meaning: without source info (comments), and without ``json_name`` where
    it is the default (protoc writes it, runtimes' reflection services often do not)."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file)
    copy.ClearField("source_code_info")
    fields = list(copy.extension)
    pending = list(copy.message_type)
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        fields.extend([*message.field, *message.extension])
    for field_proto in fields:
        if field_proto.json_name == _default_json_name(field_proto.name):
            field_proto.ClearField("json_name")
    return copy.SerializeToString(deterministic=True)


def _default_json_name(name: str) -> str:
    """protoc's lowerCamelCase of a field name: ``fail_after`` -> ``failAfter``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _add_in_dependency_order(
    pool: descriptor_pool.DescriptorPool,
    files: dict[str, descriptor_pb2.FileDescriptorProto],
    problems: list[CompileProblem],
) -> list[str]:
    added: list[str] = []
    done: set[str] = set()
    failed: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> bool:
        if name in done:
            return True
        if name in failed or name in trail:
            return False
        file = files.get(name)
        if file is None:
            return False
        for dep in file.dependency:
            if not visit(dep, (*trail, name)):
                failed.add(name)
                problems.append(CompileProblem(name, 0, 0, f"missing or broken import {dep!r}"))
                return False
        try:
            pool.Add(file)
        except (TypeError, ValueError) as exc:
            failed.add(name)
            problems.append(CompileProblem(name, 0, 0, str(exc)))
            return False
        done.add(name)
        added.append(name)
        return True

    for name in files:
        visit(name, ())
    return added


def build_registry(
    sets: Sequence[descriptor_pb2.FileDescriptorSet],
    earlier_problems: Sequence[CompileProblem] = (),
) -> Registry:
    """Load descriptor sets into a fresh pool and index every service method."""
    problems = list(earlier_problems)
    pool = descriptor_pool.DescriptorPool()
    files = _merge(sets, problems)
    added = _add_in_dependency_order(pool, files, problems)
    registry = Registry(
        pool=pool, files=added, problems=problems, file_protos={n: files[n] for n in added}
    )
    for name in added:
        file = files[name]
        for service in file.service:
            service_name = f"{file.package}.{service.name}" if file.package else service.name
            for method in service.method:
                rules, rule_problems = read_http_rules(method.options)
                for problem in rule_problems:
                    problems.append(
                        CompileProblem(name, 0, 0, f"{service_name}.{method.name}: {problem}")
                    )
                registry.methods[f"{service_name}.{method.name}"] = MethodInfo(
                    service=service_name,
                    name=method.name,
                    input_type=_message_class(pool, method.input_type),
                    output_type=_message_class(pool, method.output_type),
                    client_streaming=method.client_streaming,
                    server_streaming=method.server_streaming,
                    http_rules=tuple(rules),
                    source_file=name,
                    idempotent=method.options.idempotency_level
                    in (
                        descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
                        descriptor_pb2.MethodOptions.IDEMPOTENT,
                    ),
                )
    return registry


def _message_class(pool: descriptor_pool.DescriptorPool, type_name: str) -> type[Message]:
    descriptor: Descriptor = pool.FindMessageTypeByName(type_name.lstrip("."))
    return message_factory.GetMessageClass(descriptor)


def load_registry(
    proto_roots: Sequence[Path],
    include: Sequence[Path] = (),
    descriptor_sets: Sequence[Path] = (),
    extra_sets: Sequence[descriptor_pb2.FileDescriptorSet] = (),
) -> Registry:
    """Compile the proto folders, read the descriptor-set files, and build the registry.

    ``extra_sets`` (sets fetched by server reflection) are merged last: a file also found
    on disk under the same name must have the same contents, or it is a problem.
    """
    problems: list[CompileProblem] = []
    sets: list[descriptor_pb2.FileDescriptorSet] = []
    existing_roots = [root for root in proto_roots if root.is_dir()]
    for root in proto_roots:
        if not root.is_dir():
            problems.append(CompileProblem(str(root), 0, 0, "proto folder does not exist"))
    if existing_roots:
        result = compile_protos(existing_roots, include)
        sets.append(result.files)
        problems.extend(result.problems)
    for path in descriptor_sets:
        try:
            sets.append(read_descriptor_set(path))
        except (OSError, DecodeError) as exc:
            problems.append(CompileProblem(str(path), 0, 0, f"cannot read descriptor set: {exc}"))
    sets.extend(extra_sets)
    return build_registry(sets, problems)
