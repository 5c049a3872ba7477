"""The lean client's send side against a server's flow control, over several streams.

Calls with request bodies of random sizes are opened on one connection, then the server
does random things in a random order: WINDOW_UPDATEs for the connection or a stream,
SETTINGS changing INITIAL_WINDOW_SIZE (which shifts every open stream's window, both
ways), RST_STREAM, a whole reply. After each, everything the client has written is read
back and checked against a model of the windows the client was given: no DATA beyond
the connection's or its stream's window, no frame over MAX_FRAME_SIZE, nothing on a
stream the server reset, one END_STREAM, last; a stream answered before its request was
all sent is closed with RST_STREAM, not left half-open on the server. At the end the
server opens every window wide, and each stream still open must have sent its whole
body. Sans-IO: a fake transport, no network.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

from h2_frames import FakeTransport
from h2_frames import frame as make_frame
from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.upstream.lean import Connection, Refused
from edge.upstream.lean_wire import request_block

DATA, HEADERS, RST_STREAM, SETTINGS, WINDOW_UPDATE = 0, 1, 3, 4, 8
END_STREAM, END_HEADERS = 0x1, 0x4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16_384


@dataclass
class _Model:
    """What the client may send, by the frames the server has sent so far."""

    connection: int = 65_535
    initial: int = 65_535
    windows: dict[int, int] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    reset: set[int] = field(default_factory=set)
    answered: set[int] = field(default_factory=set)
    closed_by_client: set[int] = field(default_factory=set)  # RST_STREAM written
    offset: int = len(PREFACE)

    def read(self, written: bytes) -> None:
        """Check the frames written since the last read against the windows."""
        while len(written) - self.offset >= 9:
            high, low, kind, flags, stream = struct.unpack_from(">BHBBL", written, self.offset)
            length = (high << 16) | low
            assert len(written) - self.offset >= 9 + length, "a frame written in part"
            self.offset += 9 + length
            assert length <= MAX_FRAME, "a frame over MAX_FRAME_SIZE"
            if kind == RST_STREAM:
                self.closed_by_client.add(stream)
            elif kind == HEADERS:
                self.windows.setdefault(stream, self.initial)
                self.sent.setdefault(stream, 0)
            elif kind == DATA:
                assert stream not in self.reset, f"DATA on stream {stream} after its reset"
                assert stream not in self.ended, f"DATA on stream {stream} after END_STREAM"
                assert stream not in self.closed_by_client, f"DATA on {stream} after our reset"
                self.connection -= length
                self.windows[stream] -= length
                assert self.connection >= 0, "DATA beyond the connection window"
                assert self.windows[stream] >= 0, f"DATA beyond stream {stream}'s window"
                self.sent[stream] += length
                if flags & END_STREAM:
                    self.ended.add(stream)


events = st.lists(
    st.one_of(
        st.tuples(st.just("conn"), st.integers(1, 400)),
        st.tuples(st.just("stream"), st.sampled_from([1, 3, 5, 7]), st.integers(1, 400)),
        st.tuples(st.just("initial"), st.integers(0, 500)),
        st.tuples(st.just("reset"), st.sampled_from([1, 3, 5, 7])),
        st.tuples(st.just("answer"), st.sampled_from([1, 3, 5, 7])),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first_window=st.integers(0, 300),
    bodies=st.lists(st.integers(0, 1_500), min_size=1, max_size=4),
    script=events,
)
def test_sends_stay_within_every_window(
    first_window: int, bodies: list[int], script: list[tuple[Any, ...]]
) -> None:
    async def run() -> None:
        connection = Connection(max_receive=4 * 1024 * 1024)
        transport = FakeTransport()
        connection.connection_made(transport)
        model = _Model(initial=first_window)
        encoder = Encoder()
        connection.data_received(make_frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, first_window)))
        block = request_block("/pkg.Svc/Method", "upstream")
        calls = [
            asyncio.create_task(
                connection.call(block, b"\0" + struct.pack(">L", size) + b"x" * size, [], None)
            )
            for size in bodies
        ]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        model.read(bytes(transport.written))
        streams = sorted(model.windows)
        assert len(streams) == len(bodies)
        for event in script:
            kind = event[0]
            if kind == "conn":
                model.connection += event[1]
                frame = make_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", event[1]))
            elif kind == "stream":
                if event[1] in model.windows:
                    model.windows[event[1]] += event[2]
                frame = make_frame(WINDOW_UPDATE, 0, event[1], struct.pack(">L", event[2]))
            elif kind == "initial":
                for stream in model.windows:
                    model.windows[stream] += event[1] - model.initial
                model.initial = event[1]
                frame = make_frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, event[1]))
            elif kind == "reset":
                if event[1] not in model.windows or event[1] in model.answered:
                    continue
                model.reset.add(event[1])
                frame = make_frame(RST_STREAM, 0, event[1], struct.pack(">L", 0x8))
            else:
                stream = event[1]
                if stream not in model.windows or stream in model.reset | model.answered:
                    continue
                model.answered.add(stream)
                head = encoder.encode([(":status", "200"), ("content-type", "application/grpc")])
                tail = encoder.encode([("grpc-status", "0")])
                frame = (
                    make_frame(HEADERS, END_HEADERS, stream, head)
                    + make_frame(DATA, 0, stream, b"\0\0\0\0\0")
                    + make_frame(HEADERS, END_HEADERS | END_STREAM, stream, tail)
                )
            connection.data_received(frame)
            await asyncio.sleep(0)
            model.read(bytes(transport.written))
        # the server opens every window wide: whatever is still open must go out whole
        wide = make_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 1 << 20))
        wide += make_frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, 1 << 20))
        for stream in streams:
            model.windows[stream] += (1 << 20) - model.initial
        model.initial = 1 << 20
        model.connection += 1 << 20
        connection.data_received(wide)
        await asyncio.sleep(0)
        model.read(bytes(transport.written))
        assert not transport.closing, "the connection was failed"
        for stream, size in zip(streams, bodies, strict=True):
            if stream in model.answered and stream not in model.ended:
                # answered before its request was all out: the client closes its half
                assert stream in model.closed_by_client, f"stream {stream} left half-open"
            if stream in model.reset or stream in model.answered:
                continue
            assert model.sent[stream] == size + 5, f"stream {stream} did not send its body"
            assert stream in model.ended
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    asyncio.run(run())


def test_streams_a_goaway_leaves_out_are_refused_for_a_retry_elsewhere() -> None:
    # GOAWAY's last-stream-id says which streams the server will process; the others were
    # never seen, so the channel sends them again on a new connection (Refused), while
    # the ones it covers still finish here.
    async def run() -> tuple[BaseException | None, bool]:
        connection = Connection(max_receive=1024)
        transport = FakeTransport()
        connection.connection_made(transport)
        connection.data_received(make_frame(SETTINGS, 0, 0, b""))
        block = request_block("/pkg.Svc/Method", "upstream")
        first, second = (
            asyncio.create_task(connection.call(block, b"\0\0\0\0\0", [], None)) for _ in range(2)
        )
        await asyncio.sleep(0)
        connection.data_received(make_frame(7, 0, 0, struct.pack(">LL", 1, 0)))  # GOAWAY, last 1
        await asyncio.sleep(0)
        refused = second.exception() if second.done() else None
        still_open = not first.done()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        return refused, still_open

    refused, still_open = asyncio.run(run())
    assert type(refused) is Refused
    assert still_open  # stream 1 is the server's to finish


def test_a_turn_is_handed_on_when_the_woken_call_leaves() -> None:
    # Each stream that ends wakes one call waiting for a stream slot; if that call is
    # cancelled (its client left) in the same step, the next one must get the slot.
    async def run() -> bool:
        connection = Connection(max_receive=1024)
        connection.connection_made(FakeTransport())
        first = asyncio.create_task(connection.wait_turn(None))
        second = asyncio.create_task(connection.wait_turn(None))
        await asyncio.sleep(0)
        connection._wake()  # a stream ended: the first waiter's turn
        first.cancel()  # ...but its call goes away before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.sleep(0)
        handed_on = second.done()
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        return handed_on

    assert asyncio.run(run())


def test_keepalive_sends_at_most_two_pings_between_our_frames() -> None:
    # grpc servers allow one PING per 5 minutes of quiet and strike after two more; a
    # long quiet call must not be killed for pinging (grpc's max_pings_without_data).
    async def run() -> tuple[int, bool, bool]:
        connection = Connection(max_receive=1024, keepalive=(0.02, 0.25))
        transport = FakeTransport()
        connection.connection_made(transport)
        connection.data_received(make_frame(SETTINGS, 0, 0, b""))
        block = request_block("/pkg.Svc/Method", "upstream")
        call = asyncio.create_task(connection.call(block, b"\0\0\0\0\0", [], None))
        pings, seen = 0, len(PREFACE)
        for _ in range(100):  # about 1 s of quiet: room for 3 pings, were they allowed
            await asyncio.sleep(0.01)
            written = bytes(transport.written)
            while len(written) - seen >= 9:
                high, low, kind, flags, _ = struct.unpack_from(">BHBBL", written, seen)
                payload = written[seen + 9 : seen + 9 + ((high << 16) | low)]
                seen += 9 + len(payload)
                if kind == 6 and not flags & 0x1:  # a PING of ours: the server answers
                    pings += 1
                    connection.data_received(make_frame(6, 0x1, 0, payload))
        alive = not transport.closing and not call.done()
        connection.data_received(
            make_frame(7, 0, 0, struct.pack(">LL", 1, 0xB) + b"too_many_pings")
        )
        calmed = connection.too_many_pings
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return pings, alive, calmed

    pings, alive, calmed = asyncio.run(run())
    assert pings == 2
    assert alive
    assert calmed  # the channel doubles the interval for the next connection
