"""``google.api.http`` path templates as OpenAPI paths (pure).

An OpenAPI path parameter is one segment: it cannot hold a slash, and every generated
client percent-encodes the one it is given (``shelves/1`` becomes ``shelves%2F1``, which
no multi-segment template matches). So, as protoc-gen-openapiv2 does with
``expand_slashed_path_patterns``, a variable whose pattern spans segments is expanded into
its segments: ``/v1/{name=shelves/*/books/*}`` is ``/v1/shelves/{shelf}/books/{book}``,
each ``*`` a parameter named after the collection before it, in the singular. A client
sends ``/v1/shelves/1/books/2``, which the original template matches and binds into
``name`` as ``shelves/1/books/2``: the gateway joins the parts back into the field by
matching, with no extra step. A ``**`` stays one parameter (OpenAPI has no way to say
"the rest of the path"); its value may hold slashes, sent as they are.

``expand=False`` keeps the original form: one parameter per variable, named by its field
path, its pattern in the schema (clients that percent-encode cannot call such paths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.routing.template import PathTemplate, SegmentKind, Variable

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class PathParameter:
    """One OpenAPI path parameter: its name, the variable it belongs to, and its part.

    ``segment`` is the index in the template of the one segment the parameter stands for
    (an expanded ``*`` or ``**``), or None when it stands for the whole variable.
    """

    name: str
    variable: Variable
    segment: int | None = None


@dataclass(frozen=True, slots=True)
class OpenApiPath:
    path: str
    parameters: tuple[PathParameter, ...]


def singular(word: str) -> str:
    """The collection word in the singular, by the common English endings (``shelves`` is
    ``shelf``, ``libraries`` ``library``, ``boxes`` ``box``); a word that is not a plural
    (``data``, ``status``) is kept."""
    lower = word.lower()
    for plural, one in (("ies", "y"), ("lves", "lf")):
        if lower.endswith(plural) and len(word) > len(plural) + 1:
            return word[: -len(plural)] + one
    for ending in ("sses", "shes", "ches", "xes", "zzes"):
        if lower.endswith(ending):
            return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(word) > 2:
        return word[:-1]
    return word


def _identifier(text: str) -> str:
    name = _IDENTIFIER.sub("_", text).strip("_")
    return name or "value"


def openapi_path(
    template: PathTemplate, *, expand: bool = True, names: tuple[str, ...] | None = None
) -> OpenApiPath:
    """The OpenAPI path of a template and its path parameters, in order.

    ``names`` replaces the parameters' names (those the first template of the same OpenAPI
    shape chose, so that one path item has one set of names). Names are unique within the
    path: a second ``shelves/*`` is ``shelf_2``.
    """
    starts = {variable.start: variable for variable in template.variables}
    parts: list[str] = []
    parameters: list[PathParameter] = []
    used: set[str] = set()

    def claim(base: str) -> str:
        name, count = base, 1
        while name in used:
            count += 1
            name = f"{base}_{count}"
        used.add(name)
        return name

    index = 0
    while index < len(template.segments):
        variable = starts.get(index)
        if variable is None:
            parts.append(str(template.segments[index]))
            index += 1
            continue
        end = len(template.segments) if variable.end is None else variable.end
        inner = template.segments[variable.start : end]
        whole = len(inner) == 1 and inner[0].kind is SegmentKind.SINGLE
        if not expand or whole:
            name = variable.name if not expand else claim(variable.name)
            parameters.append(PathParameter(name, variable))
            parts.append("{" + name + "}")
        else:
            for offset, segment in enumerate(inner):
                if segment.kind is SegmentKind.LITERAL:
                    parts.append(segment.literal)
                    continue
                previous = inner[offset - 1] if offset else None
                if previous is not None and previous.kind is SegmentKind.LITERAL:
                    base = _identifier(singular(previous.literal))
                else:  # no collection word before it in the variable: the field's name
                    base = _identifier(variable.name)
                name = claim(base)
                parameters.append(PathParameter(name, variable, variable.start + offset))
                parts.append("{" + name + "}")
        index = end
    if names is not None:
        renamed = dict(zip((p.name for p in parameters), names, strict=True))
        parts = ["{" + renamed[p[1:-1]] + "}" if p.startswith("{") else p for p in parts]
        parameters = [PathParameter(renamed[p.name], p.variable, p.segment) for p in parameters]
    verb = f":{template.verb}" if template.verb is not None else ""
    return OpenApiPath("/" + "/".join(parts) + verb, tuple(parameters))


def path_shape(path: str) -> str:
    """The path with its parameter names blanked: OpenAPI holds two paths that differ only
    in names (``/v1/{name}``, ``/v1/{book.name}``) to be one."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def variable_pattern(template: PathTemplate, variable: Variable) -> str | None:
    """The segments a multi-segment variable matches (``shelves/*``); None for plain ``*``."""
    segments = template.segments[variable.start : variable.end]
    if len(segments) == 1 and segments[0].kind is SegmentKind.SINGLE:
        return None
    return "/".join(str(segment) for segment in segments)


def variable_regex(template: PathTemplate, variable: Variable) -> str:
    """A regular expression for a whole (unexpanded) multi-segment variable's value."""
    pieces = []
    for segment in template.segments[variable.start : variable.end]:
        if segment.kind is SegmentKind.LITERAL:
            pieces.append("/" + re.escape(segment.literal))
        elif segment.kind is SegmentKind.SINGLE:
            pieces.append("/[^/]+")
        else:
            pieces.append("(/.*)?")
    regex = "".join(pieces)
    return "^" + (regex[1:] if regex.startswith("/") else regex.removeprefix("(/.*)?") + ".*") + "$"


def example_value(pattern: str) -> str:
    return "/".join(
        "1" if part == "*" else "a/b" if part == "**" else part for part in pattern.split("/")
    )
