"""A gRPC upstream that costs next to nothing: every call gets the same pre-encoded Book.

The worker-scaling row (``scaling.py``) wants the gateway to be the only thing that costs
CPU, because on a two-core machine the upstream and wrk share the cores the second worker
would use. The demo LibraryService under grpc.aio costs about as much per call as the
gateway itself; this server answers from a few pre-built HTTP/2 frames instead. It reads
frame headers only: the stream id of each HEADERS frame, END_STREAM on HEADERS or DATA
(then the reply goes out: HEADERS, one DATA, trailers), PING (answered) and SETTINGS
(acknowledged). It never decodes the client's HPACK (no reply depends on it) and its own
header blocks use literals without indexing, so it holds no HPACK state. Every DATA byte
received is given back to the connection window at once. Not a gRPC server for anything
but benchmarks: it ignores the method, the request and every header.

Run as ``python -m benchmarks.canned_upstream PORT_FILE``; it serves on an ephemeral
loopback port, writes the port to ``PORT_FILE`` and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from pathlib import Path
from typing import cast

from benchmarks.canned_gateway import BOOK
from benchmarks.upstream import write_atomically
from edge.cli import run_with_loop
from edge.upstream.lean_wire import literal

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">HBBBL")  # length (24 bits, as 16 + 8), type, flags, stream id
DATA, HEADERS, SETTINGS, PING, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

_REPLY_HEADERS = b"\x88" + literal(31, b"application/grpc")  # :status 200, content-type
_TRAILERS = literal(b"grpc-status", b"0")
_MESSAGE = struct.pack(">BL", 0, len(BOOK)) + BOOK


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _FRAME.pack(size >> 8, size & 0xFF, kind, flags, stream) + payload


def reply(stream: int) -> bytes:
    """The whole answer to one call: headers, the Book as one message, grpc-status 0."""
    return (
        frame(HEADERS, END_HEADERS, stream, _REPLY_HEADERS)
        + frame(DATA, 0, stream, _MESSAGE)
        + frame(HEADERS, END_HEADERS | END_STREAM, stream, _TRAILERS)
    )


class CannedConnection(asyncio.Protocol):
    """One client connection: frames in, canned replies out (see the module docstring)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_seen = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(frame(SETTINGS, 0, 0))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.preface_seen:
            if len(self.buffer) < len(PREFACE):
                return
            if bytes(self.buffer[: len(PREFACE)]) != PREFACE:
                self.transport.close()
                return
            del self.buffer[: len(PREFACE)]
            self.preface_seen = True
        out: list[bytes] = []
        consumed = 0
        offset = 0
        buffer = self.buffer
        while len(buffer) - offset >= 9:
            high, low, kind, flags, stream = _FRAME.unpack_from(buffer, offset)
            size = (high << 8) | low
            end = offset + 9 + size
            if end > len(buffer):
                break
            stream &= 0x7FFFFFFF
            if kind == DATA:
                consumed += size
                if flags & END_STREAM:
                    out.append(reply(stream))
            elif kind == HEADERS and flags & END_STREAM:
                out.append(reply(stream))
            elif kind == SETTINGS and not flags & ACK:
                out.append(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                out.append(frame(PING, ACK, 0, bytes(buffer[offset + 9 : end])))
            offset = end
        del buffer[:offset]
        if consumed:
            out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", consumed)))
        if out:
            self.transport.write(b"".join(out))


async def serve(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedConnection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    write_atomically(port_file, str(port))
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port_file", type=Path)
    run_with_loop(serve(parser.parse_args().port_file), "uvloop")


if __name__ == "__main__":
    main()
