"""A WebSocket on HTTP/1.1 without the queue, the wrappers and the ping task per socket.

An idle WebSocket is mostly memory: issue 14 asks for 10,000 of them in one worker
within 300 MB. Hypercorn's ``WSStream`` (0.18) gives each socket an ``asyncio.Queue``
between the connection and the app (with its three deques and an ``Event``), a task
group that wraps the app in two more coroutine frames, and a second task that sleeps
between pings. ``EdgeWSStream`` keeps ``WSStream`` for everything on the wire (the
handshake, wsproto, the close rules, the denial responses, the message size limit, the
access log) and replaces only those three:

- the app's messages wait in a list, bounded by ``max_app_queue_size`` as the queue was
  (a client sending faster than the app reads stops being read);
- the app's task calls the ASGI app itself, under Hypercorn's own error handling (an
  exception is logged as "Error in ASGI Framework" and the socket closes 1011);
- every socket of a worker is pinged by one loop timer (``_Pinger``): each socket gets
  its first ping at the accept, as before, then one on each tick of the worker's timer,
  every ``websocket_ping_interval``, in batches of 256 with the loop running between
  them. A socket's first tick comes sooner than a full interval after its accept; the
  gap between pings is never longer.

The app's scope also carries the connection's ``edge.abort`` and ``edge.progress``, as
every other request's does (``GuardedH11Protocol`` puts them there): without them a
client that stops reading could never be cut off. Once the socket has closed and its app
has ended (or a refused handshake never started one), the stream drops its references
back to itself, so it is freed by reference counting.

One difference, allowed by the ASGI spec: ``receive`` keeps returning the disconnect
once the socket has closed, instead of waiting forever.

The stream is its own task group: ``WSStream`` asks its task group for the app's task
(``spawn_app``) and the ping loop (``spawn``), and this class answers both. HTTP/2
WebSockets (RFC 8441) stay on Hypercorn's own stream. ``GuardedH11Protocol`` makes one
per upgrade when the app is a plain ASGI app, as it makes an ``H11Exchange`` per request.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from edge.ingress.slim import SmallQueue, wait_listed, wake_all

Message = dict[str, Any]

log = logging.getLogger(__name__)


class EdgeWSStream(WSStream):
    """Hypercorn's WebSocket stream, its app fed from a list and pinged by the worker."""

    def __init__(
        self,
        direct_app: Callable[[Any, Any, Any], Awaitable[None]],
        write_now: Callable[[bytes], None],
        extensions: dict[str, Any],
        *args: Any,
        send_raw: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        # ``args`` are WSStream's own (app, config, context, task_group, ...); ``send_raw``
        # writes the connection's bytes as the protocol passes a switched stream's through
        super().__init__(*args)
        self._send_raw = send_raw
        self._tasks = self.task_group
        self.task_group = self  # type: ignore[assignment]  # see spawn_app and spawn
        self._direct_app = direct_app
        self._write_now = write_now
        # the connection's own doors (edge.abort, edge.progress), which a socket whose
        # client stops reading needs to be cut off; added to the scope by ``_run``
        self._extensions: dict[str, Any] | None = extensions
        size = int(self.config.max_app_queue_size)
        self._limit = size if size > 0 else 1 << 62  # 0 or less: unbounded, as a Queue
        self._messages: list[Message] = []  # a few at most: a deque's block is 0.75 KiB
        self._readers: list[asyncio.Future[None]] = []
        self._rooms: list[asyncio.Future[None]] = []  # putters waiting for room
        self._gone: Message | None = None  # the disconnect, once the socket has closed
        self._app_ended = False

    # -- what WSStream asks of its task group --------------------------------------------

    async def spawn_app(
        self, app: Any, config: Any, scope: Any, send: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Message], Awaitable[None]]:
        self._tasks.spawn(self._run, scope, send)
        return self._put

    def spawn(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        interval = self.config.websocket_ping_interval
        if getattr(func, "__func__", None) is WSStream._send_pings and interval is not None:
            self.ping()  # the first ping at the accept, as WSStream's loop sends it
            _pinger(self.context, interval).streams.add(self)
            return
        self._tasks.spawn(func, *args)

    # -- the app's side ----------------------------------------------------------------

    async def app_send(self, message: Any) -> None:
        # A stream's messages to the client take this path, one per message: framed by
        # wsproto and written as WSStream's own path would (same bytes, same counting),
        # without the five layers between (an event, the protocol's dispatch on it, h11's
        # pass-through); everything else goes WSStream's way
        if (
            message is not None
            and message["type"] == "websocket.send"
            and self.state is ASGIWebsocketState.CONNECTED
            and not self.closed  # the client went (no Close needed): WSStream drops it too
            and self._send_raw is not None
        ):
            data = message.get("bytes")
            if data is not None:
                event: TextMessage | BytesMessage = BytesMessage(data=bytes(data))
            else:
                text = message["text"]
                if not isinstance(text, str):
                    raise TypeError(f"{text} should be a str")
                event = TextMessage(data=text)
            try:
                framed = self.connection.send(event)
            except LocalProtocolError:
                return  # as WSStream: the connection is closing
            await self._send_raw(framed)
            return
        await super().app_send(message)

    async def _run(self, scope: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        """The app's task: Hypercorn's ``_handle`` without its wrappers."""
        if self._extensions is not None:
            scope["extensions"].update(self._extensions)
            self._extensions = None
        try:
            await self._direct_app(scope, self._receive, send)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.config.log.exception("Error in ASGI Framework")
        finally:
            await send(None)
            self._app_ended = True
            self._unlink()

    async def _receive(self) -> Message:
        messages = self._messages
        while not messages:
            if self._gone is not None:
                return self._gone
            await wait_listed(self._readers)
        message = messages.pop(0)
        wake_all(self._rooms)
        return message

    async def _put(self, message: Message) -> None:
        """Queue a message for the app; wait while ``max_app_queue_size`` already wait."""
        while len(self._messages) >= self._limit:
            await wait_listed(self._rooms)  # several may wait (the reader, a failed send)
        self._messages.append(message)
        if message["type"] == "websocket.disconnect":
            self._gone = message
        wake_all(self._readers)

    async def _accept(self, message: Any) -> None:
        await super()._accept(message)
        connection = self.connection
        if type(connection._events) is deque and not connection._events:
            connection._events = SmallQueue()  # type: ignore[assignment]  # see edge.ingress.slim

    # -- the connection's side -----------------------------------------------------------

    async def handle(self, event: Any) -> None:
        await super().handle(event)
        if self.closed and self.app_put is None:  # refused by Hypercorn: no app ever ran
            self._app_ended = True
            self._unlink()
        if type(event) is StreamClosed:
            pinger = _PINGERS.get(self.context)
            if pinger is not None:
                pinger.streams.discard(self)
            self._unlink()

    def _unlink(self) -> None:
        """Once the socket is closed and the app has ended, neither the connection nor
        the app calls in again: the references back to this stream (its task group, the
        app's put) go, so it is freed by its reference count, not the cyclic collector."""
        if self.closed and self._app_ended:
            self.task_group = self._tasks
            self.app_put = None

    def ping(self) -> None:
        """One ping, unless the socket is closed or busy writing.

        Written at once (a whole frame), so only while no other write waits for the
        connection's lock: a frame written past a waiting one could overtake the
        handshake's 101. A socket busy writing is alive without it.
        """
        if self.closed:
            return
        try:
            data = self.connection.send(Ping())
        except LocalProtocolError:  # not open (closing, or closed)
            return
        self._write_now(data)


class _Pinger:
    """The worker's one ping timer for the WebSockets it serves."""

    __slots__ = ("interval", "streams", "timer")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.streams: set[EdgeWSStream] = set()
        self.timer: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._ping(list(self.streams), 0)
        # idle without sockets: the next one to open starts the timer again
        self.timer = loop.call_later(self.interval, self.tick) if self.streams else None

    def _ping(self, streams: list[EdgeWSStream], start: int) -> None:
        """Ping ``_BATCH`` sockets, then let the loop run before the next batch: 10,000
        pings in one callback would stall every request for tens of milliseconds."""
        for stream in streams[start : start + _BATCH]:
            if stream.closed:
                self.streams.discard(stream)
                continue
            try:
                stream.ping()
            except Exception:  # one socket's failure must not stop the others' pings
                log.exception("pinging a WebSocket")
        if start + _BATCH < len(streams):
            asyncio.get_running_loop().call_soon(self._ping, streams, start + _BATCH)


_BATCH = 256  # sockets pinged per loop callback

# Per worker (Hypercorn's WorkerContext): its pinger.
_PINGERS: weakref.WeakKeyDictionary[Any, _Pinger] = weakref.WeakKeyDictionary()


def _pinger(context: Any, interval: float) -> _Pinger:
    pinger = _PINGERS.get(context)
    if pinger is None:
        pinger = _PINGERS[context] = _Pinger(interval)
    if pinger.timer is None:
        pinger.timer = asyncio.get_running_loop().call_later(interval, pinger.tick)
    return pinger
