"""The one path normalisation rule (edge.routing.normalize), as a table and as properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.routing import normalize
from edge.routing.normalize import BadPath, check_proxied_path, normalize_path

NORMALISED = [
    ("/", "/"),
    ("/v1/books", "/v1/books"),
    ("/api/%61dmin/x", "/api/admin/x"),  # unreserved escapes are decoded
    ("/api/%41%7e%2D%2e%5F", "/api/A~-._"),
    ("/api/a%2Fb", "/api/a%2Fb"),  # reserved escapes are kept as sent (case too)
    ("/api/a%2fb", "/api/a%2fb"),
    ("/api/%25", "/api/%25"),
    ("/api//admin///x", "/api/admin/x"),
    ("//", "/"),
    ("/a/", "/a/"),
    ("/a/./b", "/a/b"),
    ("/a/b/.", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/../../../b", "/b"),  # never above the root
    ("/..", "/"),
    ("/public/../admin/x", "/admin/x"),
    ("/public/%2e%2E/admin", "/admin"),  # dot segments hidden behind escapes
    ("/public/.%2E/admin", "/admin"),
    ("/a\\b\\..\\c", "/a/c"),  # a backslash is a slash
    ("/a.b/..c/.d", "/a.b/..c/.d"),  # dots inside names are names
    ("/caf\xc3\xa9", "/caf%C3%A9"),  # raw UTF-8 bytes (latin-1 text) are escaped
    ("/x;y=1/z", "/x;y=1/z"),
    ("/v1/books:search", "/v1/books:search"),
    ("/.well-known/x", "/.well-known/x"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISED)
def test_normalised_form(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


def test_merging_slashes_can_be_turned_off() -> None:
    assert normalize_path("/a//b/./c", merge_slashes=False) == "/a//b/c"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("api/x", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a%", "%XX"),
        ("/a%2", "%XX"),
        ("/a%zz", "%XX"),
        ("/a%%41", "%XX"),
        ("/a b", "space"),
        ("/a\x00b", "control"),
        ("/a\x7fb", "control"),
        ("/a\tb", "control"),
        ("/a#b", "'#'"),
    ],
)
def test_refused_paths(raw: str, words: str) -> None:
    with pytest.raises(BadPath, match=words):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("path", "rules", "expected"),
    [
        ("/api/x", {}, "/api/x"),
        ("/api/a%2Fb", {"escaped_slashes": "keep"}, "/api/a%2Fb"),
        ("/api/a%2Fb", {"escaped_slashes": "unescape"}, "/api/a/b"),
        ("/api/a%5c..%5Cadmin", {"escaped_slashes": "unescape"}, "/api/admin"),
        ("/api/x;v=1", {"path_parameters": True}, "/api/x;v=1"),
    ],
)
def test_proxied_paths_passed(path: str, rules: dict[str, object], expected: str) -> None:
    settings: dict[str, object] = {
        "escaped_slashes": "reject",
        "path_parameters": False,
        "merge_slashes": True,
    }
    settings.update(rules)
    assert check_proxied_path(path, **settings) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/api/admin%2Fx", "encoded slashes"),
        ("/api/admin%2fx", "encoded slashes"),
        ("/api/admin%5Cx", "encoded slashes"),
        ("/api/admin;x/y", "path parameters"),
        ("/api/%2561dmin", "double-encoded"),
    ],
)
def test_proxied_paths_refused_by_default(path: str, words: str) -> None:
    with pytest.raises(BadPath, match=words):
        check_proxied_path(
            path, escaped_slashes="reject", path_parameters=False, merge_slashes=True
        )


# -- properties ---------------------------------------------------------------------------

UNRESERVED = string.ascii_letters + string.digits + "-._~"
segment = st.text(alphabet=UNRESERVED + "!$&'()*+,;=:@", max_size=8)
clean_paths = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
any_paths = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40).map(
    lambda text: "/" + text
)


def _escape_some(path: str, choices: list[bool], upper: list[bool]) -> str:
    """``path`` with some unreserved characters written as %XX (either hex case)."""
    out = []
    for index, char in enumerate(path):
        if char in UNRESERVED and choices[index % len(choices)]:
            hex_ = f"{ord(char):02X}"
            out.append("%" + (hex_ if upper[index % len(upper)] else hex_.lower()))
        else:
            out.append(char)
    return "".join(out)


@given(any_paths)
def test_normalising_is_idempotent_and_leaves_no_ambiguity(raw: str) -> None:
    try:
        path = normalize_path(raw)
    except BadPath:
        return
    assert normalize_path(path) == path
    assert path.startswith("/")
    assert "//" not in path
    assert "\\" not in path
    segments = path.split("/")
    assert "." not in segments and ".." not in segments
    assert all(32 < ord(char) < 127 for char in path)


@given(any_paths)
def test_the_fast_path_agrees_with_the_full_rule(raw: str) -> None:
    """The shortcut for clean paths must never skip work the full rule would do."""
    try:
        fast = normalize_path(raw)
    except BadPath:
        with pytest.raises(BadPath):
            normalize._resolve_segments(normalize._canonical_characters(raw), True)
        return
    assert fast == normalize._resolve_segments(normalize._canonical_characters(raw), True)


@given(
    clean_paths,
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_every_spelling_of_a_path_is_one_path(
    path: str, choices: list[bool], upper: list[bool]
) -> None:
    """However a client escapes unreserved characters, routes see the same path."""
    assert normalize_path(_escape_some(path, choices, upper)) == normalize_path(path)
