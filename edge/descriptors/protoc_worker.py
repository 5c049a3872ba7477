"""The child process in which ``compiler.py`` runs protoc, so that protoc cannot take the
gateway down with it.

grpcio-tools' protoc is C++ in our address space, and some inputs end it: a ``.proto``
nesting ``additional_bindings`` about a hundred deep fails a ``CHECK`` and aborts the
process, twenty thousand nested ``{`` overflow the parser's stack. Run here, such a file
costs one child; the parent sees which step was under way and leaves that file out.

Protocol (the parent writes one JSON request on stdin)::

    {"roots": [import root, ...],             # -I paths, in order
     "check": [name, ...],                     # parse and validate each file on its own
     "compile": [name, ...],                   # then compile these together...
     "compile_checked": true,                  # ...plus the checked files that passed
     "each": [name, ...],                      # or: compile each of these alone
     "out": "/path/set.binpb"}                 # where the compiled set goes

and reads JSON lines from stdout, each flushed as written: a step marker before anything
that could crash (``{"step": "check", "file": name}``, ``{"step": "compile", "files":
[...]}``), its result (``{"checked": name, "errors": [[file, line, column, message],
...]}``, ``{"compiled": status, "files": [...], "stderr": text}``), and ``{"done": true}``
at the end. A missing ``done`` means the child died in the last step it announced.

Only the standard library and grpc_tools are imported: the child starts in ~40 ms.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from grpc_tools import _protoc_compiler


def _emit(entry: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(entry) + "\n")
    sys.stdout.flush()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _check(name: str, roots: list[bytes]) -> list[list[Any]]:
    """Parse and validate one file and its imports; the errors, lines 0-based as protoc has them."""
    try:
        _protoc_compiler.get_protos(name.encode(), roots)
    except _protoc_compiler.ProtocErrors as exc:
        return [
            [
                _text(err.filename) if err.filename else name,
                int(err.line),
                int(err.column),
                _text(err.message),
            ]
            for err in exc.errors()
        ] or [[name, -1, -1, "protoc failed"]]
    return []


def _compile(names: list[str], roots: list[bytes], out: str) -> tuple[int, str]:
    """protoc on ``names`` together; its exit status and what it wrote to stderr."""
    args = [b"protoc", *(b"-I" + root for root in roots)]
    args += [
        b"--include_imports",
        b"--include_source_info",
        b"--descriptor_set_out=" + os.fsencode(out),
        *(name.encode() for name in names),
    ]
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)  # protoc writes its errors to fd 2
        try:
            status = int(_protoc_compiler.run_main(args))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return status, captured.read().decode(errors="replace")


def main() -> int:
    request = json.loads(sys.stdin.read())
    roots = [os.fsencode(root) for root in request["roots"]]
    out = request["out"]
    passed: list[str] = []
    for name in request.get("check", []):
        _emit({"step": "check", "file": name})
        errors = _check(name, roots)
        _emit({"checked": name, "errors": errors})
        if not errors:
            passed.append(name)
    together = list(request.get("compile", []))
    if request.get("compile_checked"):
        together += passed
    if together:
        _emit({"step": "compile", "files": together})
        status, stderr = _compile(together, roots, out)
        _emit({"compiled": status, "files": together, "stderr": stderr})
    _emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
