"""A gRPC upstream that answers with exactly the bytes a test gives it, and records requests.

grpc.aio servers can only send well-formed replies; the hostile tests need an upstream
that sets the Compressed-Flag without a ``grpc-encoding``, names an encoding nobody
knows, or sends a corrupt or inflating gzip body. This one speaks HTTP/2 with the ``h2``
library (server side, h2c with prior knowledge, as grpc's insecure channels connect) and
answers every request with the same canned reply. It records each request's headers and
body, so a test can see what a client sent (``grpc-encoding``, ``grpc-accept-encoding``,
the Compressed-Flag) or prove that nothing was sent at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hpack import NeverIndexedHeaderTuple
from listening import loopback_server

PREFIX = struct.Struct(">BL")


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One length-prefixed gRPC message, its Compressed-Flag set as asked."""
    return PREFIX.pack(1 if compressed else 0, len(payload)) + payload


def gzip_message(payload: bytes) -> bytes:
    return grpc_message(gzip.compress(payload), compressed=True)


@dataclass(frozen=True)
class CannedReply:
    """What the upstream answers: leading headers, a body, and trailers (OK by default)."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # added to :status 200 and content-type
    trailers: tuple[tuple[str, str], ...] = (("grpc-status", "0"),)
    trailers_after: float = 0.0  # seconds between the body's last bytes and the trailers


@dataclass
class Received:
    """One request as it arrived: its header fields (names lower-case) and its body."""

    headers: dict[str, str]
    body: bytes = b""

    def messages(self) -> list[tuple[int, bytes]]:
        """The body as (Compressed-Flag, payload) pairs."""
        out, pos = [], 0
        while pos + 5 <= len(self.body):
            flag, length = PREFIX.unpack_from(self.body, pos)
            out.append((flag, self.body[pos + 5 : pos + 5 + length]))
            pos += 5 + length
        return out


@dataclass
class RawUpstream:
    port: int
    reply: CannedReply
    received: list[Received] = field(default_factory=list)


def _unindexed(fields: tuple[tuple[str, str], ...]) -> list[NeverIndexedHeaderTuple]:
    """The test's fields, kept out of the HPACK dynamic table: C-core fails every later
    reply that refers to a table entry holding a ``grpc-encoding`` it could not parse (a
    quirk of its parser), so one hostile reply would otherwise spoil the next ones."""
    return [NeverIndexedHeaderTuple(name, value) for name, value in fields]


async def _serve_connection(
    upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    pending: dict[int, Received] = {}
    sending: dict[int, bytes] = {}  # reply bodies waiting for flow-control window
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                writer.write(conn.data_to_send())
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    headers = {str(k): str(v) for k, v in event.headers or ()}
                    pending[event.stream_id] = Received(headers)
                elif isinstance(event, h2.events.DataReceived):
                    assert event.stream_id is not None
                    seen = pending.get(event.stream_id)
                    if seen is not None and event.data:
                        seen.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    assert event.stream_id is not None
                    seen = pending.pop(event.stream_id, None)
                    if seen is None:
                        continue
                    upstream.received.append(seen)
                    reply = upstream.reply
                    conn.send_headers(
                        event.stream_id,
                        [
                            (":status", "200"),
                            ("content-type", "application/grpc"),
                            *_unindexed(reply.headers),
                        ],
                    )
                    sending[event.stream_id] = reply.body
            for stream_id, body in list(sending.items()):
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    window = min(conn.local_flow_control_window(stream_id), len(body))
                    while body and window > 0:
                        chunk = body[: min(window, conn.max_outbound_frame_size)]
                        conn.send_data(stream_id, chunk)
                        body = body[len(chunk) :]
                        window = min(conn.local_flow_control_window(stream_id), len(body))
                    if body:
                        sending[stream_id] = body
                        continue
                    if upstream.reply.trailers_after:
                        writer.write(conn.data_to_send())
                        await writer.drain()
                        await asyncio.sleep(upstream.reply.trailers_after)
                    trailers = _unindexed(upstream.reply.trailers)
                    conn.send_headers(stream_id, trailers, end_stream=True)
                del sending[stream_id]
            writer.write(conn.data_to_send())
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def raw_upstream(reply: CannedReply) -> AsyncIterator[RawUpstream]:
    """Serve ``reply`` to every request on an ephemeral loopback port."""
    upstream = RawUpstream(0, reply)

    async def serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: list[asyncio.StreamWriter]
    ) -> None:
        await _serve_connection(upstream, reader, writer)

    async with loopback_server(serve) as port:
        upstream.port = port
        yield upstream
