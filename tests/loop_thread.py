"""Async servers for synchronous tests (hypothesis): a loop of their own, in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

H = TypeVar("H", bound="LoopThread")


class LoopThread:
    """``serve(stop)`` runs on a loop of its own thread until ``close``; it sets ``ready``
    once up and keeps what the tests need in ``held``. ``run`` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.held: dict[str, Any] = {}
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        await self.serve(self._stop)

    async def serve(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    def run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        self.loop.close()


def running(harness: H) -> Iterator[H]:
    """Start ``harness``, wait until it is up, yield it, close it (a fixture's body)."""
    harness.thread.start()
    assert harness.ready.wait(30)
    try:
        yield harness
    finally:
        harness.close()
