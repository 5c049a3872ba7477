"""Compile a folder of .proto files into a FileDescriptorSet with grpcio-tools' protoc.

Each file is first checked on its own, so one broken file (or a file importing it) is
reported with its file, line and column and left out, while every other file still loads.
The survivors are then compiled together into one descriptor set, with source info kept
for comments (documentation) and imports included so the set is self-contained. Some
errors only that whole-set compile finds (a field numbered in 19000-19999, a symbol two
files both define); protoc names the file, and that file (with the files importing it) is
left out and the rest compiled again, so one file never empties the route table.

protoc runs in a child process (``protoc_worker.py``, about 40 ms to start): it is C++ in
our address space otherwise, and some inputs abort it (``additional_bindings`` nested a
hundred deep fail a ``CHECK``) or overflow its stack. A child that dies names the file it
was reading; one that dies compiling the set is bisected to the file at fault.

This is blocking; callers on an event loop run it in a thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.api.annotations_pb2
import grpc_tools
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from edge.descriptors.proto_source import imports_of, locate_error, protoc_errors

# Bundled import roots: the well-known types (grpcio-tools) and googleapis (common protos).
WELL_KNOWN_ROOT = Path(grpc_tools.__file__).parent / "_proto"
GOOGLEAPIS_ROOT = Path(google.api.annotations_pb2.__file__).parents[2]
# The longest one protoc child may run (a check round, or one compile of the set).
COMPILE_TIMEOUT = 120.0
_WORKER = Path(__file__).with_name("protoc_worker.py")


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


@dataclass(slots=True)
class _Run:
    """What one protoc child said, and whether it lived to say ``done``."""

    entries: list[dict[str, Any]]
    finished: bool
    death: str  # how it died, when it did ("SIGABRT", "timeout after 120 s", ...)

    def last_step(self) -> dict[str, Any] | None:
        steps = [entry for entry in self.entries if "step" in entry]
        return steps[-1] if steps else None

    def compiled(self) -> dict[str, Any] | None:
        found = [entry for entry in self.entries if "compiled" in entry]
        return found[-1] if found else None


def _entries(stdout: bytes | None) -> list[dict[str, Any]]:
    entries = []
    for line in (stdout or b"").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass(slots=True)
class _Job:
    """One compile: the import roots, the output file, and the problems found so far."""

    roots: list[Path]
    out: Path
    problems: list[CompileProblem] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)
    _imports: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def ask(self, **request: Any) -> _Run:
        """Run one protoc child on ``request`` (see ``protoc_worker``)."""
        request["roots"] = [os.fspath(root) for root in self.roots]
        request["out"] = str(self.out)
        try:
            done = subprocess.run(
                [sys.executable, "-P", str(_WORKER)],
                input=json.dumps(request).encode(),
                capture_output=True,
                timeout=COMPILE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return _Run(_entries(exc.stdout), False, f"timeout after {COMPILE_TIMEOUT:g} s")
        except OSError as exc:
            return _Run([], False, f"cannot start {sys.executable}: {exc.strerror}")
        entries = _entries(done.stdout)
        finished = bool(entries) and entries[-1].get("done") is True
        if done.returncode < 0:
            death = signal.Signals(-done.returncode).name
        else:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            death = f"exit status {done.returncode}" + (f": {tail[0][:200]}" if tail else "")
        return _Run(entries, finished, death)

    def add(self, problem: CompileProblem) -> None:
        self.problems.append(problem)
        self.reported.add(problem.file)

    # -- the files on disk: names, text, imports ----------------------------------------

    def name_of(self, printed: str) -> str:
        """protoc prints a file as found on disk (its import root joined to its name, as
        the root was given); the name it has under that root."""
        path = Path(printed)
        for root in self.roots:
            for form in (root, root.resolve()):
                if path.is_relative_to(form):
                    return path.relative_to(form).as_posix()
        return printed

    def text_of(self, name: str) -> str:
        for root in self.roots:
            path = root / name
            if path.is_file():
                try:
                    return path.read_text(errors="replace")
                except OSError:
                    return ""
        return ""

    def imports(self, name: str) -> list[tuple[str, int]]:
        found = self._imports.get(name)
        if found is None:
            found = self._imports[name] = imports_of(self.text_of(name))
        return found

    def importers(self, names: Sequence[str], bad: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The files of ``names`` importing a ``bad`` one, directly or not: for each, the
        import (name, line) that leads there. Iterative, so a 10,000-file chain is fine."""
        importers_of: dict[str, list[tuple[str, int]]] = {}
        seen: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            for dep, line in self.imports(name):
                importers_of.setdefault(dep, []).append((name, line))
                pending.append(dep)
        tainted: dict[str, tuple[str, int]] = {}
        queue = deque(bad)
        reached = set(queue)
        while queue:
            dep = queue.popleft()
            for name, line in importers_of.get(dep, ()):
                if name not in reached:
                    reached.add(name)
                    tainted[name] = (dep, line)
                    queue.append(name)
        wanted = set(names)
        return {name: how for name, how in tainted.items() if name in wanted}

    def leave_out_importers(self, names: Sequence[str], bad: set[str], left_out: set[str]) -> None:
        """Add to ``left_out`` (and report) the files of ``names`` that import a bad one."""
        for name, (dep, line) in self.importers(names, bad).items():
            if name not in left_out:
                left_out.add(name)
                message = f"imports {dep!r}, which has errors"
                self.add(CompileProblem(name, line, 1 if line else 0, message))

    # -- blaming -------------------------------------------------------------------------

    def blame(self, stderr: str, candidates: Sequence[str]) -> set[str]:
        """The candidates to leave out for protoc's errors (and the files importing them),
        each reported once with its line; empty when protoc names no file to blame."""
        named: dict[str, list[CompileProblem]] = {}
        for error in protoc_errors(stderr):
            name = self.name_of(error.file)
            line, column = error.line, error.column
            if not line:
                line, column = locate_error(self.text_of(name), error.message)
            named.setdefault(name, []).append(CompileProblem(name, line, column, error.message))
        for name, found in named.items():
            if name not in self.reported:
                for problem in found:
                    self.add(problem)
        left_out = set(named) & set(candidates)
        self.leave_out_importers(candidates, set(named), left_out)
        return left_out

    def bisect(self, names: list[str]) -> set[str]:
        """The files that make protoc crash or fail when its output names none: halves
        compiled apart until single files are left. A group that only fails whole is left
        out whole."""
        left_out: set[str] = set()
        groups = [names]
        while groups:
            group = groups.pop()
            if len(group) == 1:
                run = self.ask(compile=group)
                self.blame(_stderr(run), group)
                if group[0] not in self.reported:
                    self.add(CompileProblem(group[0], 0, 0, _why_it_failed(run)))
                left_out.add(group[0])
                continue
            half = len(group) // 2
            parts = (group[:half], group[half:])
            failing = [part for part in parts if _fails(self.ask(compile=part))]
            if not failing:
                for name in group:
                    self.add(CompileProblem(name, 0, 0, "protoc fails on these files together"))
                left_out |= set(group)
            groups.extend(failing)
        self.leave_out_importers(names, set(left_out), left_out)
        return left_out

    # -- the job -------------------------------------------------------------------------

    def run(self, names: list[str]) -> CompileResult:
        to_check: list[str] = list(names)
        good: list[str] = []
        for _ in range(2 * len(names) + 2):  # each round settles at least one file
            run = self.ask(check=to_check, compile=good, compile_checked=True)
            checked: set[str] = set()
            for entry in run.entries:
                if "checked" in entry:
                    checked.add(entry["checked"])
                    if not self._checked(entry):
                        good.append(entry["checked"])
            to_check = [name for name in to_check if name not in checked]
            step = run.last_step()
            if step is None and not run.finished:
                for name in [*to_check, *good]:
                    self.add(CompileProblem(name, 0, 0, f"cannot run protoc ({run.death})"))
                break
            if step is not None and "file" in step and not run.finished:
                name = step["file"]  # the child died reading this file
                self.add(CompileProblem(name, 0, 0, f"protoc died reading it ({run.death})"))
                to_check = [other for other in to_check if other != name]
                continue
            compiled = run.compiled()
            if run.finished and compiled is None:
                break  # nothing left to compile
            if run.finished and compiled is not None and compiled["compiled"] == 0:
                return self.read(good)
            left_out: set[str] = set()
            if run.finished:
                left_out = self.blame(_stderr(run), good)
            if not left_out:
                left_out = self.bisect(good)
            good = [name for name in good if name not in left_out]
            to_check = []
            if not good:
                break
        return CompileResult(descriptor_pb2.FileDescriptorSet(), (), tuple(self.problems))

    def _checked(self, entry: dict[str, Any]) -> bool:
        """Report a checked file's errors (protoc's lines are 0-based); whether it had any."""
        errors = entry.get("errors") or []
        for file, line, column, message in errors:
            self.add(
                CompileProblem(
                    str(file),
                    int(line) + 1 if int(line) >= 0 else 0,
                    int(column) + 1 if int(column) >= 0 else 0,
                    str(message),
                )
            )
        return bool(errors)

    def read(self, compiled: list[str]) -> CompileResult:
        """The set protoc wrote; a file whose descriptor does not decode is a problem."""
        data = self.out.read_bytes()
        files_set = descriptor_pb2.FileDescriptorSet()
        try:
            files_set.ParseFromString(data)
        except DecodeError:
            files_set = descriptor_pb2.FileDescriptorSet()
            for raw in split_descriptor_set(data):
                file = descriptor_pb2.FileDescriptorProto()
                try:
                    file.ParseFromString(raw)
                except DecodeError as exc:
                    name = file_name_of(raw) or "(unnamed file)"
                    self.add(CompileProblem(name, 0, 0, f"its descriptor does not decode: {exc}"))
                    continue
                files_set.file.append(file)
        return CompileResult(files_set, tuple(compiled), tuple(self.problems))


def _stderr(run: _Run) -> str:
    compiled = run.compiled()
    return str(compiled.get("stderr", "")) if compiled else ""


def _fails(run: _Run) -> bool:
    compiled = run.compiled()
    return not run.finished or compiled is None or compiled["compiled"] != 0


def _why_it_failed(run: _Run) -> str:
    if not run.finished:
        return f"protoc died compiling it ({run.death})"
    return "protoc rejected it without naming an error"


def compile_protos(
    roots: Sequence[Path], include: Sequence[Path] = (), files: Iterable[str] | None = None
) -> CompileResult:
    """Compile every .proto under ``roots`` (or just ``files``, relative to a root).

    Never raises for a bad proto: problems come back in the result, good files still compile.
    """
    names = (
        list(files)
        if files is not None
        else [name for root in roots for name in find_proto_files(root)]
    )
    import_roots = [*roots, *include, WELL_KNOWN_ROOT, GOOGLEAPIS_ROOT]
    with tempfile.TemporaryDirectory(prefix="edge-protoc-") as tmp:
        job = _Job([Path(root) for root in import_roots], Path(tmp) / "set.binpb")
        return job.run(list(dict.fromkeys(names)))


def _varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if index >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, index


def _fields(data: bytes) -> Iterable[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of one message's top-level fields."""
    index = 0
    while index < len(data):
        key, index = _varint(data, index)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, index = _varint(data, index)
            yield number, wire, value
        elif wire == 2:
            size, index = _varint(data, index)
            yield number, wire, data[index : index + size]
            index += size
        elif wire in (1, 5):
            index += 8 if wire == 1 else 4
        else:
            raise DecodeError(f"unexpected wire type {wire}")


def split_descriptor_set(data: bytes) -> list[bytes]:
    """The raw FileDescriptorProtos of a serialised FileDescriptorSet (field 1), undecoded."""
    return [value for number, wire, value in _fields(data) if number == 1 and wire == 2]  # type: ignore[misc]


def file_name_of(raw: bytes) -> str | None:
    """A raw FileDescriptorProto's ``name`` (field 1), without decoding the rest."""
    try:
        for number, wire, value in _fields(raw):
            if number == 1 and wire == 2 and isinstance(value, bytes):
                return value.decode(errors="replace")
    except DecodeError:
        return None
    return None


def read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Load a pre-built FileDescriptorSet (``protoc --descriptor_set_out``, ``buf build``)."""
    files_set = descriptor_pb2.FileDescriptorSet()
    files_set.ParseFromString(path.read_bytes())
    return files_set
