"""Each adapter's own CPU per call, in process: the JSON POST, gRPC-Web and Connect unary.

The same GetBook through the gateway's ASGI app with the gRPC client replaced by a canned
reply (``canned_gateway.CannedTerminal``) and no server around it: what routing, framing,
binding, the pipeline and rendering cost for each protocol, without Hypercorn, wrk or the
upstream in the measurement. The full run's rows (``run.py``) carry all of those, and on
a shared two-core machine their drift is larger than the few percent these three differ
by; here the rounds are interleaved and the minimum of each is reported (the least
disturbed), with its ratio to the JSON POST. Run as ``python -m benchmarks.adapter_cost``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.browser_protocols import CONNECT_BODY, GRPC_WEB_BODY
from benchmarks.canned_gateway import CannedTerminal
from edge.app import create_app
from edge.config import parse_config
from edge.ingress.asgi import DISCONNECT_EXTENSION

REPO = Path(__file__).resolve().parents[1]
PATH = "/edgedemo.library.v1.LibraryService/GetBook"
_BASE = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench")]
KINDS: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {
    "JSON POST": (
        [*_BASE, (b"content-type", b"application/json"), (b"content-length", b"28")],
        CONNECT_BODY,
    ),
    # a browser's POST: Accept-Encoding on every request, the small reply sent as it is
    "JSON POST, gzip ok": (
        [
            *_BASE,
            (b"content-type", b"application/json"),
            (b"content-length", b"28"),
            (b"accept-encoding", b"gzip, deflate, br, zstd"),
        ],
        CONNECT_BODY,
    ),
    "gRPC-Web unary": (
        [
            *_BASE,
            (b"content-type", b"application/grpc-web+proto"),
            (b"x-grpc-web", b"1"),
            (b"content-length", str(len(GRPC_WEB_BODY)).encode()),
        ],
        GRPC_WEB_BODY,
    ),
    "Connect unary": (
        [
            *_BASE,
            (b"content-type", b"application/json"),
            (b"connect-protocol-version", b"1"),
            (b"content-length", b"28"),
        ],
        CONNECT_BODY,
    ),
}


def _app() -> Any:
    config = parse_config(
        {
            "descriptors": {"proto_paths": [str(REPO / "protos")]},
            "upstreams": {"demo": {"address": "127.0.0.1:1"}},
            "services": {"*": {"upstream": "demo"}},
            "transcoding": {"generic_routes": "all"},
        },
        base=REPO,
        env={},
    )
    terminal = CannedTerminal()
    app = create_app(config, terminal=terminal)
    terminal.open(app.extensions["edge.state"].current.routes.upstream_methods())
    return app.asgi_app


def _no_disconnect(callback: Any) -> Any:
    """The client never leaves here; returns the take-back, which has nothing to undo."""
    return _nothing


def _nothing() -> None:
    pass


async def _call(asgi: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """One request in a task of its own, as a server runs it (and as the gateway counts a
    request: until its task ends). Awaited in the caller's task, each call left a done
    callback on that task that never ran, a few objects more for every collection."""
    await asyncio.get_running_loop().create_task(_request(asgi, headers, body))


async def _request(asgi: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8080),
        # As edge's own HTTP/1.1 server offers it: the disconnect comes as a callback, not
        # as a watcher task per call. With an empty dict each call left a cancelled watcher
        # behind (this loop never yields, so none of them ever ran to its end): 3,000 a
        # round, and the collector's passes over them were 40-70 us of every call's figure.
        "extensions": {DISCONNECT_EXTENSION: _no_disconnect},
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # no disconnect: the watcher is cancelled at the end
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await asgi(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"the call answered {status}")


Row = tuple[Any, list[tuple[bytes, bytes]], bytes]  # an ASGI app, its request's headers, body


async def interleaved(
    rows: dict[str, Row], calls: int, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Each row's CPU per call (us), one figure a round, the rows taking turns each round
    so that the machine's drift hits them alike; ``warmup`` calls each first."""
    for asgi, headers, body in rows.values():  # warm up: code paths, caches, the allocator
        for _ in range(warmup):
            await _call(asgi, headers, body)
    cost: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (asgi, headers, body) in rows.items():
            start = time.process_time()
            for _ in range(calls):
                await _call(asgi, headers, body)
            cost[name].append((time.process_time() - start) / calls * 1e6)
    return cost


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    asgi = _app()
    rows = {kind: (asgi, headers, body) for kind, (headers, body) in KINDS.items()}
    return await interleaved(rows, calls, rounds, warmup=calls // 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per round and kind")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    cost = asyncio.run(measure(args.calls, args.rounds))
    json_post = min(cost["JSON POST"])
    print("adapter cost in process (canned upstream, no server): us/call, min of rounds")
    for kind, values in cost.items():
        best = min(values)
        print(f"  {kind:<18} {best:7.1f}  ({best / json_post:.2f}x the JSON POST)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
