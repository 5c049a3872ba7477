"""The lean client's channel: which address a call goes to, over which connection.

``edge.upstream.lean`` is one HTTP/2 connection; this module turns an upstream's settings
into calls on connections, the way a grpc.aio channel would for the same settings:

- Addresses: one, or several balanced ``round_robin`` (each call to the next connected
  address, the others connecting in the background) or ``pick_first`` (the first
  connected address; with none, each address gets 250 ms before the next is tried too).
  Only connected addresses take calls, as in grpc's balancers, so a replica that refuses
  connections (skipped while it backs off, 0.1 s doubling to 0.25 s, jittered) or accepts
  and hangs costs no call while another is up. With every address failing or backing
  off, calls fail at once with UNAVAILABLE, as grpc's fail-fast calls do. Each address
  resolves by the system resolver when connected and uses one connection; a host name
  with several records is therefore pick-first over those records (grpc's DNS resolver
  balances over them, which is why ``client: auto`` leaves host names to grpc.aio).
- TLS: a context built once at load time from the configured CA (when none, the roots
  grpc ships, as grpc.aio), client certificate and key, with ALPN ``h2``;
  ``server_name`` is both the name verified and the ``:authority`` sent, as grpc's
  ``ssl_target_name_override`` is.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

import grpc
from google.protobuf.message import DecodeError, Message

from edge.call import Call, Reply
from edge.descriptors.registry import MethodInfo
from edge.errors import ConfigError, UpstreamStatus, UpstreamUnreachable
from edge.upstream import lean
from edge.upstream.compression import accept_value, compress, decompress, encoding_of
from edge.upstream.lean import Connection, Refused, ServerStream
from edge.upstream.lean_wire import (
    DEADLINE_MESSAGE,
    MESSAGE_PREFIX,
    Pairs,
    metadata_fields,
    metadata_pairs,
    outcome,
    request_block,
)
from edge.upstream_settings import UpstreamSettings

Invoker = Callable[[Call], Awaitable[Reply]]
Sent = TypeVar("Sent")

_CONNECT_TIMEOUT = 20.0  # grpc's minimum connect timeout
# Reconnects happen on demand (a call, a balancer's background connect or a breaker's
# probe needs the connection), at most one in flight per address and one per backoff.
# The backoff stays short so that an upstream that comes back is used within ~0.3 s:
# grpc's default (1 s doubling to 120 s) let an outage of a minute cost a minute more.
# A dead upstream sees at most ~4 connects a second, and none while no call wants it.
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 0.25
_REFUSED_RETRIES = 50  # C-core can refuse many in a row under a small stream limit
_NEXT_ADDRESS_AFTER = 0.25  # a connect this slow: also try the next address (pick_first's)


class _Unreachable(UpstreamUnreachable):
    """UNAVAILABLE before anything was sent: the call may go to another address."""


def _grpc_roots() -> str | None:
    """The root certificates grpc.aio trusts when no CA is configured: the ones it ships
    (or the file ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` names), not the system's, which a
    slim container image may not have."""
    override = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
    if override:
        return override
    shipped = Path(grpc.__file__).parent / "_cython" / "_credentials" / "roots.pem"
    return str(shipped) if shipped.is_file() else None


def tls_context(settings: UpstreamSettings) -> ssl.SSLContext:
    """The client TLS context for an upstream, made once; a bad file is a config error."""
    ca = str(settings.ca_file) if settings.ca_file is not None else _grpc_roots()
    try:
        context = ssl.create_default_context(cafile=ca)
        if settings.cert_file is not None:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"upstream {settings.name!r}: cannot load its TLS files: {reason}"
        ) from exc
    context.set_alpn_protocols(["h2"])
    return context


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Endpoint:
    """One address: its connection, opened on demand and again after GOAWAY or a loss."""

    def __init__(
        self,
        address: str,
        tls: ssl.SSLContext | None,
        server_name: str | None,
        max_receive: int,
    ) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.tls = tls
        self.server_name = server_name or (self.host if tls is not None else None)
        self.max_receive = max_receive
        self.connection: Connection | None = None
        self.retry_at = 0.0  # while backing off: no connect before this (loop time)
        self._old: set[Connection] = set()  # left after GOAWAY, finishing their streams
        self._connecting: asyncio.Task[Connection] | None = None
        self._backoff = _BACKOFF_FIRST
        self._last_error = ""
        # doubled each time a connection ends with GOAWAY "too_many_pings", as grpc does
        self.keepalive = (lean.KEEPALIVE_TIME, lean.KEEPALIVE_TIMEOUT)

    @property
    def ready(self) -> bool:
        """Connected (SETTINGS received) and taking new calls."""
        connection = self.connection
        return connection is not None and connection.closed is None

    @property
    def last_error(self) -> str:
        return self._last_error

    def start(self) -> asyncio.Task[Connection] | None:
        """Begin connecting, unless connected, connecting already, or backing off."""
        if self._connecting is not None:
            return self._connecting
        loop = asyncio.get_running_loop()
        if self.ready or loop.time() < self.retry_at:
            return None
        self._connecting = loop.create_task(self._open())
        self._connecting.add_done_callback(self._opened)
        return self._connecting

    async def unary(
        self, block: bytes, framed: bytes, metadata: list[bytes], deadline: float | None
    ) -> tuple[bytes, Pairs, Pairs]:
        for _ in range(_REFUSED_RETRIES):
            connection = self.connection
            if connection is None or connection.closed is not None:
                connection = await self._connect(deadline)
            try:
                stream = await connection.call(block, framed, metadata, deadline)
                return outcome(stream.headers, stream.trailers, stream.chunks, self.max_receive)
            except Refused:
                if connection.closed is None and connection.busy:
                    await connection.wait_turn(deadline)  # a stream must end first
        raise UpstreamStatus(14, "the upstream kept refusing the stream")

    async def server_stream(
        self, block: bytes, framed: bytes, metadata: list[bytes], deadline: float | None
    ) -> tuple[Connection, ServerStream]:
        """Open a server stream and wait for its reply's headers (or its end, or failure:
        those the reader raises); a refused stream goes again, as a unary call does."""
        for _ in range(_REFUSED_RETRIES):
            connection = self.connection
            if connection is None or connection.closed is not None:
                connection = await self._connect(deadline)
            try:
                stream = await connection.start(block, framed, metadata, deadline, ServerStream)
            except Refused:
                continue  # this connection takes no new streams: the next one
            try:
                await stream.future
            except Refused:
                connection.release(stream)
                if connection.closed is None and connection.busy:
                    await connection.wait_turn(deadline)  # a stream must end first
                continue
            except BaseException:  # cancelled: so is the stream
                connection.cancel(stream)
                connection.release(stream)
                raise
            return connection, cast(ServerStream, stream)
        raise UpstreamStatus(14, "the upstream kept refusing the stream")

    async def _connect(self, deadline: float | None) -> Connection:
        """The connection for new calls, opening one (shared by every waiting call)."""
        connecting = self.start()
        if connecting is None:
            raise _Unreachable(14, self._last_error)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(connecting)
        except TimeoutError:
            raise UpstreamStatus(4, DEADLINE_MESSAGE) from None
        except UpstreamStatus as error:  # one fresh exception per waiting call
            raise _Unreachable(error.grpc_code, error.message) from None
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if connecting.cancelled() and this is not None and not this.cancelling():
                # the channel was closed under the connect (shutdown), not this call
                raise _Unreachable(14, "the gateway closed the upstream channel") from None
            raise

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        max_receive = self.max_receive
        connection: Connection | None = None
        if self.connection is not None and self.connection.too_many_pings:
            self.connection.too_many_pings = False  # counted once
            self.keepalive = (min(self.keepalive[0] * 2, 86_400.0), self.keepalive[1])
        keepalive = self.keepalive
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                _, connection = await loop.create_connection(
                    lambda: Connection(max_receive, keepalive),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.server_name,
                )
                await connection.ready
        except BaseException as exc:
            if connection is not None:
                connection.close()
            if not isinstance(exc, OSError | TimeoutError):
                raise
            # the errno's own words ("Connection refused"): uvloop's strerror repeats the
            # address as a Python tuple
            errno = exc.errno if isinstance(exc, OSError) else None
            if errno and not isinstance(exc, ssl.SSLError):
                reason = os.strerror(errno)
            else:  # a TLS failure's own words say which check failed
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._last_error = f"failed to connect to {self.address}: {reason or 'timed out'}"
            delay = self._backoff * random.uniform(0.8, 1.2)  # jitter
            self.retry_at = loop.time() + delay
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            raise UpstreamStatus(14, self._last_error) from exc
        self._backoff = _BACKOFF_FIRST
        self.retry_at = 0.0
        previous, self.connection = self.connection, connection
        self._old = {old for old in self._old if old.busy}
        if previous is not None and previous.busy:
            self._old.add(previous)  # draining after GOAWAY; closed with the channel
        return connection

    def _opened(self, task: asyncio.Task[Connection]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved: each waiting call raised its own copy

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        for connection in (self.connection, *self._old):
            if connection is not None:
                connection.close()
        self.connection = None
        self._old.clear()


def _outgoing(
    call: Call, max_send: int, compression: str | None
) -> tuple[bytes, float | None, list[bytes]]:
    """What every lean call sends: its message framed (compressed as C-core does, only
    when that makes it smaller), its deadline on the loop's clock, its metadata fields."""
    request = call.request.SerializeToString()
    if len(request) > max_send:
        raise UpstreamStatus(8, f"Sent message larger than max ({len(request)} vs. {max_send})")
    flag = 0
    if compression is not None:
        flag, request = compress(compression, request)
    framed = MESSAGE_PREFIX.pack(flag, len(request)) + request
    deadline = None
    if call.timeout is not None:
        deadline = asyncio.get_running_loop().time() + call.timeout
    metadata = metadata_fields(call.metadata) if call.metadata else []
    return framed, deadline, metadata


class LeanChannel:
    """The lean client's channel to one upstream: its addresses and how calls pick one.

    Made outside the loop is fine; connections are opened by the first call (like
    grpc.aio's lazy channels).
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        addresses = settings.addresses or (settings.target,)
        tls = tls_context(settings) if settings.tls else None
        self._tls = tls is not None
        self._max_send = settings.max_send_bytes
        self._endpoints = tuple(
            _Endpoint(address, tls, settings.server_name, settings.max_receive_bytes)
            for address in addresses
        )
        self._compression = settings.request_compression
        self._encoding_fields = (
            settings.request_compression.encode() if settings.request_compression else None,
            accept_value(settings.accept_compression),
        )
        self._authorities = tuple(settings.server_name or address for address in addresses)
        self._round_robin = settings.load_balancing == "round_robin"
        self._next = 0

    def _request_blocks(self, method: MethodInfo) -> tuple[bytes, ...]:
        """The request's header block per authority, encoded once per method."""
        return tuple(
            request_block(method.grpc_path, authority, self._tls, *self._encoding_fields)
            for authority in self._authorities
        )

    def invoker(self, method: MethodInfo) -> Invoker:
        """The unary invoker for ``method``: its header blocks are encoded once, here."""
        blocks = self._request_blocks(method)
        parse = method.output_type.FromString
        max_send = self._max_send
        compression = self._compression
        if len(blocks) == 1:
            endpoint, block = self._endpoints[0], blocks[0]

            async def send(
                framed: bytes, metadata: list[bytes], deadline: float | None
            ) -> tuple[bytes, Pairs, Pairs]:
                try:
                    return await endpoint.unary(block, framed, metadata, deadline)
                except _Unreachable as error:  # nothing was sent: the breaker may know it
                    raise UpstreamUnreachable(error.grpc_code, error.message) from None

        else:

            async def send(
                framed: bytes, metadata: list[bytes], deadline: float | None
            ) -> tuple[bytes, Pairs, Pairs]:
                return await self._balanced(
                    lambda endpoint, block: endpoint.unary(block, framed, metadata, deadline),
                    blocks,
                    deadline,
                )

        async def invoke(call: Call) -> Reply:
            framed, deadline, metadata = _outgoing(call, max_send, compression)
            message, initial, trailing = await send(framed, metadata, deadline)
            try:
                reply = parse(message)
            except DecodeError as exc:
                raise UpstreamStatus(13, "Exception deserializing response!") from exc
            return Reply(reply, initial_metadata=initial, trailing_metadata=trailing)

        return invoke

    def stream_invoker(self, method: MethodInfo) -> Invoker:
        """The server-streaming invoker for ``method``: the reply's messages are read as
        they arrive (``_read``), its headers are the reply's initial metadata."""
        blocks = self._request_blocks(method)
        parse = method.output_type.FromString
        max_send = self._max_send
        compression = self._compression
        max_receive = self._endpoints[0].max_receive

        async def invoke(call: Call) -> Reply:
            framed, deadline, metadata = _outgoing(call, max_send, compression)
            try:
                connection, stream = await self._balanced(
                    lambda endpoint, block: endpoint.server_stream(
                        block, framed, metadata, deadline
                    ),
                    blocks,
                    deadline,
                )
            except _Unreachable as error:
                raise UpstreamUnreachable(error.grpc_code, error.message) from None
            initial = metadata_pairs(stream.initial) if stream.initial is not None else ()

            def cancel() -> None:
                connection.cancel(stream, UpstreamStatus(1, "the call was cancelled"))

            reply = Reply(initial_metadata=initial, cancel=cancel)
            reply.stream = _Messages(connection, stream, parse, max_receive, reply)
            return reply

        return invoke

    async def _balanced(
        self,
        send: Callable[[_Endpoint, bytes], Awaitable[Sent]],
        blocks: tuple[bytes, ...],
        deadline: float | None,
    ) -> Sent:
        """Send on the next connected address, as grpc's balancers pick only ready ones.

        round_robin rotates over the connected addresses and keeps connecting to the
        rest in the background; pick_first takes the first connected one in address
        order. With none connected, ``_first_ready`` connects. A replica that accepts TCP
        and then hangs is never given calls, and one lost between the pick and the send
        passes the call on.
        """
        endpoints = self._endpoints
        count = len(endpoints)
        start = 0
        if self._round_robin:
            start, self._next = self._next, (self._next + 1) % count
        order = [(start + step) % count for step in range(count)]
        ready = [i for i in order if endpoints[i].ready]
        if self._round_robin and len(ready) < count:
            for i in order:
                endpoints[i].start()  # no-op when connected, connecting or backing off
        if not ready:
            ready = [await self._first_ready(order, deadline)]
        failure: UpstreamStatus | None = None
        for index in ready:
            try:
                return await send(endpoints[index], blocks[index])
            except _Unreachable as error:
                failure = error
        assert failure is not None
        raise UpstreamUnreachable(failure.grpc_code, failure.message)

    async def _first_ready(self, order: list[int], deadline: float | None) -> int:
        """Connect in ``order``, giving each address 250 ms before also trying the next
        (grpc's pick_first does the same), and take the first that is ready."""
        endpoints = self._endpoints
        loop = asyncio.get_running_loop()
        pending: dict[asyncio.Task[Connection], int] = {}

        def left() -> float | None:
            if deadline is None:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamStatus(4, DEADLINE_MESSAGE)
            return remaining

        for i in order:
            task = endpoints[i].start()
            if endpoints[i].ready:
                return i
            if task is None:
                continue  # backing off
            pending[task] = i
            remaining = left()
            step = _NEXT_ADDRESS_AFTER if remaining is None else min(_NEXT_ADDRESS_AFTER, remaining)
            await asyncio.wait([task], timeout=step)
            if endpoints[i].ready:
                return i
        while pending:
            done, _ = await asyncio.wait(
                pending, timeout=left(), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise UpstreamStatus(4, DEADLINE_MESSAGE)
            for task in done:
                index = pending.pop(task)
                if endpoints[index].ready:
                    return index
        # every address failed to connect or is backing off: fail at once, as grpc does
        soonest = min(order, key=lambda i: endpoints[i].retry_at)
        raise UpstreamStatus(14, endpoints[soonest].last_error or "no address could be reached")

    async def close(self) -> None:
        for endpoint in self._endpoints:
            endpoint.close()


class _Messages:
    """A server stream's messages, one at a time as the reader asks, then its status.

    Each message read hands its bytes back to the server's send window (``credit``), so
    the server sends only as fast as this is read. On OK the trailers become the reply's
    trailing metadata; an error status raises ``UpstreamStatus`` as grpc.aio's reader
    does. However the reader leaves (the end, an error, ``aclose``, cancelled, or this
    object dropped unread), a stream still open is reset with CANCEL, so the upstream
    stops working on it. A class, not an async generator: a generator never started
    runs no ``finally`` when closed, and would leave the upstream stream open.
    """

    __slots__ = (
        "_closed",
        "_connection",
        "_encoding",
        "_max_receive",
        "_parse",
        "_reply",
        "_stream",
    )

    def __init__(
        self,
        connection: Connection,
        stream: ServerStream,
        parse: Callable[[bytes], Message],
        max_receive: int,
        reply: Reply,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._parse = parse
        self._max_receive = max_receive
        self._reply = reply
        headers = stream.initial
        self._encoding = encoding_of(headers) if headers is not None else None
        self._closed = False

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Message:
        stream = self._stream
        messages = stream.messages
        try:
            while True:
                if messages:
                    item = messages.popleft()
                    if type(item) is bytes:
                        self._connection.credit(stream, len(item) + 5)
                        payload = item
                    else:
                        flag, packed = cast(tuple[int, bytes], item)
                        self._connection.credit(stream, len(packed) + 5)
                        try:
                            payload = decompress(self._encoding, flag, packed, self._max_receive)
                        except UpstreamStatus as error:  # with the metadata, as grpc.aio's
                            initial = metadata_pairs(stream.initial or [])
                            raise UpstreamStatus(
                                error.grpc_code, error.message, initial_metadata=initial
                            ) from None
                    try:
                        return self._parse(payload)
                    except DecodeError as exc:
                        raise UpstreamStatus(13, "Exception deserializing response!") from exc
                if stream.ending:
                    self._close()
                    if stream.end is not None:
                        raise stream.end
                    headers = stream.trailers or stream.headers or []
                    self._reply.trailing_metadata = metadata_pairs(headers)
                    raise StopAsyncIteration
                if self._closed:
                    raise StopAsyncIteration
                waiter = stream.waiter = self._connection.loop.create_future()
                await waiter
        except StopAsyncIteration:
            raise
        except BaseException:  # cancelled, or a bad message: the upstream call ends too
            self._close()
            raise

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.cancel(self._stream)  # still open: the upstream stops too
            self._connection.release(self._stream)

    def __del__(self) -> None:
        if not self._closed and not self._connection.loop.is_closed():
            self._close()
