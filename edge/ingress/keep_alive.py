"""The keep-alive timeout of an idle connection, on one loop timer instead of two tasks.

Hypercorn closes a connection left idle for ``keep_alive_timeout`` (and every idle
connection at once when the worker shuts down) with a task per idle period: each
request stops it (cancel, then await its end) and each response starts a new one, whose
``asyncio.wait_for`` starts a second task to wait on the shutdown event. Two tasks made
and two cancelled per request, on every keep-alive connection: replacing them took 8%
off the gateway's instructions per request (callgrind, under wrk).

``TimerIdle`` keeps Hypercorn's interface (``restart``/``stop``, what ``TCPServer``
calls) and its behaviour: the connection closes ``keep_alive_timeout`` after it became
idle, or as soon as the worker is shutting down, whichever comes first. The shutdown
is watched once per worker, by one task that closes every connection idle at that
moment; a connection that becomes idle later sees the shutdown when it does.

``install`` (called by ``create_app``) makes Hypercorn's asyncio worker build
``EdgeTCPServer``, the same way as the protocol classes are put in place.
"""

from __future__ import annotations

import asyncio
import weakref
from ssl import SSLError
from typing import Any

from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.events import Closed, RawData

from edge.ingress.slim import slim_drain_waiters

# Per worker (Hypercorn's WorkerContext): its idle connections' timers.
_IDLE: weakref.WeakKeyDictionary[Any, set[TimerIdle]] = weakref.WeakKeyDictionary()
_WATCHERS: set[asyncio.Task[None]] = set()
_CLOSING: set[asyncio.Task[None]] = set()


async def _close_idle_on_shutdown(context: Any, idle: set[TimerIdle]) -> None:
    await context.terminated.wait()
    for timer in list(idle):
        timer.expire()


def _idle_of(context: Any) -> set[TimerIdle]:
    idle = _IDLE.get(context)
    if idle is None:
        idle = _IDLE[context] = set()
        watcher = asyncio.get_running_loop().create_task(_close_idle_on_shutdown(context, idle))
        _WATCHERS.add(watcher)
        watcher.add_done_callback(_WATCHERS.discard)
    return idle


class TimerIdle:
    """One connection's idle period: a timer, armed while the connection is idle."""

    __slots__ = ("_server", "_timer")

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._timer: asyncio.TimerHandle | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection became idle (``action`` is Hypercorn's ``_idle_timeout``, whose
        job the timer does)."""
        self._disarm()
        server = self._server
        if server.context.terminated.is_set():
            self.expire()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(server.config.keep_alive_timeout, self.expire)
        _idle_of(server.context).add(self)

    async def stop(self) -> None:
        """A request began (or the connection is closing)."""
        self._disarm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            idle = _IDLE.get(self._server.context)
            if idle is not None:
                idle.discard(self)

    def expire(self) -> None:
        """Close the connection now, as Hypercorn's ``_idle_timeout`` does once woken."""
        self._disarm()
        closing = asyncio.get_running_loop().create_task(self._server._initiate_server_close())
        _CLOSING.add(closing)
        closing.add_done_callback(_CLOSING.discard)


class EdgeTCPServer(TCPServer):
    """Hypercorn's asyncio connection, its idle timeout on a ``TimerIdle`` and its
    writer's drain waiters in a list (``edge.ingress.slim``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = TimerIdle(self)  # type: ignore[assignment]
        slim_drain_waiters(self.writer)  # see edge.ingress.slim

    async def _read_data(self) -> None:
        """Hypercorn's read loop, without ``asyncio.wait_for`` when there is no read
        timeout (edge sets none): a frame less on every open connection, and a call less
        on every read."""
        if self.config.read_timeout is not None:
            await super()._read_data()
            return
        reader, protocol = self.reader, self.protocol
        while not reader.at_eof():
            try:
                data = await reader.read(MAX_RECV)
            except (ConnectionError, OSError, TimeoutError, SSLError):
                break
            await protocol.handle(RawData(data))
        await protocol.handle(Closed())


def install() -> None:
    """Make Hypercorn's asyncio worker serve every connection with ``EdgeTCPServer``."""
    import hypercorn.asyncio.run

    hypercorn.asyncio.run.TCPServer = EdgeTCPServer  # type: ignore[attr-defined]
