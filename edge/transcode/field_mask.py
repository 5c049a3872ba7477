"""The update mask of a PATCH request, derived from the fields its JSON body names (pure).

grpc-gateway v2 fills an empty ``google.protobuf.FieldMask`` of a PATCH request from its
body (``runtime.FieldMaskFromRequestBody``), so a client that sends only the fields it
changes gets a partial update, as the AIP-134 convention expects. The same rules here:

- every key of an object names a field (proto or JSON name); the path uses proto names,
  joined with ``.``, relative to the message the body fills (for ``body: "book"``, the
  book: ``title``, not ``book.title``);
- an object for a singular message field is walked into; an empty object, ``null``, or
  any other value ends the path there (so ``{"author": {}}`` or ``{"author": null}``
  names ``author``, clearing it);
- a repeated or map field ends the path whatever its value (field_mask.proto: a path
  cannot go into a repeated field);
- ``google.protobuf.Struct`` and ``Value`` are walked by their JSON keys as they are
  (``labels.a.b``), and an empty object under them names nothing; ``google.protobuf.Any``
  ends the path;
- the paths are sorted, each once (a body may name a field by both its names; the
  parse refuses that unless told to ignore it, but the mask never repeats a path).

Where we differ from grpc-gateway, the differences are its slips: an empty body object
gives no paths (grpc-gateway gives one empty path, which an upstream then refuses); an
``Any`` below the top level keeps its full path (grpc-gateway keeps only its key); and a
key that names no field is skipped rather than refused, because the body's own parse
refuses it first unless ``unknown_fields: ignore`` says to ignore it.

Bounded: the walk visits each JSON value once (the body is already held to
``max_body_bytes`` and orjson's nesting limit), iteratively, so a deep body cannot
exhaust the stack.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_DYNAMIC = frozenset({"google.protobuf.Struct", "google.protobuf.Value"})
_ANY = "google.protobuf.Any"

# message -> {proto name and JSON name: field}; each load brings new descriptors, so the
# table is dropped when it grows past what one schema could fill
_LOOKUPS: dict[Descriptor, dict[str, FieldDescriptor]] = {}
_LOOKUPS_LIMIT = 4096


def _lookup(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    table = _LOOKUPS.get(descriptor)
    if table is None:
        table = {}
        for field in descriptor.fields:
            table.setdefault(field.json_name, field)
        for field in descriptor.fields:
            table[field.name] = field  # a proto name wins over a clashing JSON name
        if len(_LOOKUPS) >= _LOOKUPS_LIMIT:
            _LOOKUPS.clear()
        _LOOKUPS[descriptor] = table
    return table


def mask_paths(body: Any, descriptor: Descriptor) -> list[str]:
    """The sorted field mask paths a JSON ``body`` for ``descriptor`` names."""
    if type(body) is not dict:
        return []
    paths: list[str] = []
    queue: deque[tuple[str, dict[str, Any], Descriptor]] = deque([("", body, descriptor)])
    while queue:
        prefix, node, message = queue.popleft()
        fields = _lookup(message)
        for key, value in node.items():
            field = fields.get(key)
            if field is None:
                continue
            path = prefix + field.name
            child = field.message_type
            if field.is_repeated:
                paths.append(path)
            elif child is None or child.full_name == _ANY:
                paths.append(path)
            elif child.full_name in _DYNAMIC:
                _blind_paths(path, value, paths)
            elif type(value) is dict and value:
                queue.append((path + ".", value, child))
            else:
                paths.append(path)
    if len(paths) > 1:
        paths = sorted(set(paths))  # a field named twice, by proto and by JSON name
    return paths


def _blind_paths(root: str, value: Any, paths: list[str]) -> None:
    """Paths under a Struct or Value field, from the JSON keys alone."""
    if type(value) is not dict:
        paths.append(root)
        return
    queue: deque[tuple[str, dict[str, Any]]] = deque([(root, value)])
    while queue:
        prefix, node = queue.popleft()
        for key, item in node.items():
            path = f"{prefix}.{key}"
            if type(item) is dict:
                queue.append((path, item))
            else:
                paths.append(path)
