"""A real HTTP + WebSocket upstream for the proxy tests, served by Hypercorn on port 0.

Behaviour is chosen by the query string, so it survives any prefix stripping/rewriting:

* default: drain the body (hashing it as it streams, never holding it) and answer JSON
  with the method, path, raw path, query, headers, body size and SHA-256;
* ``download=N``: stream N bytes (``b"x"``) in 64 KiB chunks;
* ``sleep=S``: wait S seconds first;
* ``hop=1``: answer with hop-by-hop headers and one named in ``Connection``.

WebSocket: accepts (with the client's first subprotocol), sends a JSON hello with the
path, query and headers it saw, then echoes text and binary frames; the text
``close:<code>`` makes it close with that code and reason ``bye``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from listening import wait_listening

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CHUNK = 64 * 1024


async def upstream_app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    query = parse_qs(scope["query_string"].decode())
    if "sleep" in query:
        await asyncio.sleep(float(query["sleep"][0]))
    digest, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if "break_after" in query:  # start a chunked body, then die mid-way
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {
                "type": "http.response.body",
                "body": b"x" * int(query["break_after"][0]),
                "more_body": True,
            }
        )
        await asyncio.sleep(0.05)
        raise RuntimeError("the upstream broke mid-body (on purpose)")
    if "download" in query:
        total = int(query["download"][0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        block = b"x" * CHUNK
        sent = 0
        while sent < total:
            piece = block[: min(CHUNK, total - sent)]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"application/json")]
    if "cors" in query:  # an upstream with CORS headers of its own
        headers += [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", b"x-upstream-secret"),
            (b"vary", b"Accept-Encoding"),
        ]
    if "hop" in query:
        headers += [
            (b"connection", b"x-private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b"Basic"),
            (b"x-kept", b"yes"),
        ]
    body = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
    ).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: Message, receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    subprotocols = scope.get("subprotocols") or []
    await send(
        {"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None}
    )
    hello = {
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
    }
    await send({"type": "websocket.send", "text": json.dumps(hello)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await send({"type": "websocket.close", "code": int(text[6:]), "reason": "bye"})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[int]:
    """Serve ``app`` with real Hypercorn on a loopback socket bound to port 0; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 1
    config.errorlog = None
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        await wait_listening(port, task)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
