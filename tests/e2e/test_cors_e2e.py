"""CORS against a running gateway: preflights answered at the door, answers labelled.

A preflight is the gateway's own business: it is answered before auth, limits and
breakers, and never reaches an upstream (the recording upstreams prove it). Actual
answers carry the route's CORS headers, errors included, and never for a refused origin.
"""

from __future__ import annotations

from typing import Any

from recording import handshake, start_edge, token

PAGE = "https://app.example.com"
CORS = {
    "allow_origins": [PAGE, "https://*.partner.example"],
    "allow_credentials": True,
    "max_age": "10m",
}
STRICT_LIMIT = {"algorithm": "token_bucket", "limit": 1, "period": "1h", "key": ["ip"]}


def preflight(method: str = "POST", headers: str = "content-type, authorization") -> dict[str, str]:
    return {
        "origin": PAGE,
        "access-control-request-method": method,
        "access-control-request-headers": headers,
    }


def _policies(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"match": ["edgetest.v1.KitchenService.Inspect"], "auth": {"require": "token"}},
        {"match": ["proxy:/api/admin"], "auth": {"require": "token"}},
        *extra,
    ]


async def test_a_preflight_is_answered_by_the_gateway_and_reaches_nothing() -> None:
    limited = {"match": ["edgetest.v1.KitchenService.Echo"], "rate_limits": [STRICT_LIMIT]}
    async with start_edge(cors=CORS, policies=_policies(limited)) as edge:
        async with edge.gateway.client() as client:
            for _ in range(3):  # a limit of 1 an hour: preflights never count
                answer = await client.options("/v1/kitchen", headers=preflight())
                assert answer.status_code == 204, answer.text
                assert answer.content == b""
                assert "content-length" not in answer.headers
                assert answer.headers["access-control-allow-origin"] == PAGE
                assert answer.headers["access-control-allow-credentials"] == "true"
                assert answer.headers["access-control-max-age"] == "600"
                assert "POST" in answer.headers["access-control-allow-methods"]
                assert "authorization" in answer.headers["access-control-allow-headers"]
                assert "Origin" in answer.headers["vary"]
            # a route that needs a token: its preflight needs none (a browser sends none)
            answer = await client.options("/v1/inspect", headers=preflight())
            assert answer.status_code == 204
            answer = await client.options("/api/admin/x", headers=preflight("DELETE"))
            assert answer.status_code == 204
            # the real request is still limited: the first passes, the second is refused
            first = await client.post("/v1/kitchen", json={}, headers={"origin": PAGE})
            second = await client.post("/v1/kitchen", json={}, headers={"origin": PAGE})
    assert first.status_code == 200 and second.status_code == 429
    assert not [m for m, _ in edge.kitchen.received if m.endswith("/Inspect")]
    assert edge.http.requests == []  # the proxy's upstream saw none of the preflights


async def test_answers_errors_included_carry_the_routes_cors_headers() -> None:
    async with start_edge(cors=CORS, policies=_policies()) as edge:
        async with edge.gateway.client() as client:
            ok = await client.post(
                "/v1/kitchen", json={"stringValue": "x"}, headers={"origin": PAGE}
            )
            refused = await client.post("/v1/inspect", json={}, headers={"origin": PAGE})
            unknown = await client.get("/nowhere", headers={"origin": PAGE})
            wrong = await client.get("/v1/inspect", headers={"origin": PAGE})
            proxied = await client.get("/api/x", headers={"origin": "https://a.b.partner.example"})
    for answer in (ok, refused, unknown, wrong):
        assert answer.headers["access-control-allow-origin"] == PAGE, answer
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "grpc-status" in answer.headers["access-control-expose-headers"]
        assert answer.headers["vary"] == "Origin"
    assert (ok.status_code, refused.status_code, unknown.status_code, wrong.status_code) == (
        200,
        401,
        404,
        405,
    )
    assert proxied.status_code == 200
    assert proxied.headers["access-control-allow-origin"] == "https://a.b.partner.example"


async def test_a_refused_origin_gets_no_cors_headers_and_never_a_5xx() -> None:
    hostile = [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://partner.example",  # the apex is not *.partner.example
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",
        "HTTPS://APP.EXAMPLE.COM",
        "null",
        "https://x.partner.example.evil",
    ]
    async with start_edge(cors=CORS, policies=_policies()) as edge:
        async with edge.gateway.client() as client:
            for origin in hostile:
                answer = await client.options(
                    "/v1/kitchen", headers={**preflight(), "origin": origin}
                )
                assert answer.status_code == 403, origin
                assert not [h for h in answer.headers if h.startswith("access-control-")], origin
                actual = await client.post("/v1/kitchen", json={}, headers={"origin": origin})
                assert actual.status_code == 200, origin  # the browser blocks, not the server
                assert "access-control-allow-origin" not in actual.headers, origin
                assert actual.headers["vary"] == "Origin"
            # a method or a header not allowed refuses the preflight too
            for asked in (preflight("TRACE"), preflight(headers="x-custom-secret")):
                answer = await client.options("/v1/kitchen", headers=asked)
                assert answer.status_code == 403
                assert "access-control-allow-origin" not in answer.headers


async def test_a_policy_cors_replaces_the_global_one_for_its_routes() -> None:
    open_api = {"match": ["proxy:/api"], "cors": {"allow_origins": ["*"]}}
    async with start_edge(cors=CORS, policies=_policies(open_api)) as edge:
        async with edge.gateway.client() as client:
            anywhere = await client.get("/api/x", headers={"origin": "https://anyone.example"})
            kitchen = await client.post(
                "/v1/kitchen", json={}, headers={"origin": "https://anyone.example"}
            )
    assert anywhere.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in kitchen.headers


async def test_without_cors_a_proxy_route_passes_the_preflight_to_its_upstream() -> None:
    async with start_edge(policies=_policies()) as edge:
        async with edge.gateway.client() as client:
            answer = await client.options("/api/x", headers=preflight())
            plain = await client.post("/v1/kitchen", json={}, headers={"origin": PAGE})
    assert answer.status_code == 200  # the upstream's own answer
    assert [(m, p) for m, p, _ in edge.http.requests] == [("OPTIONS", "/api/x")]
    assert "access-control-allow-origin" not in plain.headers


async def test_the_upstreams_own_cors_headers_are_replaced_by_the_gateways() -> None:
    async with start_edge(cors=CORS, policies=_policies()) as edge:
        async with edge.gateway.client() as client:
            answer = await client.get("/api/x", params={"cors": "1"}, headers={"origin": PAGE})
    # the upstream said "*" and exposed its own header: one Allow-Origin (the gateway's),
    # the gateway's Expose-Headers, and one merged Vary
    assert answer.headers.get_list("access-control-allow-origin") == [PAGE]
    assert "x-upstream-secret" not in answer.headers["access-control-expose-headers"]
    assert answer.headers.get_list("vary") == ["Accept-Encoding, Origin"]


async def test_a_token_does_not_change_the_preflight() -> None:
    async with start_edge(cors=CORS, policies=_policies()) as edge:
        async with edge.gateway.client() as client:
            bare = await client.options("/v1/inspect", headers=preflight())
            with_token = await client.options(
                "/v1/inspect", headers={**preflight(), "authorization": f"Bearer {token()}"}
            )
            bad_token = await client.options(
                "/v1/inspect", headers={**preflight(), "authorization": "Bearer nonsense"}
            )
    assert bare.status_code == with_token.status_code == bad_token.status_code == 204
    for answer in (bare, with_token, bad_token):  # no 401 challenge: auth never ran
        assert answer.headers["access-control-allow-origin"] == PAGE
        assert "www-authenticate" not in answer.headers


async def test_websockets_may_take_their_origins_from_the_cors_section() -> None:
    """``websocket.allowed_origins: [cors]``: one list of origins serves both."""
    websocket = {"allowed_origins": ["cors"]}
    async with start_edge(cors=CORS, websocket=websocket, policies=_policies()) as edge:
        url = edge.gateway.base_url.replace("http://", "ws://")
        url += "/ws/edgetest.v1.KitchenService/Echo"
        subprotocols = ["edge.grpc-ws.v1"]
        for origin, expected in [
            (PAGE, 101),
            ("https://deep.sub.partner.example", 101),
            ("https://evil.example", 403),
            ("https://partner.example", 403),
        ]:
            status, _, _ = await handshake(
                url,
                origin=origin,
                subprotocols=subprotocols,  # type: ignore[arg-type]
            )
            assert status == expected, origin
