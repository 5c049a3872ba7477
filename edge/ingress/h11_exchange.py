"""One HTTP/1.1 request and its response, between h11 and the ASGI app, in one object.

Hypercorn carries each HTTP/1.1 request through five layers between h11 and the app: an
``HTTPStream`` state machine, its own event dataclasses (``Request``, ``Body``,
``Response``...), a task group that wraps the app twice and feeds it through an
``asyncio.Queue``, the protocol's ``stream_send`` dispatch and the server's write lock.
Measured under wrk, that machinery is most of a bare Hypercorn app's CPU per request
(about 200 us of user time against 33 of system time), and the same share of the
gateway's. An exchange does the same job directly: the app's ``receive`` reads a deque,
its ``send`` turns messages into h11 events and writes the bytes, and a unary reply
(head, body and end) leaves in one write.

The behaviour is Hypercorn's (0.18, ``HTTPStream`` for HTTP/1.x): the same scope, the
same message order rules (``UnexpectedMessageError``), bodies suppressed for HEAD, 1xx,
204 and 304, a 500 if the app ends without a response, the access log line, the
``max_app_queue_size`` bound on request body chunks waiting for the app (a client
uploading faster than the app reads stops being read, as before), ``http.disconnect``
when the connection closes or the exchange ends. Two differences, both per the ASGI
spec: a request body that arrives whole in one read is handed over as one message, and
``receive`` keeps answering ``http.disconnect`` once the exchange is over (to every task
waiting in it) instead of waiting forever. Trailers, server push and early hints are
HTTP/2-and-later in Hypercorn and are not offered here either.

One door more than Hypercorn's: ``edge.on_disconnect`` (``DISCONNECT_EXTENSION``), a
callback when the client has gone, so a unary call needs no task reading ``receive`` to
hear it; while one is registered, body chunks the app left unread are dropped, as such a
task dropped them, so the connection goes on reading and sees the client leave. A
finished exchange holds no reference cycle (under ``edge serve`` the heap is frozen and
full collections are rare).

``GuardedH11Protocol`` (``edge.ingress.h11_continue``) makes one per request when the
app is a plain ASGI app and the connection an asyncio transport; a WebSocket upgrade gets
an ``EdgeWSStream`` (``edge.ingress.ws_exchange``), and any other case goes through
Hypercorn's own streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from enum import Enum, auto
from time import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h11
from hypercorn.protocol.events import StreamClosed
from hypercorn.utils import UnexpectedMessageError

from edge.ingress.asgi import ABORT_EXTENSION, DISCONNECT_EXTENSION, PROGRESS_EXTENSION
from edge.ingress.slim import wait_listed, wake_all

if TYPE_CHECKING:
    from edge.ingress.h11_continue import GuardedH11Protocol

_NO_BODY_STATUS = frozenset({204, 304})
_END = h11.EndOfMessage()  # immutable: one for every response


class Phase(Enum):
    """Where the app's response is: as Hypercorn's ``ASGIHTTPState`` for HTTP/1.1."""

    REQUEST = auto()  # no http.response.start yet
    RESPONSE = auto()  # head sent (or held), body messages expected
    CLOSED = auto()  # the last body message went out


class H11Exchange:
    """The request in progress on an HTTP/1.1 connection and the app's task serving it."""

    __slots__ = (
        "_held",
        "_held_alone",
        "_invite",
        "_limit",
        "_messages",
        "_method",
        "_on_close",
        "_readers",
        "_room",
        "_started",
        "_status",
        "closed",
        "phase",
        "protocol",
        "response",
        "scope",
    )

    def __init__(self, protocol: GuardedH11Protocol, request: h11.Request, invite: bool) -> None:
        self.protocol = protocol
        config = protocol.config
        raw_path, _, query_string = request.target.partition(b"?")
        method = request.method.decode("ascii").upper()
        headers = (
            request.headers.raw_items() if config.h11_pass_raw_headers else list(request.headers)
        )
        self.scope: dict[str, Any] = {
            "type": "http",
            "http_version": request.http_version.decode(),
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": method,
            "scheme": "https" if protocol.ssl else "http",
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query_string,
            "root_path": config.root_path,
            "headers": headers,
            "client": protocol.client,
            "server": protocol.server,
            "state": protocol.connection_state.copy(),
            "extensions": {
                ABORT_EXTENSION: protocol.abort,
                PROGRESS_EXTENSION: protocol.delivered,
                DISCONNECT_EXTENSION: self.on_disconnect,
            },
        }
        self.phase = Phase.REQUEST
        self.closed = False
        self.response: dict[str, Any] | None = None
        self._status = 0
        self._method = method
        self._started = time()
        self._messages: deque[dict[str, Any]] = deque()
        self._limit = protocol.app_queue_limit
        self._readers: list[asyncio.Future[None]] = []  # the app's tasks waiting in receive
        self._room: asyncio.Future[None] | None = None  # the connection waiting in put
        self._held: bytes | None = None  # a response head waiting for its body
        self._held_alone: asyncio.Handle | None = None
        self._invite = invite  # the client waits for 100 Continue before its body
        # disconnect listeners (``on_disconnect``); while there are any, body messages are
        # not wanted and are dropped, as a watcher task reading ``receive`` dropped them
        self._on_close: list[Callable[[], object]] = []

    # -- the request side: the connection's task puts, the app's task receives ----------

    async def put(self, message: dict[str, Any]) -> None:
        """Queue a request body message for the app, waiting while ``max_app_queue_size``
        are already waiting (the connection stops reading: backpressure on the client).

        While a disconnect listener is registered the message is dropped instead: the app
        is waiting on its upstream, not reading, and the connection must go on reading
        to see the client leave (a watcher task reading ``receive`` did the same).
        """
        while len(self._messages) >= self._limit and not self.closed and not self._on_close:
            room = asyncio.get_running_loop().create_future()
            self._room = room
            try:
                await room
            finally:
                self._room = None
        if self.closed or self._on_close:
            return
        self._messages.append(message)
        wake_all(self._readers)

    async def receive(self) -> dict[str, Any]:
        if self._invite:
            self._invite = False
            await self.protocol.invite(self)
        messages = self._messages
        while not messages:
            if self.closed:
                return {"type": "http.disconnect"}
            await wait_listed(self._readers)
        message = messages.popleft()
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        return message

    def _wake_room(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    async def handle(self, event: Any) -> None:
        """Hypercorn's stream interface, for ``StreamClosed`` (the connection closed, or
        the protocol moved on after the response ended)."""
        if type(event) is StreamClosed and not self.closed:
            self.closed = True
            if self.phase is not Phase.CLOSED:
                await self._log_access(None)
            self._messages.append({"type": "http.disconnect"})
            wake_all(self._readers)
            self._wake_room()
            callbacks, self._on_close = self._on_close, []
            for callback in callbacks:
                callback()

    def on_disconnect(self, callback: Callable[[], object]) -> Callable[[], object]:
        """``DISCONNECT_EXTENSION``: call ``callback`` once the exchange is over (the
        client gone, or the response complete), instead of a task waiting in ``receive``."""
        if self.closed:
            return asyncio.get_running_loop().call_soon(callback).cancel
        self._on_close.append(callback)
        # what the app left unread is not wanted now, and the connection must not wait
        # for room to queue more (it would stop reading and never see the client go)
        self._messages.clear()
        self._wake_room()
        return lambda: self._forget(callback)

    def _forget(self, callback: Callable[[], object]) -> None:
        with contextlib.suppress(ValueError):
            self._on_close.remove(callback)

    # -- the response side: the app's task ---------------------------------------------

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.body" and self.phase is Phase.RESPONSE:
            await self._body(message)
        elif kind == "http.response.start" and self.phase is Phase.REQUEST:
            self.response = message
            self._status = status = int(message["status"])
            head = self.protocol.head(status, [*message.get("headers", ())], as_sent=True)
            self.phase = Phase.RESPONSE
            if head:
                self._held = head
                self._held_alone = asyncio.get_running_loop().call_soon(self._write_head)
        else:
            raise UnexpectedMessageError(self.phase, kind)

    async def _body(self, message: Any) -> None:
        protocol = self.protocol
        body = message.get("body", b"")
        more = message.get("more_body", False)
        data = b""
        if body and not (
            self._method == "HEAD" or self._status < 200 or self._status in _NO_BODY_STATUS
        ):
            data = protocol.h11_bytes(h11.Data(data=bytes(body)))
        held = self._held
        if held is not None:
            self._held = None
            if self._held_alone is not None:
                self._held_alone.cancel()
                self._held_alone = None
            data = held + data
        if not more:
            try:
                data += protocol.h11_bytes(_END)
            except h11.LocalProtocolError:  # the body fell short of its Content-Length
                if data:  # what h11 accepted goes out first, as Hypercorn writes it
                    await protocol.write(data)
                raise
            self.phase = Phase.CLOSED
        if data:
            await protocol.write(data)
        if not more:
            await self._log_access(self.response)
            await protocol.stream_ended(self)

    async def _log_access(self, response: dict[str, Any] | None) -> None:
        """Hypercorn's access log line (nothing when ``accesslog`` is off)."""
        protocol = self.protocol
        if protocol.logs_access:  # Hypercorn's atoms cost more than a whole exchange
            log: Any = protocol.config.log
            await log.access(self.scope, response, time() - self._started)

    def _write_head(self) -> None:
        """No body followed the head within the loop's turn: the head goes on its own, so
        a client never waits for headers (a stream whose first message is upstream)."""
        head, self._held = self._held, None
        self._held_alone = None  # the handle refers back to this exchange: no cycle left
        if head is not None:
            self.protocol.write_now(head)

    async def run(self, app: Any) -> None:
        """The app's task: Hypercorn's ``_handle``, then what ``app_send(None)`` does."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.protocol.config.log.exception("Error in ASGI Framework")
        finally:
            await self._app_ended()
            # The scope's hook refers back to this exchange: take it out, so a finished
            # exchange is freed by its reference count, not by the cyclic collector.
            self.scope["extensions"].pop(DISCONNECT_EXTENSION, None)
            self._on_close = []

    async def _app_ended(self) -> None:
        if self.closed:
            return
        if self.phase is Phase.REQUEST:  # the app ended without a response
            protocol = self.protocol
            headers = [(b"content-length", b"0"), (b"connection", b"close")]
            await protocol.write(protocol.head(500, headers) + protocol.h11_bytes(_END))
            self.phase = Phase.CLOSED
            await self._log_access({"status": 500, "headers": []})
        elif self._held is not None:  # ended mid-response: what was held goes out first
            self._write_head()
        await self.protocol.stream_ended(self)
