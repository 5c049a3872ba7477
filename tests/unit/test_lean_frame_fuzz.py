"""The lean client's frame parser against arbitrary server bytes.

Whatever an upstream sends (garbage, truncated frames, frames for unknown or finished
streams, bad HPACK, bad padding, odd SETTINGS), the parser must not raise out of
``data_received``: that would escape into the event loop and leave the call hanging. The
outcome has to be one of: the bytes are used, ignored, or the connection is failed with a
GOAWAY and every open call gets a gRPC status. Sans-IO: a fake transport, no network.
"""

from __future__ import annotations

import asyncio

from h2_frames import FakeTransport
from h2_frames import frame as make_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import UpstreamStatus
from edge.upstream.lean import Connection
from edge.upstream.lean_wire import request_block

# Frames that are mostly well-formed on the outside (so the parser gets past the header)
# with anything inside; stream ids favour the ones a call actually uses (1 and 3).
frames = st.builds(
    make_frame,
    kind=st.integers(0, 11),
    flags=st.sampled_from([0, 0x1, 0x4, 0x5, 0x8, 0x9, 0x20, 0x25, 0xFF]),
    stream_id=st.sampled_from([0, 1, 3, 5, 2**31 - 1]),
    payload=st.binary(max_size=40),
)
inputs = st.lists(st.one_of(frames, st.binary(max_size=30)), max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=inputs, split=st.integers(1, 17))
def test_no_server_bytes_escape_the_parser(chunks: list[bytes], split: int) -> None:
    async def run() -> None:
        connection = Connection(max_receive=4 * 1024 * 1024)
        transport = FakeTransport()
        connection.connection_made(transport)
        connection.data_received(make_frame(0x4, 0, 0, b""))  # the server's SETTINGS
        call = asyncio.create_task(
            connection.call(request_block("/pkg.Svc/Method", "upstream"), b"\0\0\0\0\0", [], None)
        )
        await asyncio.sleep(0)  # the call's HEADERS and DATA are out: stream 1 is open
        data = b"".join(chunks)
        for start in range(0, len(data), split):  # in arbitrary pieces, as TCP may
            connection.data_received(data[start : start + split])
        if transport.closing:  # (a graceful GOAWAY keeps the streams it still covers)
            await asyncio.sleep(0)
            assert call.done(), "a closed connection left its call waiting"
        if call.done() and not call.cancelled() and call.exception() is not None:
            assert isinstance(call.exception(), UpstreamStatus)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

    asyncio.run(run())
