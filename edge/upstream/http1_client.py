"""The proxy's HTTP/1.1 client: pooled keep-alive connections on asyncio protocols.

Why not aiohttp's client (which the proxy used until stop 24): per request it builds a
``ClientRequest``, a ``ClientResponse``, a timer context, a stream reader and tracing
hooks, and parses with a general-purpose parser; the proxy needs none of that, and it
paid about as much CPU for the client as for the rest of the hop (``benchmarks.
proxy_clients`` measures the two side by side). What the proxy needs is small: write a
head and stream a body, read a head (``edge.upstream.http1_wire``), stream the body back
with flow control, and put the connection back when both ends are done with it.

Semantics kept from the aiohttp client, and tested: the read timeout is silence from the
upstream (before its head, and between two body reads, counted only while the gateway is
waiting for it: a slow client pauses it), the connect timeout bounds connecting only,
requests beyond ``max_connections`` wait for a free connection, and a connection is
reused only after a complete response that allows it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from edge.upstream.http1_wire import (
    CHUNKED,
    LENGTH,
    MAX_HEAD_BYTES,
    ChunkedReader,
    ResponseHead,
    UpstreamProtocolError,
    find_head_end,
    parse_response_head,
)

_HIGH_WATER = 256 * 1024  # received bytes held before the socket stops being read
_MID_BODY = "the upstream closed the connection mid-body"


class UpstreamClosed(Exception):
    """The upstream closed or reset the connection (``reused`` if it had served before)."""

    def __init__(self, message: str, *, reused: bool, received: bool) -> None:
        super().__init__(message)
        self.reused = reused
        self.received = received


class ReadTimeout(Exception):
    """The upstream sent nothing for the whole read timeout."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: received bytes queued, reading paused when too many."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.held = 0
        self.closed = False
        self.error: BaseException | None = None
        self.served = 0  # responses read in full on this connection
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.held += len(data)
        if self.held > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def _lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if exc is not None and self.error is None:
            self.error = exc
        for future in (self._waiter, self._drained):
            if future is not None and not future.done():
                future.set_result(None)

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
        """Wait until bytes arrive or the connection ends; ``ReadTimeout`` after silence."""
        if self.chunks or self.closed:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except TimeoutError:
            raise ReadTimeout() from None
        finally:
            self._waiter = None

    async def write(self, data: bytes, timeout: float | None) -> None:
        if self.closed or self.transport is None:
            raise UpstreamClosed(
                "the upstream closed the connection", reused=self.served > 0, received=False
            )
        self.transport.write(data)
        drained = self._drained
        if drained is not None and not drained.done():
            try:
                async with asyncio.timeout(timeout):
                    await drained
            except TimeoutError:
                raise ReadTimeout() from None
            if self.closed:
                raise UpstreamClosed(
                    "the upstream closed the connection", reused=self.served > 0, received=False
                )

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._lost(None)  # a reader waiting on this connection hears now, not next turn


class Http1Pool:
    """Keep-alive connections to one upstream's endpoints, at most ``limit`` open at once."""

    def __init__(self, limit: int, connect_timeout: float) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.open = 0
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._tls: ssl.SSLContext | None = None
        self.closed = False

    async def acquire(self, host: str, port: int, tls: bool) -> _Connection:
        idle = self._idle.get((host, port, tls))
        while idle:
            connection = idle.pop()
            if not connection.closed and not connection.chunks:
                return connection
            connection.abort()  # closed while idle, or sent bytes unasked
            self._freed()
        while self.open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.cancelled() and waiter.done():
                    self._wake()  # handed a slot we will not use: pass it on
                raise
            idle = self._idle.get((host, port, tls))
            while idle:
                connection = idle.pop()
                if not connection.closed and not connection.chunks:
                    return connection
                connection.abort()
                self._freed()
        self.open += 1
        try:
            return await self._connect(host, port, tls)
        except BaseException:
            self._freed()
            raise

    async def _connect(self, host: str, port: int, tls: bool) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            context = self._tls
        async with asyncio.timeout(self.connect_timeout):
            _, protocol = await loop.create_connection(
                _Connection, host, port, ssl=context, server_hostname=host if tls else None
            )
        return protocol

    def release(self, connection: _Connection, host: str, port: int, tls: bool) -> None:
        """Back to the pool if it can carry another request, else closed."""
        connection.served += 1
        if connection.closed or connection.chunks or self.closed:
            connection.abort()
            self._freed()
            return
        self._idle.setdefault((host, port, tls), []).append(connection)
        self._wake()

    def discard(self, connection: _Connection) -> None:
        connection.abort()
        self._freed()

    def _freed(self) -> None:
        self.open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
                self.open -= 1
        self._idle.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(
                    UpstreamClosed("the pool closed", reused=False, received=False)
                )


class Http1Response:
    """A response whose head has been read; ``body()`` streams the rest."""

    __slots__ = ("_chunked", "_connection", "_left", "_pool", "_rest", "_where", "head")

    def __init__(
        self,
        head: ResponseHead,
        rest: bytes,
        connection: _Connection,
        pool: Http1Pool,
        where: tuple[str, int, bool],
    ) -> None:
        self.head = head
        self._rest = rest
        self._connection = connection
        self._pool = pool
        self._where = where
        self._left = head.length
        self._chunked = ChunkedReader() if head.framing == CHUNKED else None

    @property
    def status(self) -> int:
        return self.head.status

    def close(self) -> None:
        """Drop the connection now (the rest of the body is still on it)."""
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is not None:
            self._pool.discard(connection)

    async def body(self, timeout: float | None) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection is pooled again when it has all been read."""
        connection = self._connection
        if connection is None:
            raise UpstreamClosed("the response was closed", reused=False, received=True)
        head = self.head
        data, self._rest = self._rest, b""
        if head.framing == LENGTH:
            left = self._left
            if len(data) > left:  # bytes beyond the body: never read as a reply of their own
                connection.chunks.appendleft(data[left:])  # so the line is not reused
                data = data[:left]
            while left:
                if not data:
                    await connection.more(timeout)
                    if self._connection is None:
                        raise UpstreamClosed("the response was closed", reused=False, received=True)
                    if not connection.chunks:
                        raise UpstreamClosed(
                            "the upstream closed the connection mid-body",
                            reused=False,
                            received=True,
                        )
                    data = connection.take()
                if len(data) > left:  # more than its length: the rest is never read
                    connection.chunks.appendleft(data[left:])  # so the line is not reused
                    data = data[:left]
                left -= len(data)
                self._left = left
                yield data
                data = b""
            self._finish()
            return
        chunked = self._chunked
        while True:
            if data:
                if chunked is None:
                    yield data
                else:
                    for piece in chunked.feed(data):
                        yield piece
                    if chunked.done:
                        if chunked.extra:  # as beyond a length: dropped with the line
                            connection.chunks.appendleft(chunked.extra)
                        self._finish()
                        return
                data = b""
            await connection.more(timeout)
            if self._connection is None:
                raise UpstreamClosed("the response was closed", reused=False, received=True)
            if connection.chunks:
                data = connection.take()
            elif chunked is None:  # read until close: the close is the end
                self._finish()
                return
            else:
                raise UpstreamClosed(_MID_BODY, reused=False, received=True)

    def _finish(self) -> None:
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is None:
            return
        if self.head.reusable:
            host, port, tls = self._where
            self._pool.release(connection, host, port, tls)
        else:
            self._pool.discard(connection)


async def exchange(
    pool: Http1Pool,
    where: tuple[str, int, bool],
    method: str,
    head: bytes,
    body: AsyncIterator[bytes] | None,
    chunked: bool,
    timeout: float | None,
) -> Http1Response:
    """Send one request (``head`` already made) and read its response's head.

    ``body`` is sent as it is iterated: as is under a ``Content-Length`` in ``head``,
    else in the chunked coding. An exception from ``body`` itself (the client left) is
    raised unchanged, the upstream connection aborted. A request without a body whose
    pooled connection turns out closed before any reply is sent once more, on a new one.
    """
    host, port, tls = where
    for attempt in (0, 1):
        connection = await pool.acquire(host, port, tls)
        try:
            await _send(connection, head, body, chunked, timeout)
            return await _read_head(connection, pool, where, method, timeout)
        except UpstreamClosed as exc:
            pool.discard(connection)
            if attempt == 0 and exc.reused and not exc.received and body is None:
                continue
            raise
        except BaseException:
            pool.discard(connection)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _send(
    connection: _Connection,
    head: bytes,
    body: AsyncIterator[bytes] | None,
    chunked: bool,
    timeout: float | None,
) -> None:
    if body is None:
        await connection.write(head, timeout)
        return
    pending = head
    async for chunk in body:
        if not chunk:
            continue
        if chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if pending:
            chunk, pending = pending + chunk, b""
        await connection.write(chunk, timeout)
    await connection.write(pending + (b"0\r\n\r\n" if chunked else b""), timeout)


async def _read_head(
    connection: _Connection,
    pool: Http1Pool,
    where: tuple[str, int, bool],
    method: str,
    timeout: float | None,
) -> Http1Response:
    buffer = b""
    while True:
        end = find_head_end(buffer)
        while end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise UpstreamProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            await connection.more(timeout)
            if not connection.chunks:
                raise UpstreamClosed(
                    "the upstream closed the connection before answering",
                    reused=connection.served > 0,
                    received=bool(buffer),
                )
            start = len(buffer)
            buffer += connection.take()
            end = find_head_end(buffer, start)
        if end > MAX_HEAD_BYTES:
            raise UpstreamProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
        head = parse_response_head(buffer[:end], method)
        buffer = buffer[end:]
        if head.status == 101:
            raise UpstreamProtocolError("101 Switching Protocols to a request with no upgrade")
        if head.status >= 200:
            return Http1Response(head, buffer, connection, pool, where)
        # 100 Continue, 103 Early Hints: informational, read on to the final response
