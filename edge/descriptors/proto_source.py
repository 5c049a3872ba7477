"""Reading what protoc says, and the little of a .proto's text the compiler needs (pure).

protoc reports the errors of a whole-set compile as text on stderr (``file:line:column:
message``, or ``file: message`` where it has no position). ``protoc_errors`` turns that
into tuples; ``imports_of`` lists a file's ``import`` statements with their lines, so that
the files importing a broken one can be left out with it; ``locate_error`` finds the line
of the one error protoc reports without a position (a field number in 19000-19999, the
range protobuf reserves for itself), so every problem names a line.

None of this parses protobuf properly: it tokenises just enough (strings, comments) not to
be fooled by ``"/v1/*"`` in an option or an ``import`` in a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "path/to/file.proto:12:5: message" or "path/to/file.proto: message"
_ERROR_LINE = re.compile(
    r"^(?P<file>[^\n]+?\.proto)(?::(?P<line>\d+):(?P<column>\d+))?: (?P<message>.+)$"
)
_IMPORT = re.compile(
    r"(?:^|(?<=[;}\s]))import\s+(?:(?:public|weak|option)\s+)?\"(?P<name>[^\"\n]*)\"\s*;",
    re.MULTILINE,
)
_RESERVED_MESSAGE = "Field numbers 19000 through 19999 are reserved"
# a field declaration: a type (or the ">" closing map<...>) and a name, then = number
_FIELD_NUMBER = re.compile(r"(?:[\w.]+|>)\s+\w+\s*=\s*(?P<number>\d+)\b")


@dataclass(frozen=True, slots=True)
class ProtocError:
    """One line of protoc's stderr: ``line`` and ``column`` 1-based, 0 when not given."""

    file: str
    line: int
    column: int
    message: str


def protoc_errors(stderr: str) -> list[ProtocError]:
    """The errors in protoc's stderr, warnings and abseil's log lines left out."""
    found = []
    for raw in stderr.splitlines():
        match = _ERROR_LINE.match(raw.strip())
        if match is None or match["message"].startswith("warning:"):
            continue
        found.append(
            ProtocError(
                match["file"],
                int(match["line"] or 0),
                int(match["column"] or 0),
                match["message"].strip(),
            )
        )
    return found


def strip_comments(text: str) -> str:
    """The text with comments blanked out (newlines kept, so lines still count) and string
    literals left as they are."""
    out: list[str] = []
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char in "\"'":
            end = index + 1
            while end < size and text[end] != char and text[end] != "\n":
                end += 2 if text[end] == "\\" else 1
            out.append(text[index : end + 1])
            index = end + 1
        elif text.startswith("//", index):
            end = text.find("\n", index)
            index = size if end < 0 else end
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            end = size if end < 0 else end + 2
            out.append("\n" * text.count("\n", index, end))
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def imports_of(text: str) -> list[tuple[str, int]]:
    """The files a .proto imports, each with the 1-based line of its ``import``."""
    code = strip_comments(text)
    return [(m["name"], code.count("\n", 0, m.start()) + 1) for m in _IMPORT.finditer(code)]


def locate_error(text: str, message: str) -> tuple[int, int]:
    """(line, column), 1-based, of an error protoc reported without a position; (0, 0)
    when it cannot be found. Only the reserved field-number range is known."""
    if not message.startswith(_RESERVED_MESSAGE):
        return 0, 0
    code = strip_comments(text)
    for match in _FIELD_NUMBER.finditer(code):
        if 19000 <= int(match["number"]) <= 19999:
            start = match.start("number")
            line_start = code.rfind("\n", 0, start) + 1
            return code.count("\n", 0, start) + 1, start - line_start + 1
    return 0, 0
