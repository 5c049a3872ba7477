"""Compile a folder of .proto files into a FileDescriptorSet, in-process, with grpcio-tools.

Each file is first checked on its own, so one broken file (or a file importing it) is
reported with its file, line and column and left out, while every other file still loads.
The survivors are then compiled together into one descriptor set, with source info kept
for comments (documentation) and imports included so the set is self-contained.

This is CPU-bound and synchronous; callers on an event loop run it in a thread.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import google.api.annotations_pb2
import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import _protoc_compiler

# Bundled import roots: the well-known types (grpcio-tools) and googleapis (common protos).
WELL_KNOWN_ROOT = Path(grpc_tools.__file__).parent / "_proto"
GOOGLEAPIS_ROOT = Path(google.api.annotations_pb2.__file__).parents[2]


@dataclass(frozen=True, slots=True)
class CompileProblem:
    """One error found while compiling; ``line`` and ``column`` are 1-based (0 if unknown)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class CompileResult:
    files: descriptor_pb2.FileDescriptorSet
    compiled: tuple[str, ...]
    problems: tuple[CompileProblem, ...]


def find_proto_files(root: Path) -> list[str]:
    """Paths of the .proto files below ``root``, relative to it, in a stable order."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto") if p.is_file())


def _import_roots(roots: Sequence[Path], include: Sequence[Path]) -> list[bytes]:
    paths = [*roots, *include, WELL_KNOWN_ROOT, GOOGLEAPIS_ROOT]
    return [os.fsencode(p) for p in paths]


def _check_one(name: str, import_roots: list[bytes]) -> list[CompileProblem]:
    try:
        _protoc_compiler.get_protos(name.encode(), import_roots)
    except _protoc_compiler.ProtocErrors as exc:
        return [
            CompileProblem(
                os.fsdecode(err.filename) if err.filename else name,
                int(err.line) + 1 if err.line >= 0 else 0,
                int(err.column) + 1 if err.column >= 0 else 0,
                err.message.decode(errors="replace")
                if isinstance(err.message, bytes)
                else str(err.message),
            )
            for err in exc.errors()
        ] or [CompileProblem(name, 0, 0, "protoc failed")]
    return []


def compile_protos(
    roots: Sequence[Path], include: Sequence[Path] = (), files: Iterable[str] | None = None
) -> CompileResult:
    """Compile every .proto under ``roots`` (or just ``files``, relative to a root).

    Never raises for a bad proto: problems come back in the result, good files still compile.
    """
    import_roots = _import_roots(roots, include)
    names = (
        list(files)
        if files is not None
        else [name for root in roots for name in find_proto_files(root)]
    )
    problems: list[CompileProblem] = []
    good: list[str] = []
    for name in dict.fromkeys(names):
        found = _check_one(name, import_roots)
        if found:
            problems.extend(found)
        else:
            good.append(name)
    files_set = descriptor_pb2.FileDescriptorSet()
    if good:
        with tempfile.TemporaryDirectory(prefix="edge-protoc-") as tmp:
            out = Path(tmp) / "set.binpb"
            args = [b"protoc", *(b"-I" + root for root in import_roots)]
            args += [
                b"--include_imports",
                b"--include_source_info",
                b"--descriptor_set_out=" + os.fsencode(out),
                *(name.encode() for name in good),
            ]
            status = _protoc_compiler.run_main(args)
            if status != 0:
                problems.append(CompileProblem(good[0], 0, 0, f"protoc exited with {status}"))
                good = []
            else:
                files_set.ParseFromString(out.read_bytes())
    return CompileResult(files_set, tuple(good), tuple(problems))


def read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Load a pre-built FileDescriptorSet (``protoc --descriptor_set_out``, ``buf build``)."""
    files_set = descriptor_pb2.FileDescriptorSet()
    files_set.ParseFromString(path.read_bytes())
    return files_set
