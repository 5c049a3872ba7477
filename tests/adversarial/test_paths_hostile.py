"""Hostile paths: every spelling that could make the gateway and an upstream disagree.

The shape under attack: a public proxy prefix ``/api`` with a protected nested prefix
``/api/admin``. Each request is sent byte for byte (no client normalises it first) and
must either be refused (400, or 401 by the protected route's policy) without reaching the
upstream, or be forwarded with exactly the normalised path that was matched.
"""

from __future__ import annotations

import json

import pytest
import websockets
from recording import body_of, raw_request, start_edge, status_of, token

pytestmark = pytest.mark.e2e


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: edge.test", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# Paths that mean /api/admin/... to some upstream: the protected route's policy applies
# (401 without a token) and nothing reaches the upstream.
REACHES_ADMIN = [
    "/api/%61dmin/x",
    "/api/%61%64%6D%69%6E/x",
    "/api//admin/x",
    "/api/./admin/x",
    "/api/x/../admin/x",
    "/api/x/%2e%2e/admin/x",
    "/api/x/.%2E/admin/x",
    "/api\\admin\\x",
    "/api/x\\..\\admin/x",
    "/public/../api/admin/x",
    "/api/admin",
]

# Paths an upstream could read as /api/admin/... but the gateway cannot know how: 400.
AMBIGUOUS = [
    "/api/admin%2Fx",
    "/api/admin%2fx",
    "/api/x%2F..%2Fadmin/x",
    "/api/admin%5Cx",
    "/api/admin;jsessionid=1/x",
    "/api/admin;/x",
    "/api/%2561dmin/x",
]

# Paths no server should see at all.
MALFORMED = ["/api/%zz", "/api/%", "/api/a%2", "/api/a#b"]


@pytest.mark.parametrize("path", REACHES_ADMIN)
async def test_spellings_of_a_protected_path_get_its_policy(path: str) -> None:
    async with start_edge() as edge:
        answer = await raw_request(edge.gateway.port, get(path))
        allowed = await raw_request(
            edge.gateway.port, get(path, f"Authorization: Bearer {token()}")
        )
    assert status_of(answer) == 401, answer
    assert json.loads(body_of(answer))["code"] == 16
    assert status_of(allowed) == 200
    # only the authorised request arrived, with the normalised path that was matched
    assert len(edge.http.paths()) == 1
    forwarded = edge.http.paths()[0]
    assert forwarded.startswith("/api/admin")
    assert forwarded in ("/api/admin/x", "/api/admin")


@pytest.mark.parametrize("path", AMBIGUOUS + MALFORMED)
async def test_ambiguous_and_malformed_paths_are_refused(path: str) -> None:
    async with start_edge() as edge:
        answer = await raw_request(edge.gateway.port, get(path, f"Authorization: Bearer {token()}"))
    assert status_of(answer) == 400, answer
    status = json.loads(body_of(answer))
    assert status["code"] == 3
    assert set(status) <= {"code", "message", "details"}
    assert edge.http.requests == []
    assert edge.kitchen.received == []


@pytest.mark.parametrize("path", ["/api/a\x01b", "/api/a\x7fb", "/api/a b"])
async def test_control_characters_never_get_past_the_parser(path: str) -> None:
    async with start_edge() as edge:
        answer = await raw_request(edge.gateway.port, get(path))
    assert status_of(answer) == 400  # Hypercorn's HTTP parser, before any of our code
    assert edge.http.requests == []


async def test_the_upstream_gets_exactly_the_matched_path() -> None:
    async with start_edge() as edge:
        answer = await raw_request(edge.gateway.port, get("/api/%7Euser/caf%c3%a9/./x?q=%61"))
    assert status_of(answer) == 200
    assert edge.http.paths() == ["/api/~user/caf%c3%a9/x"]
    assert json.loads(body_of(answer))["query"] == "q=%61"  # the query is passed as sent


async def test_unescape_mode_matches_and_forwards_the_unescaped_path() -> None:
    paths = {"merge_slashes": True, "escaped_slashes": "unescape"}
    async with start_edge(paths=paths) as edge:
        refused = await raw_request(edge.gateway.port, get("/api/x%2F..%2Fadmin/x"))
        passed = await raw_request(
            edge.gateway.port,
            get("/api/x%2F..%2Fadmin/x", f"Authorization: Bearer {token()}"),
        )
    assert status_of(refused) == 401
    assert status_of(passed) == 200
    assert edge.http.paths() == ["/api/admin/x"]


async def test_transcoded_routes_see_the_normalised_path() -> None:
    async with start_edge() as edge:
        spelled = await raw_request(edge.gateway.port, get("/v1//kitchen/./%6Fpen"))
        # google.api.http: %2F inside a single-segment variable is data, not a separator
        slash = await raw_request(edge.gateway.port, get("/v1/kitchen/a%2Fb"))
    assert status_of(spelled) == 200
    assert json.loads(body_of(spelled))["stringValue"] == "open"
    assert status_of(slash) == 200
    assert json.loads(body_of(slash))["stringValue"] == "a/b"


@pytest.mark.parametrize("path", ["/api/%61dmin/x", "/api//admin/x", "/api/x/../admin/x"])
async def test_websocket_paths_get_the_same_rule(path: str) -> None:
    async with start_edge() as edge:
        url = f"ws://127.0.0.1:{edge.gateway.port}{path}"
        origin = f"http://127.0.0.1:{edge.gateway.port}"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin=origin):  # type: ignore[arg-type]
                pass
        async with websockets.connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Bearer {token()}"},
        ) as socket:
            hello = json.loads(await socket.recv())
    assert refused.value.response.status_code == 401
    assert hello["path"] == "/api/admin/x"
    assert edge.http.paths() == ["/api/admin/x"]


async def test_websocket_with_an_encoded_slash_is_refused() -> None:
    async with start_edge() as edge:
        url = f"ws://127.0.0.1:{edge.gateway.port}/api/admin%2Fx"
        origin = f"http://127.0.0.1:{edge.gateway.port}"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                additional_headers={"Authorization": f"Bearer {token()}"},
            ):
                pass
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body or b"{}")["code"] == 3
    assert edge.http.requests == []
