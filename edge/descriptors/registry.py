"""The descriptor registry: every loaded file in one private DescriptorPool.

A fresh pool per load (never the process-wide default pool) lets a reload replace a
message definition and keeps user protos from clashing with the gateway's own imports.
Message classes are made once here and reused by every request; nothing on the request
path looks a descriptor up by name.

Files come from the disk (compiled protos, descriptor-set files) and from upstreams'
reflection; the disk's win, and a reflected file that clashes with them is left out alone,
its problem naming the upstream. Nothing here recurses as deep as its input: files are
added after their imports from an explicit stack, and message classes are made deepest
first, so chains of any length load; a ring of more than ``MAX_MESSAGE_RING`` message
types (which protobuf's factory builds in one recursion) costs its file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
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
    # declared NO_SIDE_EFFECTS: a read, which the Connect protocol may also send as a GET
    no_side_effects: bool = False

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

    def services(self) -> dict[str, list[MethodInfo]]:
        grouped: dict[str, list[MethodInfo]] = {}
        for method in self.methods.values():
            grouped.setdefault(method.service, []).append(method)
        return grouped


# A ring of message types that hold one another (M0 holds M1 ... holds M0) is built by
# protobuf's message factory in one recursion, two Python frames per type; past this many
# types the file is left out (and reported) rather than the load ending in RecursionError.
# Chains without a ring load at any length: their classes are built deepest first.
MAX_MESSAGE_RING = 100


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a file came from: the disk (proto folders, descriptor sets) or an upstream."""

    upstream: str | None = None

    def describe(self) -> str:
        return "on disk" if self.upstream is None else f"from upstream {self.upstream}"


_DISK = _Origin()


def _problem(
    origin: _Origin, name: str, message: str, line: int = 0, column: int = 0
) -> CompileProblem:
    """A problem with a file; a reflected file's names its upstream, so that it can be told
    apart from (and does not block reloads of) the files the operator controls."""
    if origin.upstream is None:
        return CompileProblem(name, line, column, message)
    return CompileProblem(f"reflection from upstream {origin.upstream}", 0, 0, f"{name}: {message}")


def _merge(
    sources: Iterable[tuple[_Origin, descriptor_pb2.FileDescriptorSet]],
    problems: list[CompileProblem],
) -> tuple[dict[str, descriptor_pb2.FileDescriptorProto], dict[str, _Origin]]:
    """One file per name, the first source's (disk before reflection); a later different
    copy is a problem, except for the library files every producer ships in its version."""
    merged: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    origins: dict[str, _Origin] = {}
    for origin, files_set in sources:
        for file in files_set.file:
            known = merged.get(file.name)
            if known is None:
                merged[file.name] = file
                origins[file.name] = origin
            elif not file.name.startswith(_LIBRARY_PREFIXES) and _canonical(known) != _canonical(
                file
            ):
                if origin.upstream is None:
                    problems.append(
                        CompileProblem(file.name, 0, 0, "defined twice with different contents")
                    )
                else:
                    problems.append(
                        _problem(
                            origin,
                            file.name,
                            f"differs from the file of that name {origins[file.name].describe()}"
                            ", which is used",
                        )
                    )
    pending = list(_BUILTIN_FILES)
    while pending:
        builtin = pending.pop()
        if builtin.name not in merged:
            proto = descriptor_pb2.FileDescriptorProto()
            builtin.CopyToProto(proto)
            merged[proto.name] = proto
            origins[proto.name] = _DISK
            pending.extend(builtin.dependencies)
    return merged, origins


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """The names a file puts in its package: top-level messages, enums and their values
    (enum values are scoped beside their enum), services and extensions."""
    prefix = f"{file.package}." if file.package else ""
    names = [prefix + message.name for message in file.message_type]
    for enum in file.enum_type:
        names.append(prefix + enum.name)
        names.extend(prefix + value.name for value in enum.value)
    names.extend(prefix + service.name for service in file.service)
    names.extend(prefix + extension.name for extension in file.extension)
    return names


def _reflected_conflicts(
    files: dict[str, descriptor_pb2.FileDescriptorProto],
    origins: dict[str, _Origin],
    problems: list[CompileProblem],
) -> set[str]:
    """Reflected files defining a symbol another file already defines: left out, so the
    disk's files (and the first upstream's) win and one source's clash costs only itself."""
    owners: dict[str, str] = {}
    for name, file in files.items():
        if origins[name].upstream is None:
            for symbol in _symbols(file):
                owners.setdefault(symbol, name)
    left_out: set[str] = set()
    for name, file in files.items():
        origin = origins[name]
        if origin.upstream is None:
            continue
        symbols = _symbols(file)
        clash = next((s for s in symbols if owners.get(s, name) != name), None)
        if clash is None:
            for symbol in symbols:
                owners[symbol] = name
            continue
        left_out.add(name)
        other = owners[clash]
        problems.append(
            _problem(
                origin,
                name,
                f"defines {clash}, already defined by {other} {origins[other].describe()}; "
                f"{other} is used",
            )
        )
    return left_out


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
    origins: dict[str, _Origin],
    left_out: set[str],
    problems: list[CompileProblem],
) -> list[str]:
    """Add every file after its imports (depth first, iteratively: a reflected chain of
    thousands of imports is fine); a file with a missing, broken or circular import, or
    one the pool refuses, is a problem and left out with whatever imports it."""
    added: list[str] = []
    done: set[str] = set()
    failed: set[str] = set(left_out)

    def fail(name: str, message: str) -> None:
        failed.add(name)
        problems.append(_problem(origins.get(name, _DISK), name, message))

    for root in files:
        if root in done or root in failed:
            continue
        # each entry: a file, its imports still to look at, and the import being added
        stack: list[tuple[str, Iterator[str], list[str]]] = [
            (root, iter(files[root].dependency), [])
        ]
        on_stack = {root}
        while stack:
            name, deps, waiting = stack[-1]
            if waiting and waiting[0] in failed:
                stack.pop()
                on_stack.discard(name)
                fail(name, f"missing or broken import {waiting[0]!r}")
                continue
            waiting.clear()
            pushed = False
            broken = None
            for dep in deps:
                if dep in done:
                    continue
                if dep in failed or dep not in files or dep in on_stack:
                    broken = dep
                    break
                waiting.append(dep)
                stack.append((dep, iter(files[dep].dependency), []))
                on_stack.add(dep)
                pushed = True
                break
            if pushed:
                continue
            stack.pop()
            on_stack.discard(name)
            if broken is not None:
                fail(name, f"missing or broken import {broken!r}")
                continue
            try:
                pool.Add(files[name])
            except (TypeError, ValueError) as exc:
                fail(name, str(exc))
                continue
            done.add(name)
            added.append(name)
    return added


def _ring_depth(root: Descriptor, built: set[str], limit: int) -> int:
    """How deep ``GetMessageClass(root)`` would recurse with the classes in ``built``
    already made: it makes a class, then (depth first) the classes of its fields'
    and nested extensions' message types not made yet. Stops counting past ``limit``."""

    def edges(descriptor: Descriptor) -> Iterator[Descriptor]:
        for field_descriptor in descriptor.fields:
            if field_descriptor.message_type is not None:
                yield field_descriptor.message_type
        for extension in descriptor.extensions:
            if extension.containing_type is not None:
                yield extension.containing_type
            if extension.message_type is not None:
                yield extension.message_type

    def made(descriptor: Descriptor) -> bool:
        return descriptor.full_name in built or _has_class(descriptor)

    if made(root):
        return 0
    seen = {root.full_name}
    stack = [edges(root)]
    deepest = 1
    while stack:
        for child in stack[-1]:
            if child.full_name not in seen and not made(child):
                seen.add(child.full_name)
                stack.append(edges(child))
                deepest = max(deepest, len(stack))
                if deepest > limit:
                    return deepest
                break
        else:
            stack.pop()
    return deepest


def _message_line(file: descriptor_pb2.FileDescriptorProto, full_name: str) -> tuple[int, int]:
    """1-based (line, column) of a message's declaration, from the file's source info
    ((0, 0) without it)."""
    prefix = f"{file.package}." if file.package else ""
    path: list[int] = []
    messages, number = file.message_type, 4  # FileDescriptorProto.message_type
    for part in full_name.removeprefix(prefix).split("."):
        index = next((i for i, m in enumerate(messages) if m.name == part), None)
        if index is None:
            return 0, 0
        path += [number, index]
        messages, number = messages[index].nested_type, 3  # DescriptorProto.nested_type
    for location in file.source_code_info.location:
        if list(location.path) == path:
            return location.span[0] + 1, location.span[1] + 1
    return 0, 0


def _has_class(descriptor: Descriptor) -> bool:
    """Whether the message factory made this type's class already (as it checks itself)."""
    return getattr(descriptor, "_concrete_class", None) is not None


def _build_classes(
    pool: descriptor_pool.DescriptorPool,
    files: dict[str, descriptor_pb2.FileDescriptorProto],
    names: list[str],
    origins: dict[str, _Origin],
    problems: list[CompileProblem],
) -> tuple[set[str], set[str]]:
    """Make the message class of every message type, deepest first so that each one's
    fields already have theirs. Returns the files with a ring too long to build, and the
    message types (theirs, and those holding one) left without a class."""
    built: set[str] = set()
    too_deep: set[str] = set()
    bad_files: set[str] = set()
    visited: set[str] = set()
    for name in names:
        roots: list[Descriptor] = list(pool.FindFileByName(name).message_types_by_name.values())
        index = 0
        while index < len(roots):  # nested types too: each is a root of its own
            roots.extend(roots[index].nested_types)
            index += 1
        for root in roots:
            if root.full_name in visited:
                continue
            visited.add(root.full_name)
            stack: list[tuple[Descriptor, Iterator[Descriptor]]] = [
                (root, iter(f.message_type for f in root.fields if f.message_type is not None))
            ]
            while stack:
                message, children = stack[-1]
                child = next((c for c in children if c.full_name not in visited), None)
                if child is not None:
                    visited.add(child.full_name)
                    fields = (f.message_type for f in child.fields if f.message_type is not None)
                    stack.append((child, iter(fields)))
                    continue
                stack.pop()
                reaches_bad = any(
                    f.message_type is not None and f.message_type.full_name in too_deep
                    for f in message.fields
                )
                if reaches_bad or _ring_depth(message, built, MAX_MESSAGE_RING) > MAX_MESSAGE_RING:
                    too_deep.add(message.full_name)
                    owner = message.file.name
                    if owner not in bad_files:
                        bad_files.add(owner)
                        problems.append(
                            _problem(
                                origins.get(owner, _DISK),
                                owner,
                                f"message {message.full_name} holds a ring of more than "
                                f"{MAX_MESSAGE_RING} message types (or one that does); "
                                "the file is left out",
                                *_message_line(files[owner], message.full_name),
                            )
                        )
                    continue
                message_factory.GetMessageClass(message)
                built.add(message.full_name)
    return bad_files, too_deep


def build_registry(
    sets: Sequence[descriptor_pb2.FileDescriptorSet],
    earlier_problems: Sequence[CompileProblem] = (),
    reflected: Sequence[tuple[str, descriptor_pb2.FileDescriptorSet]] = (),
) -> Registry:
    """Load descriptor sets into a fresh pool and index every service method.

    ``reflected`` (upstream name, set) pairs are merged after ``sets``: the files on disk
    win, and a reflected file that clashes with them (or with an earlier upstream's) is
    left out alone, reported as a problem naming its upstream.
    """
    problems = list(earlier_problems)
    pool = descriptor_pool.DescriptorPool()
    sources = [(_DISK, files_set) for files_set in sets]
    sources += [(_Origin(upstream), files_set) for upstream, files_set in reflected]
    files, origins = _merge(sources, problems)
    left_out = _reflected_conflicts(files, origins, problems)
    added = _add_in_dependency_order(pool, files, origins, left_out, problems)
    bad_files, too_deep = _build_classes(pool, files, added, origins, problems)
    added = [name for name in added if name not in bad_files]
    registry = Registry(
        pool=pool, files=added, problems=problems, file_protos={n: files[n] for n in added}
    )
    for name in added:
        file = files[name]
        origin = origins[name]
        for service in file.service:
            service_name = f"{file.package}.{service.name}" if file.package else service.name
            for method in service.method:
                full_name = f"{service_name}.{method.name}"
                rules, rule_problems = read_http_rules(method.options)
                for problem in rule_problems:
                    problems.append(_problem(origin, name, f"{full_name}: {problem}"))
                types = (method.input_type.lstrip("."), method.output_type.lstrip("."))
                if any(type_name in too_deep for type_name in types):
                    problems.append(
                        _problem(
                            origin, name, f"{full_name}: its messages cannot be built; not served"
                        )
                    )
                    continue
                registry.methods[full_name] = MethodInfo(
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
                    no_side_effects=method.options.idempotency_level
                    == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
                )
    return registry


def _message_class(pool: descriptor_pool.DescriptorPool, type_name: str) -> type[Message]:
    descriptor: Descriptor = pool.FindMessageTypeByName(type_name.lstrip("."))
    return message_factory.GetMessageClass(descriptor)


def load_registry(
    proto_roots: Sequence[Path],
    include: Sequence[Path] = (),
    descriptor_sets: Sequence[Path] = (),
    reflected: Sequence[tuple[str, descriptor_pb2.FileDescriptorSet]] = (),
) -> Registry:
    """Compile the proto folders, read the descriptor-set files, and build the registry.

    ``reflected`` (upstream name, set fetched by server reflection) pairs are merged last:
    the files on disk win over them (see ``build_registry``).
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
    return build_registry(sets, problems, reflected)
