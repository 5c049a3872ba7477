"""A TCP relay in front of a gRPC upstream that reads the HTTP/2 going through it, both ways.

grpc.aio servers hide ``grpc-encoding`` and ``grpc-accept-encoding`` from the handler's
invocation metadata and decompress before the handler sees a message, so a real server
cannot tell a test whether a request was compressed, nor a client whether a reply was.
This relay forwards every byte unchanged and parses a copy (frames, HPACK with the
``hpack`` decoder, gRPC message prefixes), so a test sees exactly what went over the
wire: each stream's header fields and each message's Compressed-Flag and size.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hpack import Decoder
from listening import loopback_server

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">BHBBL")
_PREFIX = struct.Struct(">BL")
_DATA, _HEADERS, _CONTINUATION = 0, 1, 9
_END_HEADERS, _PADDED, _PRIORITY = 0x4, 0x8, 0x20


@dataclass
class Half:
    """One direction of one stream: its header blocks and its messages (flag, length)."""

    headers: list[dict[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def messages(self) -> list[tuple[int, int]]:
        out, pos = [], 0
        while pos + 5 <= len(self.body):
            flag, length = _PREFIX.unpack_from(self.body, pos)
            out.append((flag, length))
            pos += 5 + length
        return out

    def field(self, name: str) -> str | None:
        """A field of the leading header block, or None."""
        return self.headers[0].get(name) if self.headers else None


@dataclass
class Exchange:
    request: Half = field(default_factory=Half)
    response: Half = field(default_factory=Half)


class _Reader:
    """Parses one direction's frames as they pass; feeds the exchanges of its connection."""

    def __init__(self, streams: dict[int, Exchange], tap: WireTap, client: bool) -> None:
        self.streams, self.tap, self.client = streams, tap, client
        self.buffer = b""
        self.preface = client
        self.decoder = Decoder()
        self.decoder.max_allowed_table_size = 1 << 20
        self.block: tuple[int, list[bytes]] | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.preface:
            if len(self.buffer) < len(_PREFACE):
                return
            self.buffer, self.preface = self.buffer[len(_PREFACE) :], False
        while len(self.buffer) >= 9:
            high, low, kind, flags, stream_id = _FRAME.unpack_from(self.buffer)
            length = (high << 16) | low
            if len(self.buffer) < 9 + length:
                return
            payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
            self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)

    def _half(self, stream_id: int) -> Half:
        exchange = self.streams.get(stream_id)
        if exchange is None:
            exchange = self.streams[stream_id] = Exchange()
            self.tap.exchanges.append(exchange)
        return exchange.request if self.client else exchange.response

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind in (_DATA, _HEADERS) and flags & _PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if kind == _DATA and stream_id:
            self._half(stream_id).body += payload
        elif kind == _HEADERS:
            if flags & _PRIORITY:
                payload = payload[5:]
            self.block = (stream_id, [payload])
        elif kind == _CONTINUATION and self.block is not None:
            self.block[1].append(payload)
        if kind in (_HEADERS, _CONTINUATION) and flags & _END_HEADERS and self.block:
            block_stream, parts = self.block
            self.block = None
            fields = self.decoder.decode(b"".join(parts))
            self._half(block_stream).headers.append({str(k): str(v) for k, v in fields})


@dataclass
class WireTap:
    port: int = 0
    exchanges: list[Exchange] = field(default_factory=list)

    def calls(self, path: str) -> list[Exchange]:
        """The exchanges whose request went to ``path`` (a gRPC method path)."""
        return [e for e in self.exchanges if e.request.field(":path") == path]


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: _Reader
) -> None:
    try:
        while data := await reader.read(65536):
            parser.feed(data)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def wire_tap(upstream_port: int) -> AsyncIterator[WireTap]:
    """Relay an ephemeral loopback port to ``upstream_port``, recording what passes."""
    tap = WireTap()

    async def relay(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        held: list[asyncio.StreamWriter],
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        held.append(up_writer)  # aborted with the client's side at the end
        streams: dict[int, Exchange] = {}
        await asyncio.gather(
            _pipe(reader, up_writer, _Reader(streams, tap, client=True)),
            _pipe(up_reader, writer, _Reader(streams, tap, client=False)),
        )

    async with loopback_server(relay) as port:
        tap.port = port
        yield tap
