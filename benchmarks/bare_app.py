"""The ceiling: a bare ASGI app under Hypercorn configured exactly as ``edge serve`` configures it.

Whatever CPU per request this costs is the HTTP server's share, which no gateway built on
Hypercorn can go below; the gateway's figure divided by this one is the cost of
transcoding, routing and the gRPC hop. It also holds WebSockets, for the memory
benchmark's floor row. Run as ``python -m benchmarks.bare_app HOST:PORT``.

The reply is a fixed JSON body the size of the gateway's GetBook reply, so both send the
same bytes; the request body is read to the end, as the gateway must read it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from hypercorn.asyncio import serve
from hypercorn.typing import ASGIFramework

from edge.cli import hypercorn_config, run_with_loop
from edge.config import Config, ServerConfig

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = (
    b'{"name":"shelves/1/books/1","title":"The Left Hand of Darkness",'
    b'"author":"Ursula K. Le Guin","genre":"GENRE_FICTION","pageCount":"304",'
    b'"createTime":"2026-01-01T00:00:00.000000000Z"}'
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Message, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with ``BODY`` after draining the request body; accept a
    WebSocket and hold it until the client leaves (the memory benchmark's floor)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await _hold(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _hold(scope: Message, receive: Receive, send: Send) -> None:
    """What Hypercorn and the event loop alone cost per socket: accepted (echoing the first
    offered subprotocol), then only waiting for the client's frames."""
    await receive()  # websocket.connect
    offered = scope.get("subprotocols") or [None]
    await send({"type": "websocket.accept", "subprotocol": offered[0]})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def run(bind: str) -> None:
    # The same Hypercorn settings as the gateway: built by the gateway's own function from
    # the same server section the benchmark gives the gateway.
    config = hypercorn_config(Config(server=ServerConfig(bind=[bind], graceful_timeout=1.0)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Plain mappings rather than hypercorn's TypedDict events: the app is too small to need them.
    await serve(cast(ASGIFramework, app), config, shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bind", help="host:port to listen on")
    # the same event loop the gateway picks (uvloop where installed), or the ratio lies
    run_with_loop(run(parser.parse_args().bind), ServerConfig().event_loop)


if __name__ == "__main__":
    main()
