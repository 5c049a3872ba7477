"""The lean client's server streams, sans-IO: messages cut from DATA frames, windows handed back.

A server stream's reply is fed to a ``Connection`` over a fake transport, its body cut
into DATA frames at random places (messages split across frames, several in one frame,
empty ones, padding), with reads interleaved at random. The reader must get exactly the
messages sent, in order, then the status; and the stream's receive window must come back
only as messages are read (a WINDOW_UPDATE for bytes nobody has read would let a server
fill our memory behind a client that stopped reading). A reader that leaves resets the
stream, so the upstream stops. Everything else (metadata, statuses, compression, against
grpc.aio) is in tests/e2e/test_lean_stream_e2e.py.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from h2_frames import FakeTransport
from h2_frames import frame as make_frame
from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.call import Reply
from edge.errors import UpstreamStatus
from edge.upstream.lean import Connection, ServerStream
from edge.upstream.lean_channel import _Messages
from edge.upstream.lean_wire import request_block

DATA, HEADERS, RST_STREAM, SETTINGS, WINDOW_UPDATE = 0, 1, 3, 4, 8
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MiB = 1024 * 1024


def frames_written(written: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of every frame the client wrote after its preface."""
    out, pos = [], len(PREFACE)
    while pos + 9 <= len(written):
        high, low, kind, flags, stream = struct.unpack_from(">BHBBL", written, pos)
        length = (high << 16) | low
        out.append((kind, flags, stream, written[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def credited(written: bytes, stream_id: int) -> int:
    """The window the client has handed back on ``stream_id`` so far."""
    return sum(
        struct.unpack(">L", payload)[0]
        for kind, _, stream, payload in frames_written(written)
        if kind == WINDOW_UPDATE and stream == stream_id
    )


def body_of(messages: list[bytes]) -> bytes:
    return b"".join(b"\0" + struct.pack(">L", len(m)) + m for m in messages)


def message(index: int, size: int) -> bytes:
    return (index.to_bytes(4, "big") * (size // 4 + 1))[:size]


class Open:
    """A connection with one server stream open and its reply headers received."""

    def __init__(self, max_receive: int = 64 * MiB) -> None:
        self.connection = Connection(max_receive=max_receive)
        self.transport = FakeTransport()
        self.connection.connection_made(self.transport)
        self.connection.data_received(make_frame(SETTINGS, 0, 0, b""))
        self.encoder = Encoder()
        self.stream: ServerStream | None = None
        self.reply = Reply()

    async def start(self, headers: bool = True) -> _Messages:
        block = request_block("/pkg.Svc/Count", "upstream")
        stream = await self.connection.start(block, b"\0\0\0\0\0", [], None, ServerStream)
        assert isinstance(stream, ServerStream)
        self.stream = stream
        if headers:
            head = self.encoder.encode(
                [(":status", "200"), ("content-type", "application/grpc"), ("x-a", "1")]
            )
            self.feed(make_frame(HEADERS, END_HEADERS, stream.id, head))
            assert stream.future.done()
        identity: Any = bytes
        return _Messages(self.connection, stream, identity, 64 * MiB, self.reply)

    def feed(self, data: bytes) -> None:
        self.connection.data_received(data)

    def trailers(self, status: int = 0, message: str = "") -> bytes:
        assert self.stream is not None
        fields = [("grpc-status", str(status)), ("x-t", "2")]
        if message:
            fields.append(("grpc-message", message))
        block = self.encoder.encode(fields)
        return make_frame(HEADERS, END_HEADERS | END_STREAM, self.stream.id, block)

    @property
    def written(self) -> bytes:
        self.connection._flush()
        return bytes(self.transport.written)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 300) | st.integers(0, 40_000), max_size=12),
    cuts=st.lists(st.integers(1, 16_384), min_size=1, max_size=8),
    pads=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    reads=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    status=st.sampled_from([0, 0, 5, 13]),
)
def test_messages_arrive_whole_in_order_and_windows_follow_the_reader(
    sizes: list[int], cuts: list[int], pads: list[int], reads: list[int], status: int
) -> None:
    sent = [message(i, size) for i, size in enumerate(sizes)]
    body = body_of(sent)

    async def run() -> None:
        opened = Open()
        reader = await opened.start()
        assert opened.stream is not None
        stream_id = opened.stream.id
        got: list[bytes] = []
        consumed = padding = 0
        pos = step = 0
        while pos < len(body):
            pad = pads[step % len(pads)]
            size = min(cuts[step % len(cuts)], 16_384 - pad)  # the frame within 16 KiB
            chunk = body[pos : pos + size]
            pos += len(chunk)
            if pad:
                payload = bytes((pad - 1,)) + chunk + bytes(pad - 1)
                opened.feed(make_frame(DATA, PADDED, stream_id, payload))
                padding += len(payload) - len(chunk)
            else:
                opened.feed(make_frame(DATA, 0, stream_id, chunk))
            for _ in range(min(reads[step % len(reads)], len(opened.stream.messages))):
                item = await anext(reader)
                got.append(item)
                consumed += len(item) + 5
            # never more back than was read (plus padding, which nobody reads)
            assert credited(opened.written, stream_id) <= consumed + padding
            step += 1
        opened.feed(opened.trailers(status, "no" if status else ""))
        try:
            async for item in reader:
                got.append(item)
        except UpstreamStatus as error:
            assert status and error.grpc_code == status and error.message == "no"
            assert error.trailing_metadata == (("x-t", "2"),)
            assert error.initial_metadata == (("x-a", "1"),)
        else:
            assert not status
            assert opened.reply.trailing_metadata == (("x-t", "2"),)
        assert got == sent
        assert not any(kind == RST_STREAM for kind, *_ in frames_written(opened.written))

    asyncio.run(run())


def test_the_window_comes_back_as_messages_are_read_and_not_before() -> None:
    """12 MiB arrive unread: no stream WINDOW_UPDATE (the server must stop at 16 MiB);
    read, and over 8 MiB of it comes back."""

    async def run() -> None:
        opened = Open()
        reader = await opened.start()
        assert opened.stream is not None
        stream_id = opened.stream.id
        body = body_of([message(i, MiB) for i in range(12)])
        for pos in range(0, len(body), 16_384):
            opened.feed(make_frame(DATA, 0, stream_id, body[pos : pos + 16_384]))
        assert len(opened.stream.messages) == 12
        assert credited(opened.written, stream_id) == 0
        for index in range(12):
            assert await anext(reader) == message(index, MiB)
        assert 8 * MiB < credited(opened.written, stream_id) <= 12 * (MiB + 5)
        await reader.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("read_first", [False, True])
def test_a_reader_that_leaves_resets_the_stream(read_first: bool) -> None:
    """aclose, even of a reader never read, resets an open stream with CANCEL."""

    async def run() -> None:
        opened = Open()
        reader = await opened.start()
        assert opened.stream is not None
        opened.feed(make_frame(DATA, 0, opened.stream.id, body_of([b"a", b"b"])))
        if read_first:
            assert await anext(reader) == b"a"
        await reader.aclose()
        resets = [
            (stream, payload)
            for kind, _, stream, payload in frames_written(opened.written)
            if kind == RST_STREAM
        ]
        assert resets == [(opened.stream.id, struct.pack(">L", 0x8))]
        assert not opened.connection.busy

    asyncio.run(run())


def test_a_cancelled_reader_resets_the_stream() -> None:
    async def run() -> None:
        opened = Open()
        reader = await opened.start()
        assert opened.stream is not None
        task = asyncio.create_task(anext(reader))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert any(kind == RST_STREAM for kind, *_ in frames_written(opened.written))
        assert not opened.connection.busy

    asyncio.run(run())


def test_a_message_over_the_limit_fails_after_the_messages_before_it() -> None:
    async def run() -> None:
        opened = Open(max_receive=100)
        reader = await opened.start()
        assert opened.stream is not None
        opened.feed(make_frame(DATA, 0, opened.stream.id, body_of([b"ok", b"x" * 101])))
        assert await anext(reader) == b"ok"
        with pytest.raises(UpstreamStatus) as caught:
            await anext(reader)
        assert caught.value.grpc_code == 8
        assert caught.value.message == "Received message larger than max (101 vs. 100)"
        assert any(kind == RST_STREAM for kind, *_ in frames_written(opened.written))

    asyncio.run(run())


def test_a_trailers_only_ok_is_an_empty_stream() -> None:
    async def run() -> None:
        opened = Open()
        reader = await opened.start(headers=False)
        assert opened.stream is not None
        block = opened.encoder.encode(
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")]
        )
        opened.feed(make_frame(HEADERS, END_HEADERS | END_STREAM, opened.stream.id, block))
        assert [item async for item in reader] == []

    asyncio.run(run())
