"""``timed_send``: a client that takes nothing for ``send_timeout`` is cut; one that reads
all along is not, however long one write waits (the server's ``edge.progress`` counts)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.errors import ClientStalled
from edge.ingress.asgi import timed_send

BODY = {"type": "http.response.body", "body": b"x", "more_body": True}


def scope_with(progress: Any, aborted: list[int]) -> dict[str, Any]:
    extensions = {"edge.abort": lambda: aborted.append(1), "edge.progress": progress}
    return {"type": "http", "extensions": extensions}


async def test_one_write_waiting_on_a_client_that_reads_is_not_cut() -> None:
    taken = 0

    async def draining(message: Any) -> None:  # one write, drained a little at a time
        nonlocal taken
        for _ in range(30):  # 0.6 s: three timeouts
            await asyncio.sleep(0.02)
            taken += 4096

    aborted: list[int] = []
    await timed_send(draining, 0.2, scope_with(lambda: taken, aborted))(BODY)
    assert not aborted


async def test_a_write_to_a_client_that_takes_nothing_is_cut_in_time() -> None:
    async def stuck(message: Any) -> None:
        await asyncio.sleep(10)

    aborted: list[int] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ClientStalled):
        await timed_send(stuck, 0.2, scope_with(lambda: 0, aborted))(BODY)
    assert 0.2 <= loop.time() - start < 0.6  # (a quarter of the timeout past it, and slack)
    assert aborted == [1]


async def test_progress_that_stops_is_cut_a_timeout_after_it_stopped() -> None:
    taken = 0

    async def then_stalls(message: Any) -> None:
        nonlocal taken
        for _ in range(15):  # 0.3 s of progress, then nothing
            await asyncio.sleep(0.02)
            taken += 4096
        await asyncio.sleep(10)

    aborted: list[int] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ClientStalled):
        await timed_send(then_stalls, 0.2, scope_with(lambda: taken, aborted))(BODY)
    assert 0.45 <= loop.time() - start < 1.0  # 0.3 s of progress, then 0.2-0.25 s
    assert aborted == [1]


async def test_without_the_extension_one_write_has_the_timeout() -> None:  # HTTP/2
    async def slow(message: Any) -> None:
        await asyncio.sleep(10)

    with pytest.raises(ClientStalled):
        await timed_send(slow, 0.1, {"type": "http", "extensions": {}})(BODY)
