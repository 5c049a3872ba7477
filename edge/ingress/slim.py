"""Stand-ins for the per-connection objects whose size is a fixed block, not their content.

A ``collections.deque`` allocates a 64-slot block (about 750 bytes) when it is made, even
if it never holds anything. An idle connection held several: asyncio's writer keeps one
for the tasks waiting to drain, Hypercorn's ``can_read`` event one for its waiters, and
wsproto's connection one for its events. With 10,000 idle WebSockets in a worker (issue
14's target) each such deque is 7 MB. These hold the same things in a list, or nothing
until someone waits; each supports exactly the operations its owner uses (checked by the
tests that put them in place).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any


async def wait_listed(waiters: list[asyncio.Future[None]]) -> None:
    """Wait on a future of one's own, listed in ``waiters`` for whoever wakes them all; a
    waiter cancelled meanwhile takes itself off the list."""
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        if not waiter.done():  # cancelled
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    """Wake every waiter listed by ``wait_listed`` and empty the list; each woken one
    looks again, and the first to run takes what is there."""
    woken = waiters[:]
    waiters.clear()
    for waiter in woken:
        if not waiter.done():
            waiter.set_result(None)


class SmallQueue(list[Any]):
    """A FIFO for the few items a connection's events ever hold at once: ``append`` and
    ``popleft``, as wsproto's ``Connection`` uses its event deque."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class ReadGate:
    """Hypercorn's ``can_read`` (its ``EventWrapper`` interface), with no waiter deque:
    a connection waits on it only while h11 is paused between pipelined requests."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters: list[asyncio.Future[None]] = []

    async def clear(self) -> None:
        self._open = False

    async def wait(self) -> None:
        if not self._open:
            await wait_listed(self._waiters)

    async def set(self) -> None:
        self._open = True
        wake_all(self._waiters)

    def is_set(self) -> bool:
        return self._open


def slim_drain_waiters(writer: Any) -> None:
    """Give an asyncio ``StreamWriter``'s protocol a list for its drain waiters (it only
    appends, removes and iterates them), where it made an empty deque."""
    protocol = getattr(writer, "_protocol", None)
    waiters = getattr(protocol, "_drain_waiters", None)
    if type(waiters) is deque and not waiters:
        protocol._drain_waiters = []  # type: ignore[union-attr]
