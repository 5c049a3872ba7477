"""Tables for parse_template: the google.api.http path template grammar, valid and invalid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.routing.template import (
    PathTemplate,
    Segment,
    SegmentKind,
    TemplateError,
    Variable,
    parse_template,
)

STAR = Segment(SegmentKind.SINGLE)
STARSTAR = Segment(SegmentKind.MULTI)


def lit(text: str) -> Segment:
    return Segment(SegmentKind.LITERAL, text)


def var(name: str, start: int, end: int | None) -> Variable:
    return Variable(tuple(name.split(".")), start, end)


# template -> (segments, variables, verb, shape)
VALID: list[tuple[str, tuple[Segment, ...], tuple[Variable, ...], str | None, str]] = [
    ("/v1", (lit("v1"),), (), None, "/v1"),
    ("/v1/shelves", (lit("v1"), lit("shelves")), (), None, "/v1/shelves"),
    ("/v1/*", (lit("v1"), STAR), (), None, "/v1/*"),
    ("/v1/**", (lit("v1"), STARSTAR), (), None, "/v1/**"),
    ("/*", (STAR,), (), None, "/*"),
    ("/**", (STARSTAR,), (), None, "/**"),
    ("/*/*/x", (STAR, STAR, lit("x")), (), None, "/*/*/x"),
    # {field} is shorthand for {field=*}
    ("/v1/{name}", (lit("v1"), STAR), (var("name", 1, 2),), None, "/v1/*"),
    ("/v1/{name=*}", (lit("v1"), STAR), (var("name", 1, 2),), None, "/v1/*"),
    ("/{a}", (STAR,), (var("a", 0, 1),), None, "/*"),
    # nested field paths
    ("/v1/{a.b.c}", (lit("v1"), STAR), (var("a.b.c", 1, 2),), None, "/v1/*"),
    ("/v1/{_x.Y_2}", (lit("v1"), STAR), (var("_x.Y_2", 1, 2),), None, "/v1/*"),
    # multi-segment variables flatten into the segment list
    (
        "/v1/{name=shelves/*/books/*}",
        (lit("v1"), lit("shelves"), STAR, lit("books"), STAR),
        (var("name", 1, 5),),
        None,
        "/v1/shelves/*/books/*",
    ),
    ("/v1/{name=shelves}", (lit("v1"), lit("shelves")), (var("name", 1, 2),), None, "/v1/shelves"),
    # a '**' tail has an open end
    ("/v1/{name=**}", (lit("v1"), STARSTAR), (var("name", 1, None),), None, "/v1/**"),
    ("/{name=**}", (STARSTAR,), (var("name", 0, None),), None, "/**"),
    (
        "/v1/{name=files/**}",
        (lit("v1"), lit("files"), STARSTAR),
        (var("name", 1, None),),
        None,
        "/v1/files/**",
    ),
    # several variables, in template order
    (
        "/v1/{shelf}/books/{book.id}",
        (lit("v1"), STAR, lit("books"), STAR),
        (var("shelf", 1, 2), var("book.id", 3, 4)),
        None,
        "/v1/*/books/*",
    ),
    (
        "/v1/{parent=projects/*}/items/{item=**}",
        (lit("v1"), lit("projects"), STAR, lit("items"), STARSTAR),
        (var("parent", 1, 3), var("item", 4, None)),
        None,
        "/v1/projects/*/items/**",
    ),
    # custom verbs
    ("/v1/{name=*}:publish", (lit("v1"), STAR), (var("name", 1, 2),), "publish", "/v1/*:publish"),
    ("/v1:batchGet", (lit("v1"),), (), "batchGet", "/v1:batchGet"),
    ("/v1/**:undelete", (lit("v1"), STARSTAR), (), "undelete", "/v1/**:undelete"),
    (
        "/v1/{name=**}:cancel",
        (lit("v1"), STARSTAR),
        (var("name", 1, None),),
        "cancel",
        "/v1/**:cancel",
    ),
    ("/v1/x:a.b-c_d~e", (lit("v1"), lit("x")), (), "a.b-c_d~e", "/v1/x:a.b-c_d~e"),
    # literals: unreserved, sub-delims, '@' and percent-encodings are pchars
    ("/v1/a-b.c_d~e", (lit("v1"), lit("a-b.c_d~e")), (), None, "/v1/a-b.c_d~e"),
    ("/!$&'()+,;=@", (lit("!$&'()+,;=@"),), (), None, "/!$&'()+,;=@"),
    ("/a=b&c=d;e=f/x.rdf", (lit("a=b&c=d;e=f"), lit("x.rdf")), (), None, "/a=b&c=d;e=f/x.rdf"),
    ("/caf%C3%A9", (lit("caf%C3%A9"),), (), None, "/caf%C3%A9"),
    ("/%e7%ac%ac", (lit("%e7%ac%ac"),), (), None, "/%e7%ac%ac"),
    ("/a%2Fb", (lit("a%2Fb"),), (), None, "/a%2Fb"),
    ("/v1/.", (lit("v1"), lit(".")), (), None, "/v1/."),
]


@pytest.mark.parametrize(("text", "segments", "variables", "verb", "shape"), VALID)
def test_valid_template(
    text: str,
    segments: tuple[Segment, ...],
    variables: tuple[Variable, ...],
    verb: str | None,
    shape: str,
) -> None:
    template = parse_template(text)
    assert template == PathTemplate(text, segments, variables, verb)
    assert template.shape == shape


@pytest.mark.parametrize(
    ("short", "explicit"),
    [
        ("/v1/{name}", "/v1/{name=*}"),
        ("/v1/{a.b}/x", "/v1/{a.b=*}/x"),
        ("/{a}:go", "/{a=*}:go"),
    ],
)
def test_bare_variable_is_shorthand_for_star(short: str, explicit: str) -> None:
    a, b = parse_template(short), parse_template(explicit)
    assert (a.segments, a.variables, a.verb) == (b.segments, b.variables, b.verb)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("/v1/{a}", ["a"]),
        ("/v1/{a.b.c}", ["a.b.c"]),
        ("/{x}/{y.z}/{w=**}", ["x", "y.z", "w"]),
    ],
)
def test_variable_name_joins_field_path(text: str, names: list[str]) -> None:
    assert [v.name for v in parse_template(text).variables] == names


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/v1/{a}", "/v1/{b}"),
        ("/v1/{a}", "/v1/*"),
        ("/v1/{a=**}", "/v1/**"),
        ("/v1/{a=x/*}", "/v1/x/{b}"),
        ("/v1/{a}:go", "/v1/*:go"),
    ],
)
def test_equal_shapes_for_differently_named_templates(first: str, second: str) -> None:
    assert parse_template(first).shape == parse_template(second).shape


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/v1/{a}", "/v1/{a}:go"),
        ("/v1/{a}:go", "/v1/{a}:stop"),
        ("/v1/*", "/v1/**"),
        ("/v1/x", "/v1/*"),
        ("/v1/x", "/v1/X"),
    ],
)
def test_different_shapes(first: str, second: str) -> None:
    assert parse_template(first).shape != parse_template(second).shape


# template -> (offset, fragment the problem must contain)
INVALID: list[tuple[str, int, str]] = [
    # the leading slash
    ("", 0, "expected '/', found end of template"),
    ("v1/shelves", 0, "expected '/', found 'v'"),
    ("{name}", 0, "expected '/'"),
    # empty segments, including the root and a trailing slash
    ("/", 1, "expected a literal segment, found end of template"),
    ("/v1/", 4, "expected a literal segment, found end of template"),
    ("/v1//shelves", 4, "expected a literal segment, found '/'"),
    ("//", 1, "expected a literal segment, found '/'"),
    # braces
    ("/v1/{name", 9, "expected '}', found end of template"),
    ("/v1/{name=*", 11, "expected '}', found end of template"),
    ("/v1/{name=shelves/*", 19, "expected '}', found end of template"),
    ("/v1/{name=}", 10, "expected a literal segment, found '}'"),
    ("/v1/{name=*/}", 12, "expected a literal segment, found '}'"),
    ("/v1/name}", 8, "unexpected '}'"),
    ("/v1/{name}}", 10, "unexpected '}'"),
    ("/v1/{}", 5, "expected a field name"),
    # field paths
    ("/v1/{a.}", 7, "expected a field name"),
    ("/v1/{a..b}", 7, "expected a field name"),
    ("/v1/{.a}", 5, "expected a field name"),
    ("/v1/{1a}", 5, "expected a field name"),
    ("/v1/{field-name}", 10, "expected '}', found '-'"),
    ("/v1/{a b}", 6, "expected '}', found ' '"),
    # nesting
    ("/v1/{a={b}}", 7, "variables cannot be nested"),
    ("/v1/{a=x/{b}}", 9, "variables cannot be nested"),
    ("/v1/{a={b=*}}", 7, "variables cannot be nested"),
    # one binding per field
    ("/v1/{a}/{a}", 0, "field 'a' is bound twice"),
    ("/v1/{a.b}/x/{a.b=**}", 0, "field 'a.b' is bound twice"),
    # '**' only as the very last segment
    ("/v1/**/x", 0, "'**' is only allowed as the last segment"),
    ("/**/**", 0, "'**' is only allowed as the last segment"),
    ("/v1/{a=**}/x", 0, "'**' is only allowed as the last segment"),
    ("/v1/{a=**/x}", 0, "'**' is only allowed as the last segment"),
    ("/v1/{a=**}/{b}", 0, "'**' is only allowed as the last segment"),
    ("/v1/***", 6, "unexpected '*'"),
    # wildcards are whole segments
    ("/v1/a*", 5, "unexpected '*'"),
    ("/v1/*a", 5, "unexpected 'a'"),
    ("/v1/**a", 6, "unexpected 'a'"),
    ("/v1/x{a}", 5, "unexpected '{'"),
    ("/v1/{a}x", 7, "unexpected 'x'"),
    # verbs
    ("/v1/{a}:", 8, "expected a literal segment, found end of template"),
    ("/v1:*", 4, "expected a literal segment, found '*'"),
    ("/v1/x:a:b", 7, "unexpected ':'"),
    ("/v1/a:b/c", 7, "unexpected '/'"),
    ("/v1:{a}", 4, "expected a literal segment, found '{'"),
    (":verb", 0, "expected '/'"),
    # characters outside pchar, and broken percent-encodings
    ("/v1/a?b", 5, "unexpected '?'"),
    ("/v1/a#b", 5, "unexpected '#'"),
    ("/v1/a b", 5, "unexpected ' '"),
    ("/v1/café", 7, "unexpected 'é'"),
    ("/v1/%", 4, "expected a literal segment, found '%'"),
    ("/v1/%2", 4, "expected a literal segment, found '%'"),
    ("/v1/%zz", 4, "expected a literal segment, found '%'"),
    ("/v1/a%2z", 5, "unexpected '%'"),
    ("/v1/x\n", 5, "unexpected '\\n'"),
]


@pytest.mark.parametrize(("text", "offset", "problem"), INVALID)
def test_invalid_template(text: str, offset: int, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(text)
    error = caught.value
    assert problem in error.problem
    assert error.position == offset
    assert error.template == text
    # the message names the template, the offset and the problem
    assert str(error) == f"invalid path template {text!r} at offset {offset}: {error.problem}"


def test_template_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected '/'"):
        parse_template("nope")


def test_variable_indices_address_the_flattened_segments() -> None:
    template = parse_template("/v1/{parent=projects/*/locations/*}/things/{thing}:frob")
    rendered = [
        "/".join(str(s) for s in template.segments[v.start : v.end]) for v in template.variables
    ]
    assert rendered == ["projects/*/locations/*", "*"]


# literals drawn from the pchars the grammar allows (':' excluded: it opens the verb)
_LITERAL_CHARS = "ABCXYZabcxyz0189-._~!$&'()+,;=@"
_literals = st.text(alphabet=_LITERAL_CHARS, min_size=1, max_size=8) | st.sampled_from(
    ["%2F", "%C3%A9", "a%20b", "%e2%82%ac"]
)


@given(
    segments=st.lists(_literals, min_size=1, max_size=6),
    verb=st.none() | st.text(alphabet=_LITERAL_CHARS, min_size=1, max_size=6),
)
def test_literal_only_templates_parse_to_themselves(segments: list[str], verb: str | None) -> None:
    text = "/" + "/".join(segments) + (f":{verb}" if verb is not None else "")
    template = parse_template(text)
    assert template.segments == tuple(lit(s) for s in segments)
    assert template.variables == ()
    assert template.verb == verb
    assert template.shape == text


# each generated part -> the same part with its variable erased
_ERASED = {"lit": "lit", "*": "*", "{v}": "*", "{v=a/*}": "a/*", "{v=*/b/*}": "*/b/*"}
_TAILS = {"": "", "/**": "/**", "/{t=**}": "/**"}
_parts = st.sampled_from(sorted(_ERASED))


@given(parts=st.lists(_parts, min_size=1, max_size=6), tail=st.sampled_from(sorted(_TAILS)))
def test_generated_templates_erase_to_their_shape(parts: list[str], tail: str) -> None:
    # give each variable its own field so the template is valid
    named = [p.replace("{v", f"{{v{i}") for i, p in enumerate(parts)]
    text = "/" + "/".join(named) + tail
    template = parse_template(text)
    assert template.shape == "/" + "/".join(_ERASED[p] for p in parts) + _TAILS[tail]
    assert len(template.variables) == sum(p.startswith("{") for p in parts) + ("{" in tail)
    for variable in template.variables:
        assert 0 <= variable.start < len(template.segments)
        if variable.end is None:
            assert template.segments[-1].kind is SegmentKind.MULTI
        else:
            assert variable.start < variable.end <= len(template.segments)
