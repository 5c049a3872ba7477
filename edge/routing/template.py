"""Parsing of google.api.http path templates (sans-IO).

Grammar (google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

A template is flattened into a sequence of segment *patterns* (literal, ``*``, ``**``) plus
the variables that capture ranges of them, which is what the route table compiles into a
trie. Like grpc-gateway and Envoy we accept ``**`` only as the last segment, because a
catch-all followed by more segments has no unambiguous match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class TemplateError(ValueError):
    """A path template does not follow the google.api.http grammar."""

    def __init__(self, template: str, position: int, problem: str) -> None:
        super().__init__(f"invalid path template {template!r} at offset {position}: {problem}")
        self.template = template
        self.position = position
        self.problem = problem


class SegmentKind(Enum):
    LITERAL = "literal"
    SINGLE = "*"
    MULTI = "**"


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    literal: str = ""

    def __str__(self) -> str:
        return self.literal if self.kind is SegmentKind.LITERAL else self.kind.value


@dataclass(frozen=True, slots=True)
class Variable:
    """A field path bound to the segments ``[start, end)``; ``end`` is None for a ``**`` tail."""

    field_path: tuple[str, ...]
    start: int
    end: int | None

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    source: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None

    @property
    def shape(self) -> str:
        """The template with variable names erased: two routes with equal shapes collide."""
        path = "/" + "/".join(str(s) for s in self.segments)
        return path + (f":{self.verb}" if self.verb is not None else "")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 3986 pchar minus ':' (which introduces the verb) and minus '{', '}', '*'.
_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;=@]|%[0-9A-Fa-f]{2})+")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[Segment] = []
        self.variables: list[Variable] = []

    def fail(self, problem: str) -> TemplateError:
        return TemplateError(self.text, self.pos, problem)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "end of template"
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    def parse(self) -> PathTemplate:
        self.expect("/")
        self.parse_segments(inside_variable=False)
        verb = None
        if self.peek() == ":":
            self.pos += 1
            verb = self.parse_literal()
        if self.pos != len(self.text):
            raise self.fail(f"unexpected {self.peek()!r}")
        for index, segment in enumerate(self.segments):
            if segment.kind is SegmentKind.MULTI and index != len(self.segments) - 1:
                raise TemplateError(self.text, 0, "'**' is only allowed as the last segment")
        seen: set[tuple[str, ...]] = set()
        for variable in self.variables:
            if variable.field_path in seen:
                raise TemplateError(self.text, 0, f"field {variable.name!r} is bound twice")
            seen.add(variable.field_path)
        return PathTemplate(self.text, tuple(self.segments), tuple(self.variables), verb)

    def parse_segments(self, *, inside_variable: bool) -> None:
        while True:
            self.parse_segment(inside_variable=inside_variable)
            if self.peek() != "/":
                return
            self.pos += 1

    def parse_segment(self, *, inside_variable: bool) -> None:
        char = self.peek()
        if char == "*":
            if self.text.startswith("**", self.pos):
                self.pos += 2
                self.segments.append(Segment(SegmentKind.MULTI))
            else:
                self.pos += 1
                self.segments.append(Segment(SegmentKind.SINGLE))
        elif char == "{":
            if inside_variable:
                raise self.fail("variables cannot be nested")
            self.parse_variable()
        else:
            self.segments.append(Segment(SegmentKind.LITERAL, self.parse_literal()))

    def parse_literal(self) -> str:
        match = _LITERAL.match(self.text, self.pos)
        if match is None:
            found = repr(self.peek()) if self.peek() else "end of template"
            raise self.fail(f"expected a literal segment, found {found}")
        self.pos = match.end()
        return match.group()

    def parse_variable(self) -> None:
        self.expect("{")
        path: list[str] = []
        while True:
            match = _IDENT.match(self.text, self.pos)
            if match is None:
                raise self.fail("expected a field name")
            path.append(match.group())
            self.pos = match.end()
            if self.peek() != ".":
                break
            self.pos += 1
        start = len(self.segments)
        if self.peek() == "=":
            self.pos += 1
            self.parse_segments(inside_variable=True)
        else:
            self.segments.append(Segment(SegmentKind.SINGLE))
        self.expect("}")
        end: int | None = len(self.segments)
        if self.segments[-1].kind is SegmentKind.MULTI:
            end = None
        self.variables.append(Variable(tuple(path), start, end))


def parse_template(text: str) -> PathTemplate:
    """Parse a google.api.http path template; raises TemplateError naming the offset."""
    return _Parser(text).parse()
