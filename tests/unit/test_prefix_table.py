"""The proxy's prefix table (pure): whole segments only, longest prefix first, filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import HttpUpstreamConfig, ProxyRouteConfig
from edge.routing.prefix_table import ProxyTable, compile_proxy_routes

UPSTREAMS = {
    "a": HttpUpstreamConfig(url="http://127.0.0.1:1", timeout=5.0),
    "b": HttpUpstreamConfig(url="http://127.0.0.1:2"),
}


def table(*routes: dict[str, object]) -> ProxyTable:
    return compile_proxy_routes([ProxyRouteConfig(**r) for r in routes], UPSTREAMS)  # type: ignore[arg-type]


def name(found: object) -> str | None:
    return getattr(found, "name", None)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api", "proxy:/api"),
        ("/api/", "proxy:/api"),
        ("/api/x/y", "proxy:/api"),
        ("/apix", "proxy:/"),  # never part of a segment
        ("/api/v2", "proxy:/api/v2"),  # the longest prefix wins
        ("/api/v2/books", "proxy:/api/v2"),
        ("/api/v2x", "proxy:/api"),
        ("/", "proxy:/"),
        ("/other", "proxy:/"),
    ],
    ids=lambda v: str(v),
)
def test_longest_whole_segment_prefix_wins(path: str, expected: str) -> None:
    found = table(
        {"prefix": "/", "upstream": "b"},
        {"prefix": "/api", "upstream": "a"},
        {"prefix": "/api/v2", "upstream": "b"},
    ).match(path, "example.com", "GET", websocket=False)
    assert name(found) == expected


def test_no_root_route_means_no_match_outside_the_prefixes() -> None:
    routes = table({"prefix": "/api", "upstream": "a"})
    assert routes.match("/elsewhere", "h", "GET", websocket=False) is None
    assert routes.match("", "h", "GET", websocket=False) is None
    assert not ProxyTable([])


@pytest.mark.parametrize(
    ("host", "method", "websocket", "expected"),
    [
        ("api.example.com", "GET", False, "proxy:/x"),  # the first route that accepts
        ("api.example.com:8443", "GET", False, "proxy:/x"),  # a configured bare host: any port
        ("other.example.com", "GET", False, "proxy:/x"),  # the second, unfiltered
        ("api.example.com", "DELETE", False, None),  # neither accepts DELETE
        ("api.example.com", "POST", True, None),  # neither relays WebSockets
    ],
)
def test_host_and_method_filters_in_config_order(
    host: str, method: str, websocket: bool, expected: str | None
) -> None:
    routes = table(
        {
            "prefix": "/x",
            "upstream": "a",
            "host": "api.example.com",
            "methods": ["get"],
            "websocket": False,
        },
        {"prefix": "/x", "upstream": "b", "methods": ["GET", "POST"], "websocket": False},
    )
    found = routes.match("/x/y", host, method, websocket)
    assert name(found) == expected
    if found is not None:
        assert found.upstream == ("a" if host.startswith("api.") else "b")


def test_a_bracketed_ipv6_host_is_matched_without_its_port() -> None:
    routes = table({"prefix": "/x", "upstream": "a", "host": "[::1]"})
    assert routes.match("/x", "[::1]:8080", "GET", websocket=False) is not None
    assert routes.match("/x", "[::2]:8080", "GET", websocket=False) is None


def test_websockets_only_on_routes_that_allow_them() -> None:
    routes = table(
        {"prefix": "/ws", "upstream": "a", "websocket": False},
        {"prefix": "/ws", "upstream": "b", "websocket": True},
    )
    assert routes.match("/ws/chat", "h", "GET", websocket=True).upstream == "b"  # type: ignore[union-attr]
    assert routes.match("/ws/chat", "h", "GET", websocket=False).upstream == "a"  # type: ignore[union-attr]
    assert compile_proxy_routes([], UPSTREAMS).match("/ws", "h", "GET", websocket=True) is None


@pytest.mark.parametrize(
    ("route", "path", "upstream_path"),
    [
        ({"prefix": "/api"}, "/api/books", "/api/books"),
        ({"prefix": "/api", "strip_prefix": True}, "/api/books", "/books"),
        ({"prefix": "/api", "strip_prefix": True}, "/api", "/"),
        ({"prefix": "/api/", "rewrite_prefix": "/v1/"}, "/api/books", "/v1/books"),
        ({"prefix": "/api", "rewrite_prefix": "/"}, "/api/books", "/books"),
        ({"prefix": "/api", "strip_prefix": True}, "/api/a%2Fb", "/a%2Fb"),  # still encoded
    ],
)
def test_the_upstream_path_replaces_only_the_prefix(
    route: dict[str, object], path: str, upstream_path: str
) -> None:
    found = table({**route, "upstream": "a"}).match(path, "h", "GET", websocket=False)
    assert found is not None
    assert found.upstream_path(path) == upstream_path


def test_a_route_timeout_defaults_to_its_upstream() -> None:
    routes = table(
        {"prefix": "/a", "upstream": "a"}, {"prefix": "/b", "upstream": "a", "timeout": 1}
    )
    assert routes.match("/a", "h", "GET", websocket=False).timeout == 5.0  # type: ignore[union-attr]
    assert routes.match("/b", "h", "GET", websocket=False).timeout == 1.0  # type: ignore[union-attr]


segment = st.text(alphabet="abcxyz-", min_size=1, max_size=4)


@given(
    st.lists(segment, max_size=5), st.lists(st.lists(segment, min_size=1, max_size=3), max_size=6)
)
def test_match_is_the_longest_configured_whole_segment_prefix(
    path_parts: list[str], prefixes: list[list[str]]
) -> None:
    """Against a plain scan of every route: same answer for any path and route set."""
    configured = sorted({"/" + "/".join(p) for p in prefixes})
    routes = table(*({"prefix": p, "upstream": "a"} for p in configured))
    path = "/" + "/".join(path_parts)
    covering = [p for p in configured if path == p or path.startswith(p + "/")]
    expected = max(covering, key=len, default=None)
    found = routes.match(path, "h", "GET", websocket=False)
    assert (found.prefix if found else None) == expected
