"""The proxy client's connections: asyncio protocols, and a pool of them per upstream.

A connection queues what it receives and stops reading the socket beyond a high-water
mark, so a slow client holds the upstream back instead of the gateway's memory filling.
The pool holds at most ``limit`` connections, busy and idle together, over all of an
upstream's endpoints: a request takes an idle connection to its endpoint, else opens one
(closing an idle connection to another endpoint if that is what stands in the way), else
waits its turn, for at most the connect timeout (``PoolFull``: the caller answers 503). A
freed connection or slot goes straight to the first waiter, so a waiter is never
overtaken by a request that came later, and nobody waits while a slot is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from typing import Any

Where = tuple[str, int, bool]  # host, port, TLS

HIGH_WATER = 256 * 1024  # received bytes held before the socket stops being read
IDLE_FOR = 15.0  # an idle connection older than this is closed, not reused (as aiohttp)


class UpstreamClosed(Exception):
    """The upstream closed or reset the connection (``reused`` if it had served before)."""

    def __init__(self, message: str, *, reused: bool = False, received: bool = True) -> None:
        super().__init__(message)
        self.reused = reused
        self.received = received


class ReadTimeout(Exception):
    """The upstream sent nothing (or took nothing) for the whole read timeout."""


def expire(waiter: asyncio.Future[Any]) -> None:
    """A timer's end: fail ``waiter`` (cheaper than an ``asyncio.timeout`` per wait)."""
    if not waiter.done():
        waiter.set_exception(ReadTimeout())


class PoolFull(Exception):
    """No connection came free within the connect timeout (every one busy)."""


def _no_slot(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolFull())


class Http1Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: received bytes queued, reading paused when too many."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.held = 0
        self.closed = False
        self.eof = False  # the upstream ended its side cleanly (a FIN, or TLS's close)
        self.aborted = False  # we ended it: what was read so far is not a whole body
        self.error: BaseException | None = None  # how it ended, if not cleanly
        self.served = 0  # responses read in full on this connection
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.held += len(data)
        if self.held > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self.wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def _lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if exc is not None and self.error is None:
            self.error = exc
        self.wake()
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def wake(self) -> None:
        """Wake a reader waiting in ``more`` (bytes came, the line ended, or the body
        being sent failed: whoever waits looks again)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def take(self) -> bytes:
        """Everything received so far (reading resumes if it was paused)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.held = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def more(self, timeout: float | None) -> None:
        """Wait until bytes arrive, the connection ends or ``wake`` is called;
        ``ReadTimeout`` after ``timeout`` of silence."""
        if self.chunks or self.closed:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Write, then wait while the upstream's receive window is full (up to ``timeout``)."""
        if self.closed or self.transport is None:
            raise UpstreamClosed(
                "the upstream closed the connection", reused=self.served > 0, received=False
            )
        self.transport.write(data)
        drained = self._drained
        if drained is not None and not drained.done():
            loop = asyncio.get_running_loop()
            timer = None if timeout is None else loop.call_later(timeout, expire, drained)
            try:
                await drained
            finally:
                if timer is not None:
                    timer.cancel()
            if self.closed:
                raise UpstreamClosed(
                    "the upstream closed the connection", reused=self.served > 0, received=False
                )

    def abort(self) -> None:
        self.aborted = True
        if self.transport is not None:
            self.transport.abort()
        self._lost(None)  # a reader waiting on this connection hears now, not next turn


class Http1Pool:
    """Connections to one upstream's endpoints, at most ``limit`` open at once."""

    def __init__(self, limit: int, connect_timeout: float) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.open = 0  # connections open or being opened, busy and idle
        self._idle: dict[Where, list[Http1Connection]] = {}
        self._waiting: deque[tuple[asyncio.Future[Http1Connection | None], Where]] = deque()
        self._tls: ssl.SSLContext | None = None
        self.closed = False

    async def acquire(self, where: Where) -> Http1Connection:
        """A connection to ``where``: an idle one, a new one, or the next one freed."""
        if self.closed:
            raise UpstreamClosed("the pool is closed", received=False)
        connection = self._idle_to(where)
        if connection is not None:
            return connection
        if self.open >= self.limit and not self._waiting and self._close_an_idle_one():
            pass  # an idle connection elsewhere made room
        if self.open < self.limit and not self._waiting:
            self.open += 1
            return await self._connect(where)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Http1Connection | None] = loop.create_future()
        self._waiting.append((waiter, where))
        timer = loop.call_later(self.connect_timeout, _no_slot, waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()  # handed over as we were cancelled: pass it on
                if given is not None:
                    self.release(given, where)
                else:
                    self._freed()
            else:  # timed out or cancelled in the queue: out of it now, not at the next turn
                with contextlib.suppress(ValueError):
                    self._waiting.remove((waiter, where))
            raise
        finally:
            timer.cancel()
        if handed is not None:
            return handed
        return await self._connect(where)  # a slot was handed over: it is counted already

    def _idle_to(self, where: Where) -> Http1Connection | None:
        idle = self._idle.get(where)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            fresh = now - connection.idle_since < IDLE_FOR
            if fresh and not connection.closed and not connection.chunks:
                return connection
            self.discard(connection)  # closed while idle, stale, or sent bytes unasked
        return None

    def _close_an_idle_one(self) -> bool:
        for idle in self._idle.values():
            if idle:
                connection = idle.pop(0)  # the longest idle
                connection.abort()
                self.open -= 1
                return True
        return False

    async def _connect(self, where: Where) -> Http1Connection:
        """Open a connection for a slot already counted in ``open``; the slot is freed if
        it fails (or is cancelled)."""
        host, port, tls = where
        try:
            context: ssl.SSLContext | None = None
            if tls:
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                context = self._tls
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    Http1Connection, host, port, ssl=context, server_hostname=host if tls else None
                )
        except BaseException:
            self._freed()
            raise
        return connection

    def release(self, connection: Http1Connection, where: Where) -> None:
        """A connection whose exchange is complete: to a waiter, back to the pool, or closed."""
        connection.served += 1
        if connection.closed or connection.chunks or self.closed:
            self.discard(connection)
            return
        while self._waiting:
            waiter, wanted = self._waiting.popleft()
            if waiter.done():
                continue
            if wanted == where:
                waiter.set_result(connection)
            else:  # its slot goes to a waiter for another endpoint
                connection.abort()
                waiter.set_result(None)
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(where, []).append(connection)

    def discard(self, connection: Http1Connection) -> None:
        connection.abort()
        self._freed()

    def _freed(self) -> None:
        """A slot is free: the first waiter's, else the pool's."""
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
                self.open -= 1
        self._idle.clear()
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamClosed("the pool closed", received=False))
