"""Schemathesis hooks for the run against the demo (``SCHEMATHESIS_HOOKS`` names this file).

What Schemathesis cannot do by itself, and the two places where its built-in check asks
for more than the document can say:

* NDJSON bodies: a client stream's body is sent as one line (the schema is one line's);
  a streamed answer is checked line by line against the line schema
  (``ndjson_lines_conform``), and its first line goes to the built-in schema check.
* ``positive_data_acceptance`` expects every schema-valid request to be accepted. The
  gateway must accept them (it binds them and calls the upstream); the demo upstream then
  refuses some by its own rules, which no proto annotation states (a negative page size,
  a book without a title, publishing twice). ``positive_data_reaches_the_upstream`` is
  the same check, except that such a refusal, recognised by the field and words the demo
  uses, is the upstream's business, not a document mismatch. Any refusal by the gateway
  itself (an unknown field, a value of the wrong type, a bad query parameter) still fails.
* ``allow_header_conformance`` compares ``Allow`` with the methods of the one OpenAPI path
  the request was generated from; but a URL can match several documented paths
  (``/v1/shelves/1/books/1:publish`` is also ``/v1/shelves/{shelf}/books/{book}`` with
  ``book`` = ``1:publish``, as in grpc-gateway), and ``Allow`` rightly lists the methods of
  all of them. ``allow_lists_the_methods_of_every_matching_path`` checks exactly that.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import schemathesis
from jsonschema import Draft202012Validator
from schemathesis import Case, CheckContext, Response

# (field, how the demo words the refusal) for every INVALID_ARGUMENT of edge/demo/library.py
DEMO_RULES = (
    (r"page_size", r"must not be negative"),
    (r"page_token", r"is not a token from a previous page"),
    (r"book\.title", r"is required"),
    (r"update_mask", r"cannot update .*"),
    (r"interval_seconds", r"must be between 0 and 10"),
    (r"pages_per_piece", r"must be between 0 and 10000"),
    (r"(requests\[\d+\]|request)\.(parent|book\.title)", r"is required"),
    (r"text", r"is required"),
)
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx: Any, value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


@schemathesis.deserializer("application/x-ndjson")
def first_ndjson_line(ctx: Any, response: Response) -> Any:
    lines = response.content.splitlines()
    return json.loads(lines[0]) if lines else {}  # an empty stream has no line to check


def _upstream_rule(response: Response) -> bool:
    """A refusal the demo upstream makes by its own rules (not the gateway's binding)."""
    try:
        status = json.loads(response.content)
    except ValueError:
        return False
    if status.get("code") == 9:  # FAILED_PRECONDITION: e.g. publishing a published book
        return True
    if status.get("code") != 3:
        return False
    violations = [
        violation
        for detail in status.get("details", [])
        if detail.get("@type", "").endswith("google.rpc.BadRequest")
        for violation in detail.get("fieldViolations", [])
    ]
    return bool(violations) and all(
        any(
            re.fullmatch(field, v.get("field", ""))
            and re.fullmatch(words, v.get("description", ""))
            for field, words in DEMO_RULES
        )
        for v in violations
    )


@schemathesis.check
def positive_data_reaches_the_upstream(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code == 400 and not _upstream_rule(response):
        raise AssertionError(
            "Schema-valid request refused by the gateway: "
            + response.content.decode(errors="replace")[:500]
        )
    return None


def _path_regex(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]*\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


@schemathesis.check
def allow_lists_the_methods_of_every_matching_path(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    if response.request.method != "OPTIONS" or "allow" not in response.headers:
        return None
    advertised = {
        m.strip().lower() for value in response.headers["allow"] for m in value.split(",")
    }
    url_path = unquote(urlsplit(response.request.url).path)
    declared: set[str] = set()
    for path, item in case.operation.schema.raw_schema["paths"].items():
        if _path_regex(path).fullmatch(url_path):
            declared |= {m for m in item if m in _METHODS}
    declared -= {"options", "head"}
    advertised -= {"options", "head"}
    if advertised != declared:
        raise AssertionError(
            f"Allow: {sorted(advertised)}, documented for this URL: {sorted(declared)}"
        )
    return None


@schemathesis.check
def ndjson_lines_conform(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    content_type = ",".join(response.headers.get("content-type", []))
    if response.status_code != 200 or "application/x-ndjson" not in content_type:
        return None
    document = case.operation.schema.raw_schema
    operation = document["paths"][case.operation.path][case.method.lower()]
    schema = operation["responses"]["200"]["content"]["application/x-ndjson"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    for number, line in enumerate(response.content.splitlines(), 1):
        errors = sorted(validator.iter_errors(json.loads(line)), key=str)
        if errors:
            raise AssertionError(f"NDJSON line {number} does not fit its schema: {errors[0]}")
    return None
