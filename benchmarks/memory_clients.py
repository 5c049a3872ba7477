"""Cheap clients that open many connections to the gateway and then just hold them.

One process of these holds a few thousand sockets: each is a raw non-blocking socket that
sends a hand-written request (a WebSocket upgrade, perhaps a first frame, or an HTTP
stream request), reads until the gateway has answered what the scenario needs, and is
then left alone, with no reader, buffer or task of its own. So the memory and CPU of the
client side stay small, and the gateway's memory is what the benchmark sees.

Scenarios (``--kind``):

- ``ws-idle``: a WebSocket handshake (``edge.grpc-ws.v1``), then nothing: a socket
  waiting for its first frame;
- ``ws-stream``: a handshake and one request frame for a server stream that sends one
  message and then stays open (``benchmarks.stream_upstream``), held once that message
  arrived;
- ``http-stream``: the same stream over HTTP as NDJSON, held once its first line arrived.

Run as ``python -m benchmarks.memory_clients --port P --kind K --count N READY_FILE``; the
process writes ``READY_FILE`` (JSON: opened, failed, the first few errors) once every
connection is open or has failed, and holds them until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
from pathlib import Path

import uvloop

from benchmarks.upstream import write_atomically

HOLD_SECONDS = 3600  # how long the upstream keeps a held stream open
STREAM_PATH = "/v1/count/2"  # two ticks: the first at once, the second after HOLD_SECONDS
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: the server does not care
_MASK = b"\x01\x02\x03\x04"
KINDS = ("ws-idle", "ws-stream", "http-stream")


def upgrade_request(path: str) -> bytes:
    """A WebSocket upgrade offering the bridge's JSON subprotocol, with no Origin."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: memory\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: edge.grpc-ws.v1\r\n\r\n"
    ).encode()


def text_frame(text: str) -> bytes:
    """One masked client text frame (RFC 6455 5.2), for payloads under 126 bytes."""
    payload = text.encode()
    if len(payload) >= 126:
        raise ValueError("short frames only")
    masked = bytes(byte ^ _MASK[index % 4] for index, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + _MASK + masked


def scenario_bytes(kind: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The request, how the answer's head must start, what to send once it has come (a
    WebSocket's first frame: sent with the upgrade, Hypercorn refuses it with 400), and
    what in the body marks the answer as complete (empty: the head is enough)."""
    hold = {"interval_seconds": HOLD_SECONDS}
    if kind == "ws-idle":
        return upgrade_request(STREAM_PATH), b"HTTP/1.1 101", b"", b""
    if kind == "ws-stream":
        frame = text_frame(json.dumps({"message": hold}))
        return upgrade_request(STREAM_PATH), b"HTTP/1.1 101", frame, b'{"message"'
    if kind == "http-stream":
        request = (
            f"GET {STREAM_PATH}?interval_seconds={HOLD_SECONDS} HTTP/1.1\r\nHost: memory\r\n"
            "Accept: application/x-ndjson\r\n\r\n"
        ).encode()
        return request, b"HTTP/1.1 200", b"", b"}\n"  # the first NDJSON line's end
    raise ValueError(f"unknown kind {kind!r}")


async def _read_until(sock: socket.socket, received: bytes, marker: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    while marker not in received:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError(f"closed after {received[:200]!r}")
        received += chunk
    return received


async def open_one(host: str, port: int, kind: str, timeout: float = 60.0) -> socket.socket:
    """Open one connection and read until the scenario's answer is in; raise if it is not."""
    request, head, follow_up, done = scenario_bytes(kind)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request)
            received = await _read_until(sock, b"", b"\r\n\r\n")
            if not received.startswith(head):
                raise ConnectionError(f"answered {received[:200]!r}")
            if follow_up:
                await loop.sock_sendall(sock, follow_up)
            if done:
                await _read_until(sock, received.partition(b"\r\n\r\n")[2], done)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_many(
    host: str, port: int, kind: str, count: int, in_flight: int
) -> tuple[list[socket.socket], list[str]]:
    """Open ``count`` connections, at most ``in_flight`` handshakes at a time.

    Bounding the handshakes in flight keeps the gateway's accept queue (Hypercorn's
    ``backlog``, 100) from overflowing, where the kernel would drop SYNs and the client
    wait a second to retry.
    """
    gate = asyncio.Semaphore(in_flight)
    held: list[socket.socket] = []
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                held.append(await open_one(host, port, kind))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one() for _ in range(count)))
    return held, errors


async def hold(host: str, port: int, kind: str, count: int, in_flight: int, ready: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    held, errors = await open_many(host, port, kind, count, in_flight)
    report = {"opened": len(held), "failed": len(errors), "errors": errors[:5], "pid": os.getpid()}
    write_atomically(ready, json.dumps(report))
    try:
        await stop.wait()
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ready_file", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=25)
    args = parser.parse_args()
    uvloop.run(hold(args.host, args.port, args.kind, args.count, args.in_flight, args.ready_file))


if __name__ == "__main__":
    main()
