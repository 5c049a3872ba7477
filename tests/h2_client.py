"""A raw h2c (prior knowledge) client for tests: frames written exactly as a test asks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

GET_HEADERS = [
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "127.0.0.1"),
    (":path", "/v1/kitchen/rapid"),
]


class H2Client:
    """A raw h2c connection: frames written exactly as the test asks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []

    def open_and_reset(self, count: int) -> None:
        """HEADERS then RST_STREAM(CANCEL) for ``count`` new streams, unsent."""
        for _ in range(count):
            stream_id = self.conn.get_next_available_stream_id()
            self.conn.send_headers(stream_id, GET_HEADERS, end_stream=True)
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)

    def request(self) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, GET_HEADERS, end_stream=True)
        return stream_id

    async def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def read_until(self, done: type[h2.events.Event], timeout: float = 10) -> bool:
        """Read events until one of type ``done``; False if the connection ended first."""
        async with asyncio.timeout(timeout):
            while not any(isinstance(event, done) for event in self.events):
                data = await self.reader.read(65536)
                if not data:
                    return False
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.events += self.conn.receive_data(data)
                await self.flush()
        return True

    def terminated(self) -> h2.events.ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None


@contextlib.asynccontextmanager
async def h2_client(port: int) -> AsyncIterator[H2Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = H2Client(reader, writer)
    try:
        await client.flush()
        yield client
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def upload_until_answered(client: H2Client, path: str, body: bytes) -> tuple[str, bytes]:
    """POST ``body`` on a new stream, sending as flow control allows, until the answer ends.

    Returns the answer's ``:status`` and body. Sending stops when the stream ends or is reset,
    whether or not the body was all sent: a client that keeps uploading after its answer.
    """
    conn = client.conn
    stream_id = conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1"),
        (":path", path),
        ("content-type", "application/x-ndjson"),
    ]
    conn.send_headers(stream_id, headers)
    await client.flush()
    status = ""
    answer = b""
    sent = 0
    async with asyncio.timeout(15):
        while True:
            for event in client.events:
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = dict(event.headers)[":status"]
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    answer += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                if (
                    isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
                    and event.stream_id == stream_id
                ):
                    client.events.clear()
                    return status, answer
            window = 0
            with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
                window = min(conn.local_flow_control_window(stream_id), 16384)
            if sent < len(body) and window > 0:
                chunk = body[sent : sent + window]
                sent += len(chunk)
                conn.send_data(stream_id, chunk, end_stream=sent == len(body))
                await client.flush()
                continue
            data = await client.reader.read(65536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            client.events += conn.receive_data(data)
            await client.flush()
