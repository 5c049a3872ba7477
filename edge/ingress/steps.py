"""Coroutines started by hand: a send or a read that finishes at once costs no machinery.

Most sends of a stream finish without suspending (the transport takes the bytes at
once), and what guards a send that has to wait (a timeout, a timer, a look at the
socket's progress: ``edge.ingress.asgi.timed_send``) cost about a third of the gateway's
CPU per streamed message when armed for every one. So a send is started by hand with
``coroutine.send(None)``; only one that suspends is finished, under the guard, by
``finish_step``, which drives it exactly as a task would have. The NDJSON writer starts
its reads the same way (``edge.ingress.transcoded_streams``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import CoroutineType
from typing import Any


def start_step(pending: Awaitable[Any]) -> tuple[bool, Any]:
    """Start ``pending`` by hand if it is a coroutine: ``(True, its result)`` when it
    finished at once, else ``(False, an awaitable of the rest)`` for the caller to await
    under its guard. Anything else is returned to be awaited as it is."""
    if not isinstance(pending, CoroutineType):
        return False, pending
    try:
        waiting = pending.send(None)
    except StopIteration as done:
        return True, done.value
    return False, finish_step(pending, waiting)


async def finish_step(step: Any, waiting: Any) -> Any:
    """Run ``step`` (a coroutine started by hand, suspended on ``waiting``) to its end.

    As a task would: wait for the future it yielded (None: it only yielded the loop),
    then resume it. The future's own outcome, a cancellation included, reaches the step
    from the future; our task's cancellation while it waits (the future still pending
    or finished otherwise) is thrown into the step, so it sees exactly what it would
    have seen awaited directly.
    """
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False  # taken, as a task takes it
                await waiting
        except BaseException as error:
            from_future = waiting is not None and (
                waiting.cancelled() or (waiting.done() and waiting.exception() is error)
            )
            if not from_future:
                try:
                    waiting = step.throw(error)
                except StopIteration as done:
                    return done.value
                continue
        try:
            waiting = step.send(None)
        except StopIteration as done:
            return done.value
