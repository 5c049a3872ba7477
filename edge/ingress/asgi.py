"""The transport side every ingress adapter shares: sending, reading, watching a client.

One body reader (with the size limit), one disconnect watcher, one way to answer with a
body still arriving, one stalled-write rule. Errors are turned into protocol forms in
``edge.ingress.render``; this module only moves bytes and ASGI events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any

from edge.call import Call, Reply
from edge.errors import BodyTooLarge, ClientDisconnected, ClientStalled, EdgeError
from edge.ingress.steps import start_step

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = ((b"content-type", b"application/json"),)
# The request id of the request this task serves (set by the observe middleware), so an
# error logged deep in an adapter can be matched with the access log line and the client.
REQUEST_ID: ContextVar[str | None] = ContextVar("edge_request_id", default=None)


# The scope extensions through which the server lets the app drop a connection at once,
# and see whether its client is still taking bytes (both set by edge.ingress.h11_continue
# for Hypercorn's HTTP/1.1 connections on asyncio).
ABORT_EXTENSION = "edge.abort"
PROGRESS_EXTENSION = "edge.progress"
# And one through which the app hears that its client has gone without a task reading
# ``receive`` for it: ``on_disconnect(callback)`` calls ``callback`` once the connection
# has closed and returns the function that takes the callback back (edge.ingress.
# h11_exchange, for HTTP/1.1 requests).
DISCONNECT_EXTENSION = "edge.on_disconnect"


def timed_send(send: Send, timeout: float | None, scope: Scope) -> Send:
    """``send`` for a long answer (a stream, a WebSocket): a client that takes nothing for
    ``timeout`` s ends it.

    A client that stops reading fills its connection's send buffer; every write then waits
    for it, the close included, and the connection with its upstream call lives for ever.
    The rule is about the client's progress, not about one ``send``: a single send of a
    large message waits (write buffer above its high-water mark) until the client has
    taken nearly all of it, and the kernel wakes the writer only when a third of its send
    buffer (megabytes on a fast link) is free again, so a client steadily reading slower
    than that per ``timeout`` saw one send outlast it. Where the server offers
    ``edge.progress`` (bytes the client has acknowledged so far), a send is ended only
    after ``timeout`` s in which that count did not grow (checked every quarter of it);
    elsewhere (HTTP/2) one send may last ``timeout`` s. On the timeout the connection is
    aborted (where the server offers ``edge.abort``) and ``ClientStalled`` raised, so the
    caller ends its call as for a client that left. A send the transport takes at once
    (most of a stream's) pays for none of this: it is started by hand and only finished
    under the timeout if it has to wait (``edge.ingress.steps``).
    """
    if timeout is None:
        return send
    extensions = scope.get("extensions") or {}
    abort = extensions.get(ABORT_EXTENSION)
    progress: Callable[[], int] | None = extensions.get(PROGRESS_EXTENSION)
    step = timeout / 4

    async def send_timed(message: Message) -> None:
        # started by hand: a send the transport takes at once cannot have stalled, and
        # pays for no timeout, timer or progress look (edge.ingress.steps)
        done, pending = start_step(send(message))
        if done:
            return
        try:
            async with asyncio.timeout(timeout) as deadline:
                if progress is None:
                    await pending
                    return
                loop = asyncio.get_running_loop()
                best = progress()
                watch: asyncio.TimerHandle | None = None

                def check() -> None:
                    nonlocal best, watch
                    if deadline.expired():
                        return
                    now = progress()
                    if now > best:  # the client took bytes since the last look: more time
                        best = now
                        deadline.reschedule(loop.time() + timeout)
                    watch = loop.call_later(step, check)

                watch = loop.call_later(step, check)
                try:
                    await pending
                finally:
                    if watch is not None:
                        watch.cancel()
        except TimeoutError:
            if abort is not None:
                abort()
            raise ClientStalled(f"the client read nothing for {timeout:g}s") from None

    return send_timed


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a request header, undecoded (ASGI names are lower case)."""
    for key, value in headers:
        if key == name:
            return value
    return None


def first_values(
    headers: Sequence[tuple[bytes, bytes]], names: frozenset[bytes]
) -> dict[bytes, bytes]:
    """The first value of each of ``names`` that the request has, in one pass."""
    found: dict[bytes, bytes] = {}
    for key, value in headers:
        if key in names and key not in found:
            found[key] = value
    return found


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (the guard has refused several that disagree)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def request_body(
    receive: Receive, limit: int | None = None, ended: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, as it arrives: the one reader every adapter uses.

    More than ``limit`` bytes in all is BodyTooLarge (413); a client that goes away before
    the end is ClientDisconnected. ``ended`` is set once the last chunk has been read:
    from then on ``receive`` only reports a disconnect, and a watcher may take it over.
    """
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected("the client went away while sending its body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            yield chunk
        if not message.get("more_body", False):
            break
    if ended is not None:
        ended.set()


def replayed(first: Message, receive: Receive) -> Receive:
    """``receive`` giving back ``first`` (already taken, to look at) before the rest."""
    pending = [first]

    async def receive_again() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return receive_again


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413.

    ``Content-Length`` is checked before reading, so an honest oversized request is
    refused without its body being received at all.
    """
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    # the same rules as request_body, without an async generator's machinery: this is
    # the hot path of every unary call with a body
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnected("the client went away while sending its body")
    first: bytes = message.get("body", b"")
    if len(first) > limit:
        raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
    if not message.get("more_body", False):
        return first
    chunks = [first]
    size = len(first)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected("the client went away while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# How much of a refused request body is read and dropped after the 413, and for how long.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 10.0
LINGER_IDLE_SECONDS = 2.0  # a client that stops sending is not waited for (nginx: 5 s)


async def send_refusal(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> None:
    """Answer a request whose body is refused (413) while the client may still send it.

    The answer goes out at once, but on HTTP/1.1 its end is held back while the rest of
    the body is read and dropped, within bounds: Hypercorn closes the connection when a
    response ends before its request has, and a client that reads only after sending
    everything would then write into a closed connection and lose the answer (nginx's
    "lingering close" is for the same). The client has every byte of the answer from the
    start (its Content-Length is met); only the connection's fate waits. Not for
    ``Expect: 100-continue``, whose client waits for our answer before sending and must
    not be invited to send it all for nothing; HTTP/2 resets just the stream.
    """
    linger = scope.get("http_version") == "1.1" and not any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )
    if not linger:
        await send_response(send, status, body, headers)
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    drained = 0
    # the answer is out: a client too slow for the request guard (RequestTimeout) or gone
    # ends the lingering, never the answer
    with contextlib.suppress(TimeoutError, EdgeError):
        async with asyncio.timeout(LINGER_SECONDS):
            while drained <= LINGER_BYTES:
                async with asyncio.timeout(LINGER_IDLE_SECONDS):
                    message = await receive()
                if message["type"] != "http.request":
                    break
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_response(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def close_stream(stream: Any) -> None:
    """End a reply stream however we stopped reading it: records its outcome, frees the call."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def wait_for_disconnect(receive: Receive, after: asyncio.Event | None = None) -> None:
    """Return when the client has gone; ``after``: only once the request body has ended.

    Until the body has ended its own reader sees a disconnect (``request_body`` raises),
    and two readers of one ``receive`` would steal each other's events.
    """
    if after is not None:
        await after.wait()
    while (await receive())["type"] != "http.disconnect":
        pass  # an empty request's own http.request event may still be unread


def _nothing() -> None:
    return None


def watch_disconnect(
    receive: Receive,
    on_disconnect: Callable[[], object] | None,
    after: asyncio.Event | None = None,
) -> asyncio.Task[None]:
    """A task calling ``on_disconnect`` when the client goes: the one disconnect watcher.

    Hypercorn tells an app about a lost client only through ``receive``, and never
    cancels it; without a watcher, a client that gives up leaves its upstream call running
    to its deadline. Stop it with ``stop_watching`` when the answer is complete.
    """

    return asyncio.get_running_loop().create_task(_watch(receive, on_disconnect or _nothing, after))


async def _watch(
    receive: Receive, react: Callable[[], object], after: asyncio.Event | None
) -> None:
    # a module-level coroutine, not a closure: most watchers are stopped before they
    # ever run, and building a closure per request was pure cost
    await wait_for_disconnect(receive, after)
    react()


async def first_message(
    reply: Reply, receive: Receive, body_ended: asyncio.Event | None = None
) -> tuple[Any, asyncio.Task[None]]:
    """Watch for a disconnect, then wait for a reply stream's first message (None: empty).

    Every streaming adapter starts this way: the watcher runs before the first message is
    awaited, so a client that leaves while the upstream is still silent cancels the call
    at once, not when the first message finally comes; for a bidi stream it starts once
    the request body has ended (``body_ended``: until then the request stream's reader
    sees the disconnect). The first message is awaited before the response starts, so an
    early failure still gets the protocol's own error form: if waiting raises, the
    watcher is stopped and the stream closed before the error goes on. Returns the
    message and the watcher, which the caller stops when the answer is complete.
    """
    assert reply.stream is not None
    watcher = watch_disconnect(receive, reply.cancel, body_ended)
    try:
        first = await anext(reply.stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stop_watching(watcher)
        await close_stream(reply.stream)
        raise
    return first, watcher


async def stop_watching(watcher: asyncio.Task[None]) -> None:
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


def saw_disconnect(watcher: asyncio.Task[None]) -> bool:
    return watcher.done() and not watcher.cancelled() and watcher.exception() is None


def disconnect_hook(
    scope: Scope | None,
) -> Callable[[Callable[[], object]], Callable[[], object]] | None:
    """The server's ``on_disconnect`` (``DISCONNECT_EXTENSION``), where it offers one."""
    if scope is None:
        return None
    extensions = scope.get("extensions")
    return extensions.get(DISCONNECT_EXTENSION) if extensions else None


async def call_unless_disconnected(
    chain: Callable[[Call], Awaitable[Reply]],
    call: Call,
    receive: Receive,
    body_ended: asyncio.Event | None = None,
    scope: Scope | None = None,
) -> Reply | None:
    """Run the chain, cancelling it if the client hangs up first; None means it did.

    The watcher cancels this very task rather than running the chain in a child task,
    which would cost a second task per request. The cancel always lands inside the chain:
    the watcher is stopped in the same step that the chain returns, so it cannot fire
    after. For a client stream (``body_ended`` given), the request stream's reader sees a
    disconnect while the body lasts; the watcher takes over once it has ended. Where the
    server offers ``DISCONNECT_EXTENSION`` in ``scope`` (and the body is read), it calls
    back instead of a watcher task, with the same guarantee: the callback cancels this
    task only while it waits in the chain, and is taken back in the step the chain returns.
    """
    task = asyncio.current_task()
    assert task is not None
    hook = disconnect_hook(scope) if body_ended is None else None
    if hook is not None:  # the server tells us: no watcher task (a task made per request)
        gone: list[bool] = []

        def leave() -> None:
            gone.append(True)
            task.cancel()

        take_back = hook(leave)
        try:
            return await chain(call)
        except asyncio.CancelledError:
            if gone:
                task.uncancel()
                return None
            raise
        finally:
            take_back()
    watcher = watch_disconnect(receive, task.cancel, body_ended)
    try:
        return await chain(call)
    except asyncio.CancelledError:
        if saw_disconnect(watcher):
            task.uncancel()
            return None
        raise
    finally:
        watcher.cancel()
