"""Hostile WebSocket clients: sockets that never authenticate, or never say anything.

A socket costs the gateway a file descriptor, a few tasks and buffers for as long as it is
open. On a route that needs credentials, a handshake without them is refused (401) unless
``websocket.first_frame_auth`` is on; with it on, the socket must bring its token in the
first frame, within ``websocket.first_frame_timeout``, or it is closed UNAUTHENTICATED
(4016). Every test checks the close code and the status frame, and that the kitchen
upstream never heard of a socket the gateway refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from recording import start_edge, token
from resources import open_fds
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.e2e

PROTOCOL = "edge.grpc-ws.v1"
GUARDED = "/ws/edgetest.v1.KitchenService/Inspect"  # start_edge: needs a token
PUBLIC = "/ws/edgetest.v1.KitchenService/Echo"


def ws_url(edge: Any, path: str) -> str:
    return f"ws://127.0.0.1:{edge.gateway.port}{path}"


def open_socket(edge: Any, path: str, **kwargs: Any) -> Any:
    kwargs.setdefault("subprotocols", [PROTOCOL])
    return connect(ws_url(edge, path), open_timeout=5, **kwargs)


async def frames_until_close(ws: ClientConnection, within: float = 5) -> list[Any]:
    """Every frame the gateway sends until it closes the socket; fails after ``within`` s."""
    frames: list[Any] = []
    async with asyncio.timeout(within):
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await ws.recv()
                frames.append(json.loads(frame) if isinstance(frame, str) else frame)
    return frames


def first_frame_auth(timeout: str = "30s", **websocket: Any) -> dict[str, Any]:
    return {"websocket": {"first_frame_auth": True, "first_frame_timeout": timeout, **websocket}}


# -- first-frame authentication off (the default): credentials come with the handshake ----


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        pytest.param(GUARDED, {}, id="nothing"),
        pytest.param("/v1/inspect", {}, id="nothing-on-the-rule-path"),
        pytest.param(GUARDED + "?access_token=", {}, id="empty-query-token"),
        pytest.param(GUARDED + "?token=x&Access_Token=x", {}, id="other-query-names"),
        pytest.param(GUARDED, {"subprotocols": [PROTOCOL, "edge.bearer."]}, id="empty-bearer"),
        pytest.param(
            GUARDED, {"additional_headers": {"authorization": "Basic YTpi"}}, id="basic-scheme"
        ),
        pytest.param(
            GUARDED, {"additional_headers": {"authorization": "Bearer "}}, id="bearer-no-token"
        ),
        pytest.param(
            GUARDED, {"additional_headers": {"cookie": "access_token=x"}}, id="cookie-not-set-up"
        ),
    ],
)
async def test_a_handshake_without_credentials_is_refused_401(
    path: str, kwargs: dict[str, Any]
) -> None:
    async with start_edge() as edge:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(edge, path, **kwargs):
                pass
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    status = json.loads(response.body)
    assert status["code"] == 16
    assert status["message"] == "a bearer token is required"
    assert edge.kitchen.received == []


async def test_a_bad_handshake_token_is_refused_401_invalid_token() -> None:
    async with start_edge() as edge:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(edge, GUARDED + "?access_token=" + token(aud="other")):
                pass
    assert refused.value.response.status_code == 401
    assert 'error="invalid_token"' in refused.value.response.headers["www-authenticate"]
    assert edge.kitchen.received == []


async def test_a_handshake_with_credentials_opens_and_the_call_is_made() -> None:
    async with start_edge() as edge:
        async with open_socket(edge, GUARDED + "?access_token=" + token(sub="hs")) as ws:
            await ws.send(json.dumps({"message": {}}))
            frames = await frames_until_close(ws)
    assert frames[0]["message"]["metadata"]["x-user-id"] == "hs"
    assert ws.close_code == 1000
    assert [method for method, _ in edge.kitchen.received] == [
        "/edgetest.v1.KitchenService/Inspect"
    ]


async def test_a_public_route_opens_without_credentials() -> None:
    async with start_edge() as edge:
        async with open_socket(edge, PUBLIC) as ws:
            await ws.send(json.dumps({"message": {"stringValue": "open"}}))
            frames = await frames_until_close(ws)
    assert frames[0] == {"message": {"stringValue": "open"}}
    assert ws.close_code == 1000


@pytest.mark.parametrize("name", ["authorization", "Authorization", "AUTHORIZATION"])
@pytest.mark.parametrize("handshake_token", [False, True])
async def test_a_first_frame_token_is_refused_when_first_frame_auth_is_off(
    name: str, handshake_token: bool
) -> None:
    """Unchecked, it must neither be dropped in silence nor forwarded upstream."""
    path = GUARDED + "?access_token=" + token() if handshake_token else PUBLIC
    async with start_edge() as edge:
        async with open_socket(edge, path) as ws:
            await ws.send(json.dumps({"metadata": {name: f"Bearer {token(sub='ff')}"}}))
            await ws.send(json.dumps({"message": {}}))
            frames = await frames_until_close(ws)
    (status,) = frames
    assert status["status"]["code"] == 3
    assert ws.close_code == 4003
    assert edge.kitchen.received == []


# -- first-frame authentication on: the token must come in the first frame, and soon ------


async def test_first_frame_auth_accepts_a_token_in_the_first_frame() -> None:
    async with start_edge(**first_frame_auth()) as edge:
        async with open_socket(edge, GUARDED) as ws:
            await ws.send(json.dumps({"metadata": {"authorization": f"Bearer {token(sub='ff')}"}}))
            await ws.send(json.dumps({"message": {}}))
            frames = await frames_until_close(ws)
    assert frames[0]["message"]["metadata"]["x-user-id"] == "ff"
    assert ws.close_code == 1000


@pytest.mark.parametrize(
    "first",
    [
        pytest.param({"metadata": {}}, id="empty-metadata"),
        pytest.param({"metadata": {"x-tenant": "a"}}, id="metadata-without-token"),
        pytest.param({"metadata": {"authorization": "Bearer not.a.jwt"}}, id="bad-token"),
        pytest.param({"metadata": {"authorization": "Basic YTpi"}}, id="basic-scheme"),
        pytest.param({"metadata": {"x-user-id": "forged"}}, id="forged-claim"),
        pytest.param({"message": {}}, id="message-first"),
        pytest.param({"end": True}, id="half-close-first"),
    ],
)
async def test_a_first_frame_without_a_valid_token_closes_at_once_4016(
    first: dict[str, Any],
) -> None:
    """At once: the 30 s first-frame timeout is far beyond the 5 s the test waits."""
    async with start_edge(**first_frame_auth("30s")) as edge:
        async with open_socket(edge, GUARDED) as ws:
            await ws.send(json.dumps(first))
            frames = await frames_until_close(ws)
    (status,) = frames
    assert status["status"]["code"] == 16
    assert ws.close_code == 4016
    assert edge.kitchen.received == []


async def test_a_silent_unauthenticated_socket_is_closed_at_the_first_frame_timeout() -> None:
    async with start_edge(**first_frame_auth("300ms")) as edge:
        async with open_socket(edge, GUARDED) as ws:
            frames = await frames_until_close(ws)  # sends nothing
    assert frames == [
        {
            "status": {"code": 16, "message": "no token arrived within 0.3s", "details": []},
            "trailers": {},
        }
    ]
    assert ws.close_code == 4016
    assert ws.close_reason == "no token arrived within 0.3s"
    assert edge.kitchen.received == []


# -- resources: a flood of silent sockets is closed, and leaves nothing open ---------------


async def until(condition: Callable[[], bool], within: float) -> bool:
    """Poll ``condition()`` until it holds or ``within`` seconds pass; its last value."""
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return condition()


async def test_a_flood_of_unauthenticated_sockets_is_closed_and_leaves_nothing_open() -> None:
    count = 200
    # Hypercorn's ping loop of a closed socket (and its connection's task) lingers until
    # the loop next wakes, up to ping_interval (edge/cli.py, Drain): short here, so the
    # task count below can come back within the test
    async with start_edge(**first_frame_auth("2s", ping_interval="100ms")) as edge:
        async with open_socket(edge, PUBLIC) as warm:  # the gateway's own first-use setup
            await warm.send(json.dumps({"message": {}}))
            await frames_until_close(warm)
        baseline, tasks = open_fds(), len(asyncio.all_tasks())
        gate = asyncio.Semaphore(50)  # below the listen backlog: no SYN retransmits

        async def silent() -> ClientConnection:
            async with gate:
                return await connect(ws_url(edge, GUARDED), subprotocols=[PROTOCOL])

        sockets = await asyncio.gather(*(silent() for _ in range(count)))
        try:
            peak = open_fds()
            frames = await asyncio.gather(*(frames_until_close(ws, 30) for ws in sockets))
        finally:
            for ws in sockets:
                await ws.close()
        # both ends of every socket are gone again (the client's ends close with the
        # close handshake, the gateway's when Hypercorn lets go of the connection)
        assert await until(lambda: open_fds() <= baseline + 5, within=10), (
            f"{open_fds()} fds open, {baseline} before {count} sockets ({peak} with them)"
        )
        # and no handler is left behind, waiting on a socket that is gone
        assert await until(lambda: len(asyncio.all_tasks()) <= tasks + 5, within=10), (
            f"{len(asyncio.all_tasks())} tasks, {tasks} before {count} sockets"
        )
    assert peak >= baseline + count  # the count saw them: at least one end of each
    assert {ws.close_code for ws in sockets} == {4016}
    assert all(got[-1]["status"]["code"] == 16 for got in frames)
    assert [method for method, _ in edge.kitchen.received] == ["/edgetest.v1.KitchenService/Echo"]
