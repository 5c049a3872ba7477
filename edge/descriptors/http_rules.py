"""Reading ``google.api.http`` rules off method options (pure).

A rule and its ``additional_bindings`` are flattened into one list of ``HttpRule`` values
with their templates already parsed, so nothing about the annotation is looked at again
after load time. Rule problems (bad template, nested additional_bindings, a body field
that does not exist) are returned, not raised, so one bad annotation costs one route.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from edge.routing.template import PathTemplate, TemplateError, parse_template

_PATTERN_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class HttpRule:
    method: str
    template: PathTemplate
    body: str | None  # None: no body; "*": whole request; else a field path
    response_body: str | None  # None: whole response; else a field path


def _one_rule(rule: http_pb2.HttpRule) -> HttpRule:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError("rule has no pattern (get, put, post, delete, patch or custom)")
    if kind == "custom":
        method = rule.custom.kind.upper()
        path = rule.custom.path
        if not method:
            raise ValueError("custom rule has no kind")
    else:
        method = kind.upper()
        path = getattr(rule, kind)
    return HttpRule(
        method=method,
        template=parse_template(path),
        body=rule.body or None,
        response_body=rule.response_body or None,
    )


def read_http_rules(options: descriptor_pb2.MethodOptions) -> tuple[list[HttpRule], list[str]]:
    """The method's rules (primary first) and a problem string for each rule left out."""
    if not options.HasExtension(annotations_pb2.http):
        return [], []
    primary = options.Extensions[annotations_pb2.http]
    rules: list[HttpRule] = []
    problems: list[str] = []
    for index, rule in enumerate([primary, *primary.additional_bindings]):
        if index and rule.additional_bindings:
            problems.append("additional_bindings cannot be nested; nested bindings ignored")
        try:
            rules.append(_one_rule(rule))
        except (TemplateError, ValueError) as exc:
            problems.append(str(exc))
    return rules, problems
