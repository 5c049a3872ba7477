"""Which HTTP client the proxy terminal uses: edge's own, aiohttp, httpx, measured alike.

Each client does exactly what ``HttpProxyTerminal`` does per request: one pooled client
reused by every request, the request body sent from an async iterator, the response
status and headers read and the body streamed out chunk by chunk (raw, undecoded). The
upstream is the bare Hypercorn app of ``bare_app.py`` in its own process, plus a
streaming endpoint for the bulk runs; the figure that decides is the CPU this process
burns per request (small requests) and per MiB (bulk), because the proxy pays it on
every request. Run as ``python -m benchmarks.proxy_clients [--seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.processes import free_port, spawn, stop, wait_for_http
from edge.cli import run_with_loop
from edge.config import ServerConfig

REPO = Path(__file__).resolve().parents[1]
CHUNK = 64 * 1024
BULK = 64 * 1024 * 1024

Request = Callable[[str, str, AsyncIterator[bytes] | None], Awaitable[int]]


async def _chunks(total: int) -> AsyncIterator[bytes]:
    block = b"x" * CHUNK
    sent = 0
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


async def _small_body() -> AsyncIterator[bytes]:
    yield b'{"name":"shelves/1/books/1"}'


def _httpx_client() -> tuple[Request, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        timeout=httpx.Timeout(30.0, connect=5.0),
    )

    async def request(method: str, url: str, body: AsyncIterator[bytes] | None) -> int:
        req = client.build_request(
            method, url, headers=[(b"content-type", b"application/json")], content=body
        )
        reply = await client.send(req, stream=True)
        size = 0
        try:
            async for chunk in reply.aiter_raw():
                size += len(chunk)
        finally:
            await reply.aclose()
        return size

    return request, client.aclose


def _aiohttp_client() -> tuple[Request, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
    )

    async def request(method: str, url: str, body: AsyncIterator[bytes] | None) -> int:
        async with session.request(
            method,
            url,
            headers=[("content-type", "application/json")],
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=30.0, connect=5.0),
        ) as reply:
            size = 0
            async for chunk in reply.content.iter_any():
                size += len(chunk)
        return size

    return request, session.close


def _lean_client() -> tuple[Request, Callable[[], Awaitable[None]]]:
    from urllib.parse import urlsplit

    from edge.upstream.http1_client import Http1Pool, exchange
    from edge.upstream.http1_wire import request_head

    pool = Http1Pool(100, 5.0)

    async def request(method: str, url: str, body: AsyncIterator[bytes] | None) -> int:
        parts = urlsplit(url)
        where = (parts.hostname or "", parts.port or 80, False)
        target = (parts.path or "/").encode() + (
            b"?" + parts.query.encode() if parts.query else b""
        )
        fields = [(b"content-type", b"application/json")]
        if body is not None:
            fields.append((b"transfer-encoding", b"chunked"))
        head = request_head(method, target, parts.netloc.encode(), fields)
        reply = await exchange(pool, where, method, head, body, None, 30.0)
        size = 0
        async for chunk in reply.body(30.0):
            size += len(chunk)
        return size

    async def close() -> None:
        pool.close()

    return request, close


async def _small(request: Request, url: str, seconds: float, post: bool) -> dict[str, float]:
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await request("POST" if post else "GET", url, _small_body() if post else None)
            count += 1

    await asyncio.gather(*(worker() for _ in range(4)))  # warm the pool
    count, stop_at = 0, time.monotonic() + seconds
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(32)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return {"rps": count / wall, "us_per_request": cpu / count * 1e6}


async def _bulk(request: Request, url: str, upload: bool) -> dict[str, float]:
    cpu, wall = time.process_time(), time.monotonic()
    if upload:
        await request("POST", url, _chunks(BULK))
    else:
        size = await request("GET", url + f"?bytes={BULK}", None)
        assert size > BULK, size  # the data, then the count of bytes received
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    mib = BULK / 2**20
    return {"mib_per_s": mib / wall, "cpu_ms_per_mib": cpu / mib * 1e3}


async def _measure(name: str, small_url: str, bulk_url: str, seconds: float) -> dict[str, Any]:
    clients = {"httpx": _httpx_client, "aiohttp": _aiohttp_client, "edge": _lean_client}
    request, close = clients[name]()
    try:
        return {
            "GET": await _small(request, small_url, seconds, post=False),
            "POST": await _small(request, small_url, seconds, post=True),
            "download": await _bulk(request, bulk_url, upload=False),
            "upload": await _bulk(request, bulk_url, upload=True),
        }
    finally:
        await close()


async def _bulk_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET ``?bytes=N`` streams N bytes; any body sent is drained and counted."""
    if scope["type"] != "http":
        return
    received = 0
    while True:
        message = await receive()
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    query = scope["query_string"].decode()
    total = int(query.split("=", 1)[1]) if query.startswith("bytes=") else 0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if total:
        async for chunk in _chunks(total):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": str(received).encode()})


def _serve_bulk(bind: str) -> None:
    from hypercorn.asyncio import serve

    from edge.cli import hypercorn_config
    from edge.config import Config, ServerConfig

    config = hypercorn_config(Config(server=ServerConfig(bind=[bind])))
    run_with_loop(serve(_bulk_app, config), ServerConfig().event_loop)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per client")
    parser.add_argument("--serve", metavar="BIND", help=argparse.SUPPRESS)
    parser.add_argument(
        "--clients", nargs="+", default=["edge", "aiohttp", "httpx"], help="which to measure"
    )
    args = parser.parse_args(argv)
    if args.serve:
        _serve_bulk(args.serve)
        return 0

    with tempfile.TemporaryDirectory(prefix="edge-clients-") as workdir:
        bind = f"127.0.0.1:{free_port()}"
        bulk_bind = f"127.0.0.1:{free_port()}"
        bare = spawn(
            "bare", [sys.executable, "-m", "benchmarks.bare_app", bind], Path(workdir), REPO
        )
        bulk = spawn(
            "bulk",
            [sys.executable, "-m", "benchmarks.proxy_clients", "--serve", bulk_bind],
            Path(workdir),
            REPO,
        )
        try:
            wait_for_http(bare, f"http://{bind}/")
            wait_for_http(bulk, f"http://{bulk_bind}/?bytes=1")
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.clients}
            for _ in range(args.rounds):
                for name in results:
                    figures: dict[str, Any] = {}

                    async def one(name: str = name, figures: dict[str, Any] = figures) -> None:
                        figures.update(
                            await _measure(
                                name, f"http://{bind}/", f"http://{bulk_bind}/", args.seconds
                            )
                        )

                    run_with_loop(one(), ServerConfig().event_loop)
                    results[name].append(figures)
                    print(name, json.dumps(figures), file=sys.stderr, flush=True)
        finally:
            stop(bulk)
            stop(bare)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
