"""``Expect: 100-continue`` on HTTP/1.1: invite the body only when the app reads it.

A client that sends ``Expect: 100-continue`` waits for ``100 Continue`` before sending its
body, so that a request the server will refuse (413 from its ``Content-Length``, 401, 404,
429) costs no upload. Hypercorn 0.18 sends ``100 Continue`` as soon as the request head is
parsed, before the app has seen it, so every refusal came after the client had been told
to send everything (and a client stream answered early was left uploading into a queue
nobody read).

Here Hypercorn's HTTP/1.1 protocol is given an h11 connection that keeps the 100 back,
and the app's ``receive`` sends it on the first call, as uvicorn does: a route that reads
its body invites it; one that answers without reading never does, and the client sends
nothing. HTTP/2 is not affected (Hypercorn sends no 100 there).

The same protocol offers the app one more door, as the scope extension
``edge.abort``: a callable that aborts the connection at once. A client that stops
reading leaves every write blocked on a full send buffer, the close frame and the end of
the response included (Hypercorn's own close waits for that buffer to drain), so a write
timeout can only end such a connection by aborting it. And one more, ``edge.progress``:
the number of bytes the client has taken so far (written, less what still waits in the
transport's buffer and, on Linux, in the kernel's send queue unacknowledged), which grows
while the client reads even when a single write has to wait for megabytes to drain.

One more saving, not a door: Hypercorn writes a response's head when the app sends
``http.response.start`` and its body when the next message comes, two writes and two
``send`` system calls where a unary reply needs one (on loopback a write cost the
gateway 15-25 us, the kernel delivering it to the reader included). The head is
therefore held until the body's write, which takes both; if no body follows within the
same turn of the event loop (a stream whose first message is still upstream), a callback
writes the head alone at the end of that turn, so a client never waits for headers.

Request heads are read by ``edge.ingress.h11_requests`` (h11's grammar, checked with
bytes methods instead of per-field regular expressions), through the same connection,
and the common exchange's state changes are made by ``edge.ingress.h11_states`` instead
of h11's general transition machinery.

``install`` (called by ``create_app``) puts the protocol in place, the same way as
``h2_resets.install``.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import h11
from h11._readers import READERS
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Body, Data, EndBody, Request, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol, H11WSConnection
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, Scope

from edge.ingress.asgi import ABORT_EXTENSION, PROGRESS_EXTENSION
from edge.ingress.h11_exchange import H11Exchange
from edge.ingress.h11_fields import NotedHeaders, response_fields, stripped_fields
from edge.ingress.h11_requests import read_request
from edge.ingress.h11_states import FastStates
from edge.ingress.slim import ReadGate
from edge.ingress.ws_exchange import EdgeWSStream

try:  # Linux's SIOCOUTQ: a TCP socket's bytes not yet acknowledged by the peer
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - the transport's buffer only
    _OUTQ = None


def _unacknowledged(sock: Any) -> int:
    """Bytes in the kernel's send queue the peer has not acknowledged (0 where unknown)."""
    if _OUTQ is None or sock is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0" * 4))[0])
    except (OSError, ValueError):  # not a TCP socket here (macOS: ENOTTY), or closed
        return 0


class ContinueOnRead(FastStates):
    """h11's server connection whose 100 Continue waits until ``body_wanted``."""

    body_wanted = False

    @property
    def client_expects_continue(self) -> bool:
        """Whether the request in progress sent ``Expect: 100-continue`` (h11's own view)."""
        return bool(super().they_are_waiting_for_100_continue)

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self.body_wanted and self.client_expects_continue

    def _get_io_object(self, role: Any, event: Any, io_dict: Any) -> Any:
        """h11's choice of reader or writer, with edge's reader for a request head."""
        if io_dict is READERS and role is h11.CLIENT and self.their_state is h11.IDLE:
            return read_request
        return super()._get_io_object(role, event, io_dict)


class _InviteOnRead:
    """The app as Hypercorn calls it, with a ``receive`` that sends the 100 first."""

    def __init__(self, app: Any, protocol: GuardedH11Protocol) -> None:
        self.app = app
        self.protocol = protocol

    async def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        protocol = self.protocol
        extensions: Any = scope.get("extensions")
        if extensions is not None:
            extensions[ABORT_EXTENSION] = protocol.abort
            if protocol.transport() is not None:
                extensions[PROGRESS_EXTENSION] = protocol.delivered
        connection = protocol.connection
        if scope["type"] != "http" or not (
            isinstance(connection, ContinueOnRead) and connection.client_expects_continue
        ):  # the common case: nothing to invite, receive as it is
            await self.app(scope, receive, send, sync_spawn, call_soon)
            return
        request_number = protocol.keep_alive_requests  # this request's, on this connection

        async def receive_inviting() -> ASGIReceiveEvent:
            connection = protocol.connection
            if (
                isinstance(connection, ContinueOnRead)
                and not connection.body_wanted
                and protocol.keep_alive_requests == request_number
            ):
                connection.body_wanted = True
                await protocol.invite_body()
            return await receive()

        await self.app(scope, receive_inviting, send, sync_spawn, call_soon)


def upgrades_to_websocket(request: h11.Request) -> bool:
    """Hypercorn's test for a WebSocket handshake (the last ``Upgrade`` and ``Connection``
    headers decide; h11 has already lower-cased the names and stripped the values)."""
    headers = request.headers
    if isinstance(headers, NotedHeaders) and not headers.special:
        return False  # neither an Upgrade nor a Connection field: noted as the head was read
    upgrade = connection = b""
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value
        elif name == b"connection":
            connection = value
    return (
        upgrade.lower() == b"websocket"
        and any(token.strip() == b"upgrade" for token in connection.lower().split(b","))
        and request.method.upper() == b"GET"
    )


class _Switched:
    """What an upgraded connection's h11 state becomes once the 101 is out: nothing on
    HTTP's side can be sent any more."""

    __slots__ = ()

    def send(self, event: Any) -> bytes:
        raise h11.LocalProtocolError("the connection has switched protocols")


_SWITCHED = _Switched()


class GuardedH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol; ``100 Continue`` on the app's first read, and each
    plain HTTP request served by an ``H11Exchange`` (``edge.ingress.h11_exchange``)."""

    def __init__(self, app: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_InviteOnRead(app, self), config, *args, **kwargs)
        # The exchange calls the ASGI app itself; a WSGI app, or server names to check,
        # keep Hypercorn's own stream.
        self._exchange_app: Any = (
            app.app if type(app) is ASGIWrapper and not config.server_names else None
        )
        # what every exchange on this connection would otherwise work out per request
        size = int(config.max_app_queue_size)
        self.app_queue_limit = size if size > 0 else sys.maxsize  # 0: unbounded, as Queue
        log = config.log
        self.logs_access = getattr(log, "access_logger", log) is not None
        self.connection = ContinueOnRead(
            h11.SERVER, max_incomplete_event_size=config.h11_max_incomplete_size
        )
        self.can_read = ReadGate()  # see edge.ingress.slim
        self.written = 0  # bytes handed to the server's writer on this connection
        self._server_send: Callable[[Event], Awaitable[None]] = self.send
        self.send = self._counting_send
        self._holding = False  # the next write is a response head: keep it for the body
        self._head: bytes | None = None
        self._head_alone: asyncio.Handle | None = None  # writes the head if no body came
        self._can_hold: bool | None = None  # an asyncio transport to write a head alone on
        self._writer: Any = None  # the server's asyncio StreamWriter, once _holds() found it

    async def stream_send(self, event: StreamEvent) -> None:
        if type(event) is Response and event.status_code == 101:
            await super().stream_send(event)
            connection = self.connection
            if type(connection) is H11WSConnection:
                # switched: h11 has nothing more to say on this connection, and its state
                # is 1.5 KiB that an open WebSocket would hold for its whole life
                connection.h11_connection = _SWITCHED  # type: ignore[assignment]
            return
        if type(event) is Response and event.status_code >= 200 and self._holds():
            self._holding = True
            try:
                await super().stream_send(event)
            finally:
                self._holding = False
        else:
            await super().stream_send(event)

    async def _counting_send(self, event: Event) -> None:
        # type(), not isinstance(): Hypercorn's and h11's events are ABCs, whose
        # isinstance costs about 100 ns; neither library subclasses them
        if type(event) is RawData:
            if self._holding:
                self._head = event.data
                self._head_alone = asyncio.get_running_loop().call_soon(self._write_head)
                return
            head = self._head
            if head is not None:  # the body (or the end of an empty one) takes the head
                self._head = None
                if self._head_alone is not None:
                    self._head_alone.cancel()
                event = RawData(data=head + event.data, address=event.address)
            self.written += len(event.data)
        await self._server_send(event)

    async def send_raw(self, data: bytes) -> None:
        """Bytes of a switched connection (a WebSocket's frames), as ``stream_send`` passes
        a ``Data`` event's through: counted, then written."""
        await self.send(RawData(data=data))

    def _holds(self) -> bool:
        """Whether heads can be held: decided once per connection (its transport stays)."""
        if self._can_hold is None:
            self._can_hold = self.transport() is not None
            self._writer = getattr(getattr(self._server_send, "__self__", None), "writer", None)
        return self._can_hold

    def _write_head(self) -> None:
        """No body followed the head within the loop's turn: the head goes on its own.

        Straight to the transport: nothing else writes on this connection while a head
        is held (the response's own writes come after it, a 100 Continue before it), and
        going through the server's lock would let a body queued meanwhile overtake it.
        """
        head, self._head = self._head, None
        transport = self.transport()
        if head is None or transport is None or transport.is_closing():
            return
        self.written += len(head)
        transport.write(head)

    def transport(self) -> Any:
        """The asyncio transport under this connection (None on another worker class)."""
        writer = getattr(getattr(self._server_send, "__self__", None), "writer", None)
        return getattr(writer, "transport", None)

    def delivered(self) -> int:
        """Bytes the client has taken: written, less what waits in our buffer and the kernel's.

        Counted before they reach the transport, so it may dip while a write waits for the
        connection's lock; it only grows as the client acknowledges data.
        """
        transport = self.transport()
        if transport is None:
            return self.written
        pending = int(transport.get_write_buffer_size())
        return self.written - pending - _unacknowledged(transport.get_extra_info("socket"))

    async def _handle_events(self) -> None:
        """Hypercorn's loop, with a request's body handed straight to its exchange (whole
        in one message when its end was read with it)."""
        pending: Any = None
        while True:
            connection = self.connection
            if pending is not None:
                event, pending = pending, None
            else:
                if connection.they_are_waiting_for_100_continue:
                    await self._send_h11_event(
                        h11.InformationalResponse(
                            status_code=100, headers=self.config.response_headers("h11")
                        )
                    )
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError as error:
                    event = error
            if isinstance(event, h11.RemoteProtocolError):
                if connection.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
                    await self._send_error_response(event.error_status_hint)
                await self.send(Closed())
                break
            stream: Any = self.stream
            if type(stream) is H11Exchange:
                kind = type(event)
                if kind is h11.Data:
                    body = bytes(event.data)
                    try:
                        following: Any = connection.next_event()
                    except h11.RemoteProtocolError as error:  # answered on the next turn
                        following = error
                    ended = type(following) is h11.EndOfMessage
                    await stream.put({"type": "http.request", "body": body, "more_body": not ended})
                    if not ended:
                        pending = following
                    continue
                if kind is h11.EndOfMessage:
                    await stream.put({"type": "http.request", "body": b"", "more_body": False})
                    continue
            if type(event) is h11.Request:
                await self.send(Updated(idle=False))
                fields = event.headers
                # Hypercorn's check for an h2c upgrade or the HTTP/2 preface, which
                # neither a head without an Upgrade field nor a method other than PRI
                # can be: the reader noted the first as it read the head
                if event.method == b"PRI" or not (
                    isinstance(fields, NotedHeaders) and not fields.special
                ):
                    await self._check_protocol(event)
                await self._create_stream(event)
            elif event is h11.PAUSED:
                await self.can_read.clear()
                await self.can_read.wait()
            elif type(event) is h11.ConnectionClosed or event is h11.NEED_DATA:
                break
            elif stream is None:
                break
            elif isinstance(event, h11.Data):  # Hypercorn's own stream from here on
                await stream.handle(Body(stream_id=STREAM_ID, data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await stream.handle(EndBody(stream_id=STREAM_ID))
            elif isinstance(event, Data):  # WebSocket pass-through
                await stream.handle(event)

    async def _create_stream(self, request: h11.Request) -> None:
        connection = self.connection
        if isinstance(connection, ContinueOnRead):
            connection.body_wanted = False  # each request waits for its own read
        app = self._exchange_app
        if app is None or not self._holds():
            await super()._create_stream(request)
            return
        if upgrades_to_websocket(request):
            await self._create_websocket(app, request)
            return
        invite = isinstance(connection, ContinueOnRead) and connection.client_expects_continue
        exchange = H11Exchange(self, request, invite)
        self.stream = exchange  # type: ignore[assignment]
        self.task_group.spawn(exchange.run, app)
        self.keep_alive_requests += 1
        await self.context.mark_request()

    async def _create_websocket(self, app: Any, request: h11.Request) -> None:
        """An upgrade: an ``EdgeWSStream`` takes the connection over, as Hypercorn's
        ``WSStream`` would (the h11 connection now passes bytes through)."""
        stream = EdgeWSStream(
            app,
            self.write_unless_busy,
            {ABORT_EXTENSION: self.abort, PROGRESS_EXTENSION: self.delivered},
            self.app,
            self.config,
            self.context,
            self.task_group,
            self.ssl,
            self.client,
            self.server,
            self.stream_send,
            STREAM_ID,
            send_raw=self.send_raw,
        )
        self.stream = stream
        self.connection = H11WSConnection(cast(h11.Connection, self.connection))
        headers = (
            request.headers.raw_items()
            if self.config.h11_pass_raw_headers
            else list(request.headers)
        )
        await stream.handle(
            Request(
                stream_id=STREAM_ID,
                headers=headers,
                http_version=request.http_version.decode(),
                method=request.method.decode("ascii").upper(),
                raw_path=request.target,
                state=self.connection_state,
            )
        )
        self.keep_alive_requests += 1
        await self.context.mark_request()

    # -- what an exchange asks of its connection ---------------------------------------

    def h11_bytes(self, event: Any) -> bytes:
        """The bytes h11 makes of one of our events; none once the client broke the
        protocol (as Hypercorn's ``_send_h11_event``)."""
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return b""
        return data or b""

    def head(self, status: int, headers: list[Any], *, as_sent: bool = False) -> bytes:
        """A response head as Hypercorn's ``stream_send`` makes it: the server's own
        headers added, and ``Connection: close`` once the keep-alive budget is spent.

        ``as_sent``: ``headers`` are an app's, as it sent them (a list of our own), which
        Hypercorn strips and rids of pseudo-headers first (``stripped_fields``). Fields
        that pass ``response_fields`` as they came have nothing to strip (their grammar
        allows no surrounding whitespace), so that pass, which cost as much again as the
        check, is made only for a head that did not pass.
        """
        headers.extend(self.config.response_headers("h11"))
        if status < 200:
            if as_sent:
                headers = stripped_fields(headers)
            return self.h11_bytes(h11.InformationalResponse(headers=headers, status_code=status))
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        # fields checked and normalised here as h11 would, more cheaply (edge.ingress.h11_fields)
        fields = response_fields(headers) if type(status) is int else None
        if fields is None and as_sent:
            headers = stripped_fields(headers)  # refuses pseudo-headers, strips the rest
            fields = response_fields(headers) if type(status) is int else None
        if fields is None:
            return self.h11_bytes(h11.Response(headers=headers, status_code=status))
        return self.h11_bytes(h11.Response(headers=fields, status_code=status, _parsed=True))

    async def write(self, data: bytes) -> None:
        """Write, then wait while the client is behind (the transport's high-water mark).

        Without the server's lock: on HTTP/1.1 only the exchange in progress writes, and
        ``write`` keeps the order of the calls whatever waits for the drain.
        """
        writer = self._writer
        self.written += len(data)
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            await self.handle(Closed())

    def write_now(self, data: bytes) -> None:
        transport = self.transport()
        if transport is None or transport.is_closing():
            return
        self.written += len(data)
        transport.write(data)

    def write_unless_busy(self, data: bytes) -> None:
        """Write now, unless a write waits for (or holds) the server's lock: what is
        written now must not overtake it (a WebSocket's ping and its handshake's 101)."""
        server = getattr(self._server_send, "__self__", None)
        lock = getattr(server, "send_lock", None)
        if lock is None or not lock.locked():
            self.write_now(data)

    async def stream_ended(self, exchange: H11Exchange) -> None:
        """The exchange is done with the connection (as Hypercorn's ``StreamClosed``)."""
        if self._current() is exchange:
            await self._maybe_recycle()

    def _current(self) -> Any:
        """The stream in progress (Hypercorn types it as one of its own)."""
        return self.stream

    async def invite(self, exchange: H11Exchange) -> None:
        """The app's first read of a request whose client waits for ``100 Continue``."""
        connection = self.connection
        if (
            self._current() is exchange
            and isinstance(connection, ContinueOnRead)
            and not connection.body_wanted
        ):
            connection.body_wanted = True
            await self.invite_body()

    def abort(self) -> None:
        """Drop the connection now, whatever is still buffered for the client."""
        transport = self.transport()
        if transport is not None:
            transport.abort()

    async def invite_body(self) -> None:
        if self.connection.they_are_waiting_for_100_continue:
            await self._send_h11_event(
                h11.InformationalResponse(
                    status_code=100, headers=self.config.response_headers("h11")
                )
            )


def install() -> None:
    """Make Hypercorn build ``GuardedH11Protocol`` for every HTTP/1.1 connection."""
    import hypercorn.protocol

    hypercorn.protocol.H11Protocol = GuardedH11Protocol  # type: ignore[attr-defined]
