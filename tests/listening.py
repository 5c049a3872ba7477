"""Waiting for a server started in a task to accept connections, for every test helper."""

from __future__ import annotations

import asyncio


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
