"""Tables for RouteTable: (method, raw path) -> RouteMatch | NoRoute | WrongMethod."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.routing.table import NoRoute, RouteConflict, RouteMatch, RouteTable, WrongMethod
from edge.routing.template import parse_template

Route = tuple[str, str]  # (method, template); the target is f"{method} {template}"
Bindings = list[tuple[str, str]]  # (dotted field path, decoded value), in template order


def build(routes: Sequence[Route]) -> RouteTable[str]:
    table: RouteTable[str] = RouteTable()
    for method, template in routes:
        table.add(method, parse_template(template), f"{method} {template}")
    return table


def matched(found: RouteMatch[str] | NoRoute | WrongMethod) -> tuple[str, Bindings]:
    assert isinstance(found, RouteMatch), found
    return found.target, [(".".join(path), value) for path, value in found.bindings]


SPECIFICITY: list[Route] = [
    ("GET", "/v1/shelves/first"),
    ("GET", "/v1/shelves/{shelf}"),
    ("GET", "/v1/{rest=**}"),
    ("GET", "/a/b/c"),
    ("GET", "/a/{x}/d"),
    ("GET", "/a/**"),
]

VERBS: list[Route] = [
    ("GET", "/v1/{name=*}"),
    ("POST", "/v1/{name=*}:publish"),
    ("POST", "/v1/shelves:batchGet"),
    ("POST", "/jobs/{name=**}:cancel"),
]

DECODING: list[Route] = [
    ("GET", "/s/{name}"),
    ("GET", "/s/{name}/x"),
    ("GET", "/m/{name=shelves/*}"),
    ("GET", "/f/{path=**}"),
    ("GET", "/lit/a%2Fb"),
]

EMPTY: list[Route] = [
    ("GET", "/v1/{name}"),
    ("GET", "/v1/{a}/x"),
    ("GET", "/v1/shelves"),
    ("GET", "/t/{rest=**}"),
]

# (routes, method, path, expected target, expected bindings)
MATCHES: list[tuple[list[Route], str, str, str, Bindings]] = [
    # literal beats '*' beats '**'
    (SPECIFICITY, "GET", "/v1/shelves/first", "GET /v1/shelves/first", []),
    (SPECIFICITY, "GET", "/v1/shelves/other", "GET /v1/shelves/{shelf}", [("shelf", "other")]),
    (SPECIFICITY, "GET", "/v1/shelves/first/x", "GET /v1/{rest=**}", [("rest", "shelves/first/x")]),
    (SPECIFICITY, "GET", "/v1/shelves", "GET /v1/{rest=**}", [("rest", "shelves")]),
    # '**' matches zero segments, and an empty one
    (SPECIFICITY, "GET", "/v1", "GET /v1/{rest=**}", [("rest", "")]),
    (SPECIFICITY, "GET", "/v1/", "GET /v1/{rest=**}", [("rest", "")]),
    # a dead-end literal branch backtracks to '*', then to '**'
    (SPECIFICITY, "GET", "/a/b/c", "GET /a/b/c", []),
    (SPECIFICITY, "GET", "/a/b/d", "GET /a/{x}/d", [("x", "b")]),
    (SPECIFICITY, "GET", "/a/b/e", "GET /a/**", []),
    (SPECIFICITY, "GET", "/a", "GET /a/**", []),
    # custom verbs: tried first as a verb, then as part of the last segment
    (VERBS, "POST", "/v1/topic:publish", "POST /v1/{name=*}:publish", [("name", "topic")]),
    (VERBS, "GET", "/v1/topic", "GET /v1/{name=*}", [("name", "topic")]),
    (VERBS, "GET", "/v1/topic:publish", "GET /v1/{name=*}", [("name", "topic:publish")]),
    (VERBS, "GET", "/v1/:publish", "GET /v1/{name=*}", [("name", ":publish")]),
    (VERBS, "POST", "/v1/a:b:publish", "POST /v1/{name=*}:publish", [("name", "a:b")]),
    (VERBS, "POST", "/v1/shelves:batchGet", "POST /v1/shelves:batchGet", []),
    (VERBS, "POST", "/jobs/a/b/c:cancel", "POST /jobs/{name=**}:cancel", [("name", "a/b/c")]),
    (VERBS, "POST", "/jobs:cancel", "POST /jobs/{name=**}:cancel", [("name", "")]),
    # a colon with no verb route is just data
    ([("GET", "/v1/{name}")], "GET", "/v1/a:b", "GET /v1/{name}", [("name", "a:b")]),
    ([("GET", "/v1/{a}/{b}")], "GET", "/v1/x:y/z", "GET /v1/{a}/{b}", [("a", "x:y"), ("b", "z")]),
    ([("GET", "/v1/{name=**}")], "GET", "/v1/a:b/c:d", "GET /v1/{name=**}", [("name", "a:b/c:d")]),
    # single-segment variables are fully percent-decoded, as UTF-8
    (DECODING, "GET", "/s/a%2Fb", "GET /s/{name}", [("name", "a/b")]),
    (DECODING, "GET", "/s/a%2fb", "GET /s/{name}", [("name", "a/b")]),
    (DECODING, "GET", "/s/a%2Fb/x", "GET /s/{name}/x", [("name", "a/b")]),
    (DECODING, "GET", "/s/caf%C3%A9", "GET /s/{name}", [("name", "café")]),
    (DECODING, "GET", "/s/caf%c3%a9", "GET /s/{name}", [("name", "café")]),
    (DECODING, "GET", "/s/%E2%82%AC%F0%9F%98%80", "GET /s/{name}", [("name", "€😀")]),
    (DECODING, "GET", "/s/a%20b", "GET /s/{name}", [("name", "a b")]),
    (DECODING, "GET", "/s/a+b", "GET /s/{name}", [("name", "a+b")]),
    (DECODING, "GET", "/s/%41%3a%3F%23", "GET /s/{name}", [("name", "A:?#")]),
    (DECODING, "GET", "/s/%252F", "GET /s/{name}", [("name", "%2F")]),
    (DECODING, "GET", "/s/%zz", "GET /s/{name}", [("name", "%zz")]),
    (DECODING, "GET", "/s/plain", "GET /s/{name}", [("name", "plain")]),
    # an encoded colon never introduces a verb
    (VERBS, "GET", "/v1/topic%3Apublish", "GET /v1/{name=*}", [("name", "topic:publish")]),
    # multi-segment variables decode all but %2F / %2f, which stay exactly as sent
    (DECODING, "GET", "/m/shelves/a%2Fb", "GET /m/{name=shelves/*}", [("name", "shelves/a%2Fb")]),
    (DECODING, "GET", "/m/shelves/a%2fb", "GET /m/{name=shelves/*}", [("name", "shelves/a%2fb")]),
    (
        DECODING,
        "GET",
        "/m/shelves/caf%C3%A9",
        "GET /m/{name=shelves/*}",
        [("name", "shelves/café")],
    ),
    (
        DECODING,
        "GET",
        "/m/shelves/a%20b%2Fc%3A",
        "GET /m/{name=shelves/*}",
        [("name", "shelves/a b%2Fc:")],
    ),
    (DECODING, "GET", "/f/a/b%2Fc/d%C3%A9", "GET /f/{path=**}", [("path", "a/b%2Fc/dé")]),
    (DECODING, "GET", "/f/%252F%2f", "GET /f/{path=**}", [("path", "%2F%2f")]),
    (DECODING, "GET", "/f/a//b/", "GET /f/{path=**}", [("path", "a//b/")]),
    # template literals match the raw segment
    (DECODING, "GET", "/lit/a%2Fb", "GET /lit/a%2Fb", []),
    # bindings come back in template order, with nested field paths
    (
        [("GET", "/v1/{parent=projects/*}/books/{book.id}/{rest=**}")],
        "GET",
        "/v1/projects/p1/books/b%201/x/y",
        "GET /v1/{parent=projects/*}/books/{book.id}/{rest=**}",
        [("parent", "projects/p1"), ("book.id", "b 1"), ("rest", "x/y")],
    ),
    # the root catch-all
    ([("GET", "/{rest=**}")], "GET", "/", "GET /{rest=**}", [("rest", "")]),
    ([("GET", "/{rest=**}")], "GET", "/a/b", "GET /{rest=**}", [("rest", "a/b")]),
    # a method that misses on the specific route falls through to a less specific one
    ([("POST", "/v1/a"), ("GET", "/v1/{x}")], "GET", "/v1/a", "GET /v1/{x}", [("x", "a")]),
    (EMPTY, "GET", "/t", "GET /t/{rest=**}", [("rest", "")]),
    (EMPTY, "GET", "/t//", "GET /t/{rest=**}", [("rest", "/")]),
]


@pytest.mark.parametrize(("routes", "method", "path", "target", "bindings"), MATCHES)
def test_match(
    routes: list[Route], method: str, path: str, target: str, bindings: Bindings
) -> None:
    assert matched(build(routes).match(method, path)) == (target, bindings)


# (routes, method, path): nothing has this path
NOT_FOUND: list[tuple[list[Route], str, str]] = [
    ([], "GET", "/"),
    ([], "GET", "/v1"),
    (SPECIFICITY, "GET", "/v2"),
    (SPECIFICITY, "GET", "/"),
    # a path must be absolute
    (EMPTY, "GET", ""),
    (EMPTY, "GET", "v1/shelves"),
    (EMPTY, "GET", "*"),
    # an empty segment never matches '*', nor a literal
    (EMPTY, "GET", "/v1/"),
    (EMPTY, "GET", "/v1//x"),
    (EMPTY, "GET", "/v1//"),
    (EMPTY, "GET", "/v1/shelves/"),
    (EMPTY, "GET", "//v1/shelves"),
    # '*' is exactly one segment, and %2F does not split one
    (DECODING, "GET", "/s/a/b"),
    (DECODING, "GET", "/s/a/b/x"),
    (DECODING, "GET", "/m/shelves/a/b"),
    (DECODING, "GET", "/m/shelves"),
    (DECODING, "GET", "/m/other/a"),
    (DECODING, "GET", "/lit/a/b"),
    # a verb is not a segment, and is matched exactly
    ([("GET", "/v1/time")], "GET", "/v1/time:now"),
    ([("POST", "/v1/shelves:batchGet")], "POST", "/v1/shelves:batchget"),
    ([("POST", "/v1/shelves:batchGet")], "POST", "/v1/shelves:"),
    ([("POST", "/v1/shelves:batchGet")], "POST", "/v1/shelves"),
    ([("POST", "/v1/shelves:batchGet")], "POST", "/v1/shelves%3AbatchGet"),
    ([("POST", "/v1/{name}:publish")], "POST", "/v1/:publish"),
    ([("POST", "/v1/{name}:publish")], "POST", "/v1/a/b:publish"),
    # literals are case-sensitive
    ([("GET", "/v1/shelves")], "GET", "/v1/Shelves"),
]


@pytest.mark.parametrize(("routes", "method", "path"), NOT_FOUND)
def test_no_route(routes: list[Route], method: str, path: str) -> None:
    assert build(routes).match(method, path) == NoRoute()


SHELVES: list[Route] = [
    ("GET", "/v1/shelves"),
    ("POST", "/v1/shelves"),
    ("DELETE", "/v1/shelves/{id}"),
    ("PATCH", "/v1/shelves/{id}"),
]

# (routes, method, path, allowed methods, sorted)
WRONG_METHOD: list[tuple[list[Route], str, str, tuple[str, ...]]] = [
    (SHELVES, "PUT", "/v1/shelves", ("GET", "POST")),
    (SHELVES, "GET", "/v1/shelves/7", ("DELETE", "PATCH")),
    # methods compare exactly
    (SHELVES, "get", "/v1/shelves", ("GET", "POST")),
    # allowed collects every route that has the path, not just the most specific
    ([("POST", "/v1/a"), ("GET", "/v1/{x}")], "PUT", "/v1/a", ("GET", "POST")),
    ([("GET", "/files/{p=**}")], "DELETE", "/files/a/b", ("GET",)),
    ([("GET", "/files/{p=**}")], "DELETE", "/files", ("GET",)),
    # verb routes and the colon-as-data fallback both count
    (VERBS, "POST", "/v1/topic", ("GET",)),
    (VERBS, "PUT", "/v1/topic:publish", ("GET", "POST")),
    (VERBS, "POST", "/v1/topic%3Apublish", ("GET",)),
    (VERBS, "PUT", "/v1/shelves:batchGet", ("GET", "POST")),
    (VERBS, "GET", "/jobs/a:cancel", ("POST",)),
]


@pytest.mark.parametrize(("routes", "method", "path", "allowed"), WRONG_METHOD)
def test_wrong_method(
    routes: list[Route], method: str, path: str, allowed: tuple[str, ...]
) -> None:
    assert build(routes).match(method, path) == WrongMethod(allowed)


def test_match_carries_the_route_template() -> None:
    table: RouteTable[str] = RouteTable()
    template = parse_template("/v1/{name=shelves/*}:read")
    table.add("GET", template, "target")
    found = table.match("GET", "/v1/shelves/s1:read")
    assert isinstance(found, RouteMatch)
    assert found.template is template
    assert found.target == "target"
    assert found.bindings == ((("name",), "shelves/s1"),)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/v1/shelves", "/v1/shelves"),
        ("/v1/{a}", "/v1/{b}"),
        ("/v1/{a}", "/v1/*"),
        ("/v1/{a.b}", "/v1/{a.c}"),
        ("/v1/{a=**}", "/v1/**"),
        ("/v1/{a=**}", "/v1/{b=**}"),
        ("/v1/{a=x/*}", "/v1/x/{b}"),
        ("/v1/{a}/{b}", "/v1/{c=*/*}"),
        ("/v1/{a}:go", "/v1/{b=*}:go"),
        ("/v1/**:cancel", "/v1/{n=**}:cancel"),
        ("/**", "/{all=**}"),
    ],
)
def test_same_method_and_shape_conflict(first: str, second: str) -> None:
    table = build([("GET", first)])
    with pytest.raises(RouteConflict) as caught:
        table.add("GET", parse_template(second), "second")
    message = str(caught.value)
    assert first in message
    assert second in message
    assert parse_template(first).shape in message
    # the failed add leaves the table as it was
    assert len(table) == 1
    assert isinstance(caught.value, ValueError)


def test_conflict_leaves_first_route_in_place() -> None:
    table = build([("GET", "/v1/{a}")])
    with pytest.raises(RouteConflict):
        table.add("GET", parse_template("/v1/{b}"), "second")
    assert matched(table.match("GET", "/v1/x")) == ("GET /v1/{a}", [("a", "x")])


@pytest.mark.parametrize(
    "routes",
    [
        [("GET", "/v1/{a}"), ("POST", "/v1/{b}")],
        [("GET", "/v1/{a}"), ("GET", "/v1/{a}:go")],
        [("GET", "/v1/{a}:go"), ("GET", "/v1/{a}:stop")],
        [("GET", "/v1/*"), ("GET", "/v1/**")],
        [("GET", "/v1/x"), ("GET", "/v1/*")],
        [("GET", "/v1/x"), ("GET", "/v1/X")],
        [("GET", "/v1/{a}"), ("GET", "/v1/{a}/x")],
        [("GET", "/v1/**"), ("GET", "/v1/x/**")],
        [("GET", "/v1/**"), ("GET", "/v1/**:go")],
        [("GET", "/v1/x"), ("get", "/v1/x")],
    ],
)
def test_no_conflict(routes: list[Route]) -> None:
    table = build(routes)
    assert len(table) == len(routes)


def test_len_counts_routes() -> None:
    table: RouteTable[str] = RouteTable()
    assert len(table) == 0
    for count, route in enumerate(SHELVES, start=1):
        table.add(route[0], parse_template(route[1]), "x")
        assert len(table) == count


def test_each_route_reachable_in_a_larger_table() -> None:
    routes: list[Route] = [*SPECIFICITY, *VERBS, *DECODING, *SHELVES]
    table = build(routes)
    probes = {
        "GET /v1/shelves/first": "/v1/shelves/first",
        "GET /a/b/c": "/a/b/c",
        "POST /v1/{name=*}:publish": "/v1/t:publish",
        "POST /v1/shelves:batchGet": "/v1/shelves:batchGet",
        "POST /jobs/{name=**}:cancel": "/jobs/j:cancel",
        "GET /lit/a%2Fb": "/lit/a%2Fb",
        "GET /v1/shelves": "/v1/shelves",
        "POST /v1/shelves": "/v1/shelves",
        "DELETE /v1/shelves/{id}": "/v1/shelves/7",
    }
    for target, path in probes.items():
        method = target.split(" ", 1)[0]
        assert matched(table.match(method, path))[0] == target


# -- properties ---------------------------------------------------------------------------

_LITERAL_CHARS = "ABCXYZabcxyz0189-._~!$&'()+,;=@"
_literal_segments = st.lists(
    st.text(alphabet=_LITERAL_CHARS, min_size=1, max_size=8), min_size=1, max_size=6
)
# any text that can be UTF-8 encoded (no lone surrogates)
_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(segments=_literal_segments, verb=st.none() | st.text(_LITERAL_CHARS, min_size=1, max_size=5))
def test_literal_template_matches_its_own_text(segments: list[str], verb: str | None) -> None:
    path = "/" + "/".join(segments) + (f":{verb}" if verb is not None else "")
    table: RouteTable[str] = RouteTable()
    table.add("GET", parse_template("/{rest=**}"), "catch-all")
    table.add("GET", parse_template(path), "literal")
    found = table.match("GET", path)
    assert isinstance(found, RouteMatch)
    assert (found.target, found.bindings) == ("literal", ())


@given(value=_values.filter(bool))
def test_single_segment_value_round_trips(value: str) -> None:
    table = build([("GET", "/v1/{name}"), ("POST", "/v1/{name}:publish")])
    path = "/v1/" + quote(value, safe="")
    assert matched(table.match("GET", path)) == ("GET /v1/{name}", [("name", value)])
    published = table.match("POST", path + ":publish")
    assert matched(published) == ("POST /v1/{name}:publish", [("name", value)])


@given(values=st.lists(_values, max_size=5))
def test_multi_segment_values_keep_encoded_slashes(values: list[str]) -> None:
    table = build([("GET", "/f/{path=**}")])
    path = "/f" + "".join("/" + quote(v, safe="") for v in values)
    expected = "/".join(v.replace("/", "%2F") for v in values)
    assert matched(table.match("GET", path)) == ("GET /f/{path=**}", [("path", expected)])


_PROBES = [
    "/v1/shelves/first",
    "/v1/shelves/other",
    "/v1/shelves/first/x",
    "/v1",
    "/a/b/c",
    "/a/b/d",
    "/a/b/e",
    "/v1/t:publish",
    "/jobs/a:cancel",
    "/s/a%2Fb",
    "/zzz",
]


@given(order=st.permutations([*SPECIFICITY, *VERBS, *DECODING]))
def test_insertion_order_does_not_change_matches(order: list[Route]) -> None:
    reference = build([*SPECIFICITY, *VERBS, *DECODING])
    shuffled = build(order)
    for method in ("GET", "POST"):
        for path in _PROBES:
            assert shuffled.match(method, path) == reference.match(method, path)
