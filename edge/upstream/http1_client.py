"""The proxy's HTTP/1.1 client: one exchange on a pooled connection, both ways at once.

Why not aiohttp's client (which the proxy used until stop 24): per request it builds a
``ClientRequest``, a ``ClientResponse``, a timer context, a stream reader and tracing
hooks, and parses with a general-purpose parser; the proxy needs none of that, and it
paid about as much CPU for the client as for the rest of the hop (``benchmarks.
proxy_clients`` measures them side by side). What the proxy needs is small: write a head,
send the body while reading the response (an upstream may answer before the upload ends,
or stream both ways), read the head (``edge.upstream.http1_wire``), stream the body back
with flow control, and put the connection back only when both directions are done.

Semantics kept from the aiohttp client, and tested: the read timeout is silence from the
upstream (before its head, and between two body reads, counted only while the gateway is
waiting for it: a slow client pauses it), the connect timeout bounds connecting only,
and only idempotent requests are sent again when a pooled connection turns out to be
closed. Requests beyond ``max_connections`` wait for a free connection, but now for at
most the connect timeout (``PoolFull``), where aiohttp waited for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from edge.upstream.http1_pool import (
    Http1Connection,
    Http1Pool,
    PoolFull,
    ReadTimeout,
    UpstreamClosed,
    Where,
)
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

__all__ = ["Http1Pool", "Http1Response", "PoolFull", "ReadTimeout", "UpstreamClosed", "exchange"]

_MID_BODY = "the upstream closed the connection mid-body"
# RFC 9110 9.2.2: safe to send twice (aiohttp retries the same set)
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class BodyLengthMismatch(Exception):
    """The request body sent did not match its ``Content-Length`` (the line is dropped)."""


class Http1Response:
    """A response whose head has been read; ``body`` streams the rest.

    While the request body is still being sent (``sender``), the connection is not
    reusable; closing the response (``close``) drops the connection and stops the sender.
    """

    __slots__ = (
        "_chunked",
        "_connection",
        "_finished",
        "_loop",
        "_pool",
        "_rest",
        "_sender",
        "_where",
        "head",
    )

    def __init__(
        self,
        head: ResponseHead,
        rest: bytes,
        connection: Http1Connection,
        pool: Http1Pool,
        where: Where,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self.head = head
        self._rest = rest
        self._connection: Http1Connection | None = connection
        self._pool = pool
        self._where = where
        self._sender = sender
        self._chunked = ChunkedReader() if head.framing == CHUNKED else None
        self._finished = False  # the whole body was read
        self._loop = asyncio.get_running_loop()

    @property
    def status(self) -> int:
        return self.head.status

    def close(self) -> None:
        """Drop the connection now (the rest of the body is still on it)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.discard(connection)
        sender = self._sender
        if sender is not None and not sender.done():
            sender.cancel()

    def __del__(self) -> None:
        connection = self._connection
        if connection is not None:  # dropped unread: never hold the slot for ever
            # the collector may run this on another thread: the loop's own thread closes it
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                self._loop.call_soon_threadsafe(_drop, self._pool, connection, self._sender)

    def body(self, timeout: float | None) -> ResponseBody:
        return ResponseBody(self, timeout)

    def _finish(self) -> None:
        """The whole body is read: the connection goes back if the request is sent too."""
        self._finished = True
        connection, self._connection = self._connection, None
        if connection is None:
            return
        sender = self._sender
        sent = sender is None or (sender.done() and not sender.cancelled() and not _failed(sender))
        if self.head.reusable and sent:
            self._pool.release(connection, self._where)
        else:
            self._pool.discard(connection)
            if sender is not None and not sender.done():
                sender.cancel()  # an early answer: the rest of the upload is not wanted

    def _broken(self) -> BaseException:
        """Why the connection ended early: the client's own failure while sending, if that
        is what ended it, else the upstream's."""
        sender = self._sender
        if sender is not None and _failed(sender):
            return sender.exception()  # type: ignore[return-value]
        return UpstreamClosed(_MID_BODY)


def _drop(pool: Http1Pool, connection: Http1Connection, sender: asyncio.Task[None] | None) -> None:
    pool.discard(connection)
    if sender is not None and not sender.done():
        sender.cancel()


class ResponseBody:
    """A response's body as it arrives; ``aclose`` before the end drops the connection.

    A class, not a generator: ``aclose`` on a generator that never started runs none of
    its code, and a reply dropped unread must still give its connection back.
    """

    __slots__ = ("_data", "_left", "_response", "_timeout")

    def __init__(self, response: Http1Response, timeout: float | None) -> None:
        self._response = response
        self._timeout = timeout
        self._left = response.head.length
        self._data = response._rest
        response._rest = b""

    def __aiter__(self) -> ResponseBody:
        return self

    async def aclose(self) -> None:
        self._response.close()

    async def __anext__(self) -> bytes:
        response = self._response
        connection = response._connection
        if connection is None:
            if response._finished:
                raise StopAsyncIteration
            raise UpstreamClosed("the response was closed before its end")
        try:
            if response.head.framing == LENGTH:
                return await self._sized(connection)
            return await self._unsized(connection)
        except StopAsyncIteration:
            raise
        except BaseException:
            response.close()
            raise

    async def _sized(self, connection: Http1Connection) -> bytes:
        left = self._left
        data, self._data = self._data, b""
        while True:
            if len(data) > left:  # bytes beyond the body: never read as a reply of their own
                connection.chunks.appendleft(data[left:])  # so the line is not reused
                data = data[:left]
            if data or not left:
                self._left = left = left - len(data)
                if not left:  # the whole body: the connection is free before the last write
                    self._response._finish()
                if data:
                    return data
                raise StopAsyncIteration
            data = await self._next(connection)

    async def _unsized(self, connection: Http1Connection) -> bytes:
        response = self._response
        chunked = response._chunked
        data, self._data = self._data, b""
        while True:
            if data:
                if chunked is None:
                    return data
                pieces = chunked.feed(data)
                if chunked.done:
                    if chunked.extra:  # as beyond a length: dropped with the line
                        connection.chunks.appendleft(chunked.extra)
                    response._finish()
                if pieces:
                    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
                if chunked.done:
                    raise StopAsyncIteration
            data = await self._next(connection)
            if not data:  # read until close, and the upstream closed cleanly: the end
                response._finish()
                raise StopAsyncIteration

    async def _next(self, connection: Http1Connection) -> bytes:
        """The next bytes; b"" for a clean close where the framing allows one (read until
        close), else the error that ended the connection."""
        response = self._response
        while True:
            await connection.more(self._timeout)
            if connection.chunks:
                return connection.take()
            if not connection.closed:
                sender = response._sender
                if sender is not None and _failed(sender):
                    raise response._broken()
                continue  # woken by the request body's end: keep waiting for bytes
            until_close = response.head.framing != LENGTH and response._chunked is None
            if until_close and connection.eof and not connection.aborted:
                # the upstream's clean close ends such a body, even mid-upload (the upload
                # failing on that close is its consequence); a client that left is not
                sender = response._sender
                if sender is not None and _failed(sender):
                    error = sender.exception()
                    if not isinstance(error, UpstreamClosed):
                        raise error  # type: ignore[misc]
                return b""
            raise response._broken()  # a reset or our own abort: never a complete reply


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


async def exchange(
    pool: Http1Pool,
    where: Where,
    method: str,
    head: bytes,
    body: AsyncIterator[bytes] | None,
    length: int | None,
    timeout: float | None,
) -> Http1Response:
    """Send one request (``head`` already made) and read its response's head.

    ``body`` is sent as it is iterated, alongside reading the response: under its
    ``Content-Length`` (``length``, held to it exactly) or, when ``length`` is None, in
    the chunked coding (``head`` says which). An exception from ``body`` itself (the
    client left) is raised unchanged and the upstream connection aborted. An idempotent
    request without a body whose pooled connection turns out closed before any reply is
    sent once more, on a new connection.
    """
    for attempt in (0, 1):
        connection = await pool.acquire(where)
        sender = None
        try:
            if body is None:
                await connection.write(head, timeout)
            else:
                sender = asyncio.get_running_loop().create_task(
                    _send(connection, head, body, length, timeout)
                )
                sender.add_done_callback(_Sent(connection))
            return await _read_head(connection, pool, where, method, timeout, sender)
        except BaseException as exc:
            pool.discard(connection)
            if sender is not None and not sender.done():
                sender.cancel()
            if (
                isinstance(exc, UpstreamClosed)
                and attempt == 0
                and exc.reused
                and not exc.received
                and body is None
                and method in _IDEMPOTENT
            ):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


class _Sent:
    """The body sender's end: its error retrieved (whoever needs it reads it from the
    task), and the reader on the connection woken to look."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Http1Connection) -> None:
        self._connection = connection

    def __call__(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()
        self._connection.wake()


async def _send(
    connection: Http1Connection,
    head: bytes,
    body: AsyncIterator[bytes],
    length: int | None,
    timeout: float | None,
) -> None:
    """The head and the body; on any failure the connection is aborted (the reader then
    hears why from this task)."""
    try:
        pending = head
        sent = 0
        async for chunk in body:
            if not chunk:
                continue
            sent += len(chunk)
            if length is None:
                chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
            elif sent > length:
                raise BodyLengthMismatch(f"the request body is longer than its {length} bytes")
            if pending:
                chunk, pending = pending + chunk, b""
            await connection.write(chunk, timeout)
        if length is not None and sent != length:
            raise BodyLengthMismatch(f"the request body has {sent} of its {length} bytes")
        ending = pending + (b"0\r\n\r\n" if length is None else b"")
        if ending:
            await connection.write(ending, timeout)
    except BaseException:
        if not connection.closed:  # closed by the upstream: not ours to call an abort
            connection.abort()
        raise


MAX_INFORMATIONAL = 16  # 1xx replies read past before the final one; more is a 502


async def _read_head(
    connection: Http1Connection,
    pool: Http1Pool,
    where: Where,
    method: str,
    timeout: float | None,
    sender: asyncio.Task[None] | None,
) -> Http1Response:
    buffer = b""
    for _ in range(MAX_INFORMATIONAL + 1):
        end = find_head_end(buffer)
        while end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise UpstreamProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            if not connection.chunks:  # what came is read first: an answer beats an error
                if sender is not None and _failed(sender):
                    raise sender.exception()  # type: ignore[misc]
                if connection.closed:
                    raise UpstreamClosed(
                        "the upstream closed the connection before answering",
                        reused=connection.served > 0,
                        received=bool(buffer),
                    )
                # the read timeout starts once the request is sent (the upload has its own)
                sending = sender is not None and not sender.done()
                await connection.more(None if sending else timeout)
                continue
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
            return Http1Response(head, buffer, connection, pool, where, sender)
        # 100 Continue, 103 Early Hints: informational, read on to the final response
    raise UpstreamProtocolError(f"more than {MAX_INFORMATIONAL} informational replies")
