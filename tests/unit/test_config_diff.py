"""What a reload would change, told from the running config and routes and the new ones."""

from __future__ import annotations

from typing import Any

from edge.config_diff import what_changes


def route(method: str, path: str, rpc: str, upstream: str = "u", timeout: float = 5.0) -> Any:
    return {"method": method, "path": path, "rpc": rpc, "upstream": upstream, "timeout": timeout}


RUNNING = {
    "server": {"bind": ["127.0.0.1:8080"], "send_timeout": 60.0},
    "upstreams": {"u": {"address": "10.0.0.1:50051"}, "gone": {"address": "10.0.0.9:1"}},
    "http_upstreams": {},
    "proxy_routes": [{"prefix": "/old", "upstream": "web"}],
    "policies": [{"match": ["a.*"], "rate_limits": []}],
    "cors": None,
}
ROUTES = [route("GET", "/v1/a", "a.A.Get"), route("GET", "/v1/b", "b.B.Get")]


def test_nothing_changed_is_no_line() -> None:
    assert what_changes(RUNNING, ROUTES, RUNNING, ROUTES) == []


def test_every_kind_of_change_is_one_line() -> None:
    new = {
        "server": {"bind": ["0.0.0.0:9090"], "send_timeout": 5.0},
        "upstreams": {"u": {"address": "10.0.0.2:50051"}, "fresh": {"address": "10.0.0.3:1"}},
        "http_upstreams": {},
        "proxy_routes": [{"prefix": "/new", "upstream": "web"}],
        "policies": [{"match": ["a.*"], "rate_limits": [{"limit": 1}]}],
        "cors": {"allow_origins": ["https://a.example"]},
    }
    routes = [
        route("GET", "/v1/a", "a.A.Get", upstream="fresh"),
        route("POST", "/v1/c", "c.C.Make"),
        {**route("GET", "/v1/b", "b.B.Get"), "timeout": 9.0},
    ]
    assert what_changes(RUNNING, ROUTES, new, routes) == [
        "route added: POST /v1/c -> c.C.Make @ u",
        "route changed: GET /v1/a: a.A.Get @ u -> a.A.Get @ fresh",
        "route changed: GET /v1/b: timeout 5.0 -> 9.0",
        "upstream added: fresh",
        "upstream removed: gone",
        "upstream changed: u (address)",
        "proxy route added: /new",
        "proxy route removed: /old",
        "policy changed: ['a.*'] (rate_limits)",
        "cors changed",
        "server changed: server.send_timeout",
        "needs a restart (a reload keeps the running value): server.bind",
    ]


def test_a_removed_route_names_where_it_went() -> None:
    assert what_changes(RUNNING, ROUTES, RUNNING, ROUTES[:1]) == [
        "route removed: GET /v1/b (was b.B.Get @ u)"
    ]
