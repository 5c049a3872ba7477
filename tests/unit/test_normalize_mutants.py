"""edge.routing.normalize, pinned where mutation testing found the tests loose.

The refusals' messages go to clients word for word, so they are held exactly here (the
table in test_path_normalize.py checks a few words of each). ``unescape`` normalises the
unescaped path again, under the route's own merge_slashes rule, both ways.
"""

from __future__ import annotations

import pytest

from edge.routing.normalize import BadPath, check_proxied_path, normalize_path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("api/x", "the request path must start with '/'"),
        ("/a%zz", "the request path has a '%' that does not start a %XX escape"),
        ("/a b", "the request path has a control character, a space or a '#'"),
        ("/a#b", "the request path has a control character, a space or a '#'"),
    ],
)
def test_refusals_say_exactly_why(raw: str, message: str) -> None:
    with pytest.raises(BadPath) as refused:
        normalize_path(raw)
    assert str(refused.value) == message


PROXY_DEFAULTS = {"escaped_slashes": "reject", "path_parameters": False, "merge_slashes": True}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/a%2Fb", "encoded slashes (%2F, %5C) are not allowed in proxied paths"),
        ("/api/a;b", "path parameters (';') are not allowed in proxied paths"),
        ("/api/%2541", "double-encoded characters (%25XX) are not allowed in proxied paths"),
    ],
)
def test_proxied_refusals_say_exactly_why(path: str, message: str) -> None:
    with pytest.raises(BadPath) as refused:
        check_proxied_path(path, **PROXY_DEFAULTS)  # type: ignore[arg-type]
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("merge_slashes", "expected"),
    [(True, "/api/a/b/c"), (False, "/api/a//b/c")],
)
def test_unescaped_slashes_follow_the_routes_merge_rule(merge_slashes: bool, expected: str) -> None:
    path = check_proxied_path(
        "/api/a%2F%2Fb%5Cc",
        escaped_slashes="unescape",
        path_parameters=False,
        merge_slashes=merge_slashes,
    )
    assert path == expected
