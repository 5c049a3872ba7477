"""What an open gRPC-over-WebSocket socket costs the gateway: an idle one holds no task of ours.

Issue 14 (10,000 idle sockets on one worker): an idle socket's deadlines are a timer and
its drain and reload signals callbacks, and its call gets a task only with the first
frame, so the tasks of edge's own code do not grow with the sockets held open; the
deadlines and signals still end the sockets (the e2e tests of each say how).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import edge

pytestmark = pytest.mark.e2e

PROTOCOL = "edge.grpc-ws.v1"
EDGE_DIR = str(Path(edge.__file__).parent)


def edge_tasks() -> list[asyncio.Task[Any]]:
    """The running tasks whose coroutine is edge's own, but for the server's: the task
    that runs the app for a socket (Hypercorn's ``_handle``, or ``EdgeWSStream._run``
    where edge serves the socket) is the server's, counted in ``server_tasks``."""
    mine = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if (
            code is not None
            and code.co_filename.startswith(EDGE_DIR)
            and code.co_qualname != "EdgeWSStream._run"
        ):
            mine.append(task)
    return mine


async def test_idle_sockets_hold_no_task_of_ours(stack: Any) -> None:
    url = stack.gateway.base_url.replace("http://", "ws://") + "/ws/edgetest.v1.StreamService/Shout"
    before, server_before = len(edge_tasks()), len(asyncio.all_tasks())
    sockets = [await connect(url, subprotocols=[PROTOCOL], open_timeout=5) for _ in range(8)]
    try:
        # the one task per signal (drain, reload) that all the sockets share, no more
        # (was 4 to 6 per socket)
        assert len(edge_tasks()) - before <= 2, [t.get_coro() for t in edge_tasks()]
        # and the server's: per socket its connection's and its app's, no ping loop (was
        # 3, Hypercorn's ping loop the third); the test's clients are tasks of this loop
        # too, one per socket (websockets' keepalive; its reader is a protocol callback)
        grown = len(asyncio.all_tasks()) - server_before - len(edge_tasks()) + before
        assert grown <= 8 * 3, [t.get_coro() for t in asyncio.all_tasks()]
        # and each still works: its first frame starts its call
        for ws in sockets[:2]:
            await ws.send(json.dumps({"message": {"text": "a"}}))
            assert json.loads(await ws.recv()) == {"message": {"text": "A"}}
    finally:
        for ws in sockets:
            await ws.close()


async def test_the_call_task_lives_only_while_the_call_does(stack: Any) -> None:
    url = stack.gateway.base_url.replace("http://", "ws://") + "/ws/edgetest.v1.KitchenService/Echo"
    before = {id(t) for t in edge_tasks()}
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=5) as ws:
        await ws.send(json.dumps({"message": {"stringValue": "hi"}}))
        assert "message" in json.loads(await ws.recv())
        json.loads(await ws.recv())  # the status
        await ws.wait_closed()
    async with asyncio.timeout(10):
        while {id(t) for t in edge_tasks()} - before:
            await asyncio.sleep(0.01)
