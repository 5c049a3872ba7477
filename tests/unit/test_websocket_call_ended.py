"""A WebSocket call that fails after its session began ending is not logged as unretrieved.

The session hears of the call's end through a done callback, and reads the call's error
only when the call's end is why the session ends. When the session was already ending
for another reason (the client left, a timeout), nothing read it, and asyncio logged
"Task exception was never retrieved" with the traceback (seen in an e2e run where the
call's deadline passed while the session closed).
"""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

from edge.errors import UpstreamStatus
from edge.ingress.websocket_session import WebSocketSession


async def _fails() -> None:
    raise UpstreamStatus(4, "Deadline Exceeded")


async def _ended_call(session: Any) -> list[dict[str, Any]]:
    """Run a failing call task under ``session``'s done callback; what asyncio reported."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        task = loop.create_task(_fails())
        task.add_done_callback(lambda done: WebSocketSession._call_ended(session, done))
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callback's turn
        del task
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    return reported


def _session(ending: str | None, serving: Any) -> Any:
    session = SimpleNamespace(ending=ending, serving=serving)
    session.interrupt = lambda why: WebSocketSession.interrupt(session, why)
    return session


async def test_a_call_failing_while_the_session_already_ends_is_not_reported() -> None:
    session = _session(ending="idle", serving=None)  # ending for another reason already
    assert await _ended_call(session) == []
    assert session.ending == "idle"  # the first reason still counts


async def test_a_call_failing_while_the_session_waits_interrupts_it() -> None:
    serving = SimpleNamespace(cancelled=0)
    serving.cancel = lambda: setattr(serving, "cancelled", serving.cancelled + 1)
    session = _session(ending=None, serving=serving)
    assert await _ended_call(session) == []
    assert session.ending == "call ended" and serving.cancelled == 1
