"""Clients that stop reading a stream (issue 10, defects 2 and 3).

A client that stops reading fills its connection's send buffer; each write of the gateway
then waits, the close frame and the end of the response included. Before, such a session
lived on with its upstream call (75 s past a 5 s WebSocket idle timeout; for ever over
HTTP). Now a write that makes no progress for ``server.send_timeout`` aborts the
connection and cancels the upstream call. Each test stalls readers, then waits (polling,
bounded) for the upstream to see its calls cancelled and for the gateway's descriptors to
come back.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from recording import Edge, start_edge
from resources import open_fds, settled
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request

pytestmark = pytest.mark.e2e

STALL = {
    "server": {"send_timeout": "1s"},
    # the stream's own deadline far away: only the stall can end it within the test
    "methods": {"edgetest.v1.StreamService.Count": {"timeout": "120s"}},
}
ENDED_WITHIN = 10.0  # seconds; send_timeout is 1 s, the stream's deadline 120 s


async def all_ended(edge: Edge) -> None:
    """Every upstream stream over (the upstream's handlers returned), polled with a bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENDED_WITHIN
    while edge.kitchen.streams.counting:
        assert loop.time() < deadline, (
            f"{edge.kitchen.streams.counting} upstream streams still running"
        )
        await asyncio.sleep(0.1)


def stalled_http_client(port: int) -> socket.socket:
    """A raw connection asking for a long NDJSON stream and never reading a byte of it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /v1/count/1000000?padding=2000 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
    return sock


async def test_http_streams_to_clients_that_stopped_reading_are_cut() -> None:
    async with start_edge(**STALL) as edge:
        baseline = open_fds()
        clients = [stalled_http_client(edge.gateway.port) for _ in range(10)]
        try:
            await asyncio.sleep(0.5)
            assert edge.kitchen.streams.counting == 10  # all flowing, then stalled
            await all_ended(edge)
            held = baseline + len(clients)  # the test's own sockets, still open
            assert await settled(open_fds, held, within=ENDED_WITHIN) <= held + 5
        finally:
            for client in clients:
                client.close()
        assert await settled(open_fds, baseline, within=ENDED_WITHIN) <= baseline + 5


async def stalled_websocket(port: int) -> asyncio.StreamWriter:
    """A raw WebSocket asking for a long stream, then never reading a byte of it.

    (A WebSocket library reads for its own pings and flow control; a raw socket with a
    small receive buffer stops for good.)
    """
    client = WSConnection(ConnectionType.CLIENT)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        client.send(
            Request(host="127.0.0.1", target="/v1/count/1000000", subprotocols=["edge.grpc-ws.v1"])
        )
    )
    client.receive_data(await reader.readuntil(b"\r\n\r\n"))  # the handshake's answer
    assert any(isinstance(event, AcceptConnection) for event in client.events())
    writer.write(client.send(Message(data=json.dumps({"message": {"padding": 2000}}))))
    await writer.drain()
    return writer  # and its reader is never read again


async def test_websockets_that_stopped_reading_are_cut() -> None:
    async with start_edge(**STALL) as edge:
        baseline = open_fds()
        writers = [await stalled_websocket(edge.gateway.port) for _ in range(5)]
        try:
            await asyncio.sleep(0.5)
            assert edge.kitchen.streams.counting == 5
            await all_ended(edge)
            # and the gateway cut its side: only the test's own sockets are still open
            held = baseline + len(writers)
            assert await settled(open_fds, held, within=ENDED_WITHIN) <= held + 2
        finally:
            for writer in writers:
                writer.transport.abort()
        assert await settled(open_fds, baseline, within=ENDED_WITHIN) <= baseline + 5


async def test_a_slow_but_steady_reader_is_not_cut() -> None:
    """A client that reads all along is never cut, however long one write has to wait.

    One ``send`` of a 200 KB message returns only once the transport's buffer is back
    under its low-water mark, and the kernel wakes the writer only when a third of its
    send buffer (autotuned to 4 MB on loopback) is free: with the buffers full, one send
    waits for the client to read ~1.5 MB. At 64 KiB every 0.1 s that is 2 s, and a rule on
    the length of one send cut this reader at 1 s although it never paused for more
    than 0.1 s. (The kernel fills within ~0.5 s, so 3 s of slow reading covers the longest
    waits; then the reader takes the rest as fast as it comes, to keep the test short.)
    """
    async with start_edge(**STALL) as edge:  # send_timeout 1 s
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuned megabytes
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", edge.gateway.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            b"GET /v1/count/30?padding=200000&intervalSeconds=0 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        await writer.drain()
        received = 0
        tail = b""
        slow_until = loop.time() + 3.0
        async with asyncio.timeout(30):
            while chunk := await reader.read(65536):
                received += len(chunk)
                tail = (tail + chunk)[-7:]
                if tail == b"\r\n0\r\n\r\n":  # the chunked body's end: all 30 came
                    break
                if loop.time() < slow_until:
                    await asyncio.sleep(0.1)  # ~650 KB/s: slower than the stream, never stalled
        writer.close()
        assert tail == b"\r\n0\r\n\r\n", f"cut after {received} bytes"
        assert received > 30 * 200000
        assert edge.kitchen.streams.sent == 30  # the whole stream, nothing cut
