"""The unary ingress cancels its chain when the client hangs up, and only then."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.call import Call, Reply
from edge.ingress.asgi import call_unless_disconnected as _call_unless_disconnected


def _events(*events: dict[str, Any]) -> tuple[Any, asyncio.Event]:
    """A receive() that yields the given events, then waits until `hang_up` is set."""
    queue = list(events)
    hang_up = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await hang_up.wait()
        return {"type": "http.disconnect"}

    return receive, hang_up


def _call() -> Call:
    return Call("up", "pkg.Svc/Method", [], None)


async def test_a_hang_up_cancels_the_chain_after_an_unread_empty_body() -> None:
    receive, hang_up = _events({"type": "http.request", "body": b"", "more_body": False})
    cancelled = asyncio.Event()

    async def chain(call: Call) -> Reply:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not reached")

    outcome = asyncio.create_task(_call_unless_disconnected(chain, _call(), receive))
    await asyncio.sleep(0.01)
    hang_up.set()
    assert await outcome is None
    assert cancelled.is_set()
    assert outcome.cancelling() == 0  # the handler task carries on, not cancelled


async def test_a_reply_before_any_hang_up_is_returned_and_the_watcher_stopped() -> None:
    receive, hang_up = _events()
    reply = Reply(message=None)

    async def chain(call: Call) -> Reply:
        await asyncio.sleep(0)
        return reply

    assert await _call_unless_disconnected(chain, _call(), receive) is reply
    hang_up.set()  # a late hang-up reaches no one: a live watcher would cancel this test
    await asyncio.sleep(0.01)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_someone_elses_cancel_still_propagates() -> None:
    receive, _ = _events()

    async def chain(call: Call) -> Reply:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    outcome = asyncio.create_task(_call_unless_disconnected(chain, _call(), receive))
    await asyncio.sleep(0.01)
    outcome.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outcome


async def test_a_hang_up_as_the_reply_lands_still_cancels_inside_the_chain() -> None:
    """The watcher runs between the upstream answering and the handler resuming."""
    receive, hang_up = _events()
    answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    async def chain(call: Call) -> Reply:
        return await answer

    outcome = asyncio.create_task(_call_unless_disconnected(chain, _call(), receive))
    await asyncio.sleep(0.01)
    hang_up.set()  # both land in one loop turn, the watcher queued first
    answer.set_result(Reply(message=None))
    assert await outcome is None
    assert outcome.cancelling() == 0
