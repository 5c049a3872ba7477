"""The compiled route table: (HTTP method, raw path) -> match, 404 or 405 (sans-IO).

Templates are compiled once into a trie of segment patterns, so a lookup costs one dict
probe per path segment whatever the number of routes. Literal children win over ``*``,
which wins over ``**`` (the most specific route matches, as in grpc-gateway). A trailing
``:verb`` is tried first as a custom verb, then as part of the last segment. A path
ending in a ``:verb`` that no route at that path has is a 404 (no such resource action),
not a 405 from routes that would take the colon as data; grpc-gateway answers 405 there.

Paths are split on ``/`` *before* percent-decoding, so ``%2F`` inside a segment never
acts as a separator; single-segment variables are then fully decoded, while multi-segment
variables decode everything except ``%2F`` and ``%2f``, which are left exactly as sent
(google.api.http's custom rule for multi-segment variables, which is not RFC 6570's
reserved expansion).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

from edge.routing.template import PathTemplate, SegmentKind

T = TypeVar("T")


class RouteConflict(ValueError):
    """Two rules bind the same method to the same path shape."""


@dataclass(slots=True)
class _Node(Generic[T]):
    literals: dict[str, _Node[T]] = field(default_factory=dict)
    single: _Node[T] | None = None
    # routes ending at this node: verb (None for none) -> method -> entry
    ends: dict[str | None, dict[str, _Entry[T]]] = field(default_factory=dict)
    # routes whose last segment is '**' hanging off this node
    tails: dict[str | None, dict[str, _Entry[T]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    template: PathTemplate
    target: T


@dataclass(frozen=True, slots=True)
class RouteMatch(Generic[T]):
    target: T
    template: PathTemplate
    # field path -> decoded value, in template order
    bindings: tuple[tuple[tuple[str, ...], str], ...]


@dataclass(frozen=True, slots=True)
class NoRoute:
    """No route has this path (404)."""


@dataclass(frozen=True, slots=True)
class WrongMethod:
    """The path exists, but not for this method (405); ``allowed`` feeds the Allow header."""

    allowed: tuple[str, ...]


def _decode_single(raw: str) -> str:
    return unquote(raw) if "%" in raw else raw


# the capturing group makes re.split keep each encoded slash, in its original case
_ENCODED_SLASH = re.compile(r"(%2[Ff])")


def _decode_multi(raw_segments: Sequence[str]) -> str:
    parts = []
    for raw in raw_segments:
        if "%" in raw:
            # keep an encoded slash exactly as sent (spec: "%2F" and "%2f" are left unchanged):
            # it is data, not structure; odd indices of the split are the slashes themselves
            pieces = _ENCODED_SLASH.split(raw)
            raw = "".join(p if i % 2 else unquote(p) for i, p in enumerate(pieces))
        parts.append(raw)
    return "/".join(parts)


class RouteTable(Generic[T]):
    """Routes compiled into a trie; build with ``add`` at load time, then only ``match``."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, method: str, template: PathTemplate, target: T) -> None:
        """Insert a route; raises RouteConflict when method and path shape are taken."""
        node = self._root
        segments = template.segments
        is_tail = bool(segments) and segments[-1].kind is SegmentKind.MULTI
        for segment in segments[:-1] if is_tail else segments:
            if segment.kind is SegmentKind.LITERAL:
                node = node.literals.setdefault(segment.literal, _Node())
            else:
                if node.single is None:
                    node.single = _Node()
                node = node.single
        bucket = (node.tails if is_tail else node.ends).setdefault(template.verb, {})
        existing = bucket.get(method)
        if existing is not None:
            raise RouteConflict(
                f"{method} {template.source} conflicts with {method} "
                f"{existing.template.source} (both match {template.shape})"
            )
        bucket[method] = _Entry(template, target)
        self._size += 1

    def match(self, method: str, raw_path: str) -> RouteMatch[T] | NoRoute | WrongMethod:
        """Look up a raw (still percent-encoded) path; never raises."""
        if not raw_path.startswith("/"):
            return NoRoute()
        segments = raw_path[1:].split("/")
        allowed: set[str] = set()
        last = segments[-1]
        colon = last.rfind(":")
        if colon >= 0:
            verb_segments = [*segments[:-1], last[:colon]]
            verb_allowed: set[str] = set()
            found = self._find(method, verb_segments, last[colon + 1 :], verb_allowed)
            if found is not None:
                return found
            found = self._find(method, segments, None, allowed)
            if found is not None:
                return found
            # a custom verb no route has at this path is a 404, even where the colon read
            # as data would name a path other methods have; 405 only when the verb exists
            if verb_allowed:
                return WrongMethod(tuple(sorted(verb_allowed | allowed)))
            return NoRoute()
        found = self._find(method, segments, None, allowed)
        if found is not None:
            return found
        if allowed:
            return WrongMethod(tuple(sorted(allowed)))
        return NoRoute()

    def _find(
        self, method: str, segments: list[str], verb: str | None, allowed: set[str]
    ) -> RouteMatch[T] | None:
        for bucket in self._candidates(self._root, segments, 0, verb):
            entry = bucket.get(method)
            if entry is not None:
                return RouteMatch(entry.target, entry.template, _bind(entry.template, segments))
            allowed.update(bucket)
        return None

    def _candidates(
        self, node: _Node[T], segments: list[str], index: int, verb: str | None
    ) -> Iterator[dict[str, _Entry[T]]]:
        if index == len(segments):
            bucket = node.ends.get(verb)
            if bucket:
                yield bucket
        else:
            child = node.literals.get(segments[index])
            if child is not None:
                yield from self._candidates(child, segments, index + 1, verb)
            if node.single is not None and segments[index]:
                yield from self._candidates(node.single, segments, index + 1, verb)
        # '**' matches the remaining segments, including none at all
        tail = node.tails.get(verb)
        if tail:
            yield tail


def _bind(template: PathTemplate, segments: list[str]) -> tuple[tuple[tuple[str, ...], str], ...]:
    bindings = []
    for variable in template.variables:
        end = len(segments) if variable.end is None else variable.end
        captured = segments[variable.start : end]
        if len(captured) == 1 and variable.end is not None and variable.end - variable.start == 1:
            value = _decode_single(captured[0])
        else:
            value = _decode_multi(captured)
        bindings.append((variable.field_path, value))
    return tuple(bindings)
