"""Loopback servers for test helpers: waiting for one to listen, and running one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from hypercorn.config import Config as HypercornConfig

# a connection's handler: its reader, its writer, and a list it adds any other writers it
# opens to (a relay's upstream side), so that they are aborted with it
Handler = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, list[asyncio.StreamWriter]], Awaitable[None]
]


def loopback_hypercorn(graceful_timeout: float = 1.0) -> tuple[HypercornConfig, int]:
    """A Hypercorn config serving on a free 127.0.0.1 port (handed over as a bound socket,
    so no other test can take the port meanwhile), logs off; and the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.errorlog = None
    config.accesslog = None
    config.graceful_timeout = graceful_timeout
    return config, port


async def wait_listening(port: int, task: asyncio.Task[None]) -> None:
    """Return once 127.0.0.1:port accepts; re-raise at once if the server task failed."""
    for _ in range(200):
        if task.done():
            task.result()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"nothing started listening on port {port}")


@contextlib.asynccontextmanager
async def loopback_server(handle: Handler, *, cancel: bool = False) -> AsyncIterator[int]:
    """Serve ``handle`` on an ephemeral 127.0.0.1 port (yielded) until the block ends.

    At the end every connection still open is aborted (its handler sees the end of its
    reader and returns) and its handler awaited, so no task outlives the test; with
    ``cancel``, the handlers are cancelled too (for ones that sleep rather than read, as
    an upstream that stalls on purpose does).
    """
    handlers: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        held = handlers[task] = [writer]
        try:
            await handle(reader, writer, held)
        finally:
            handlers.pop(task, None)
            writer.close()  # a handler that returns ends its connection (a no-op if it did)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        running = list(handlers.items())
        for _, writers in running:
            for writer in writers:
                writer.transport.abort()
        if cancel:
            for task, _ in running:
                task.cancel()
        await asyncio.gather(*(task for task, _ in running), return_exceptions=True)
        await server.wait_closed()
