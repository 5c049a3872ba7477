"""The floor for an idle WebSocket: a bare ASGI app under Hypercorn, configured as ``edge serve``.

It accepts every WebSocket (echoing the first offered subprotocol) and then only waits
for the client's frames, so its memory per socket is what Hypercorn and the event loop
cost, which no change in ``edge/`` can go below. Run as
``python -m benchmarks.memory_floor HOST:PORT`` (``benchmarks.memory`` does, for its
``ws-floor`` row).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

from hypercorn.asyncio import serve
from hypercorn.typing import ASGIFramework

from benchmarks.bare_app import Message, Receive, Send, _lifespan
from benchmarks.bare_app import app as http_app
from edge.cli import hypercorn_config, run_with_loop
from edge.config import Config, ServerConfig


async def app(scope: Message, receive: Receive, send: Send) -> None:
    """Accept a WebSocket and hold it until the client leaves; HTTP as the bare app."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "http":
        await http_app(scope, receive, send)
        return
    await receive()  # websocket.connect
    offered = scope.get("subprotocols") or [None]
    await send({"type": "websocket.accept", "subprotocol": offered[0]})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def run(bind: str) -> None:
    config = hypercorn_config(Config(server=ServerConfig(bind=[bind], graceful_timeout=1.0)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bind")
    args = parser.parse_args()
    run_with_loop(run(args.bind), ServerConfig().event_loop)


if __name__ == "__main__":
    main()
