"""The lean gRPC client's connection: unary and server-streaming calls over one HTTP/2
connection, on asyncio.

grpc.aio costs 170-250 us of gateway CPU per unary call, most of it thread hops between
its C-core poller and the event loop; this client runs on the loop itself and frames
HTTP/2 by hand, for about half of grpc.aio's cost (``benchmarks/``). It is the default
for upstreams it can serve exactly as grpc.aio would (``client: auto``, see
``edge.config``); unary and server-streaming calls go through it, client-streaming and
bidi methods of the same upstream stay on grpc.aio. This module is one connection's
state machine; ``edge.upstream.lean_wire`` encodes and reads what goes over it (pure functions), and
``edge.upstream.lean_channel`` chooses connections (addresses, TLS, reconnects).

What it speaks (RFC 9113, gRPC's PROTOCOL-HTTP2.md), over h2c with prior knowledge or h2
over TLS (ALPN ``h2`` required, as C-core and grpc-go require it):

- Requests are a HEADERS block made once per method (HPACK static-table references and
  literals *without indexing*, so our encoder keeps no state) plus ``grpc-timeout`` and
  the call's metadata (``-bin`` values base64 without padding), then one DATA frame run.
  Compression (``grpc-encoding``, ``grpc-accept-encoding``, inflating replies) is the
  channel's and ``edge.upstream.compression``'s; this module moves the bytes.
- Responses are decoded with ``hpack.Decoder``, in order, for every stream (the server's
  dynamic table is shared). A block that neither inserted into nor evicted from the table
  decodes the same while the table is unchanged, so such decodings are memoised: a steady
  server sends the same few bytes for every reply (see ``Connection._decode``).
- Streams: up to the server's MAX_CONCURRENT_STREAMS at once, later calls queue. grpc
  C-core servers refuse streams (RST_STREAM REFUSED_STREAM) a little before their own
  count catches up, so a refused stream, which the server never processed, is retried
  after the next stream on that connection ends, as grpc's own client does.
- Server streams (``ServerStream``): DATA is cut into messages as it arrives (a message
  split over frames is joined once, when whole) and queued for the stream's one reader
  (``edge.upstream.lean_channel``), which parses them as it reads; the stream's window
  is handed back only as messages are read (``credit``), so a reader that stops makes
  the server stop after one window. Trailers end it after its messages; a deadline,
  cancel, reset or lost connection ends it at once, as grpc's calls end.
- Flow control: our windows are large (16 MiB per stream, 2^31-1 for the connection)
  and handed back with WINDOW_UPDATE at half (a server stream's as it is read); sends
  respect the server's windows and MAX_FRAME_SIZE and resume on WINDOW_UPDATE. SETTINGS
  and PING are acked.
- Keepalive: while calls are open, a connection silent for 30 s is PINGed and failed if
  no answer comes within 10 s (grpc.aio's settings here); idle connections are not, and
  as in grpc at most 2 PINGs go out between frames we send (see ``KEEPALIVE_TIME``).
- Replies: a header block over 16 KiB fails its call (grpc's limit); one that is not
  gRPC (an HTTP error, another content-type) fails the call on the headers.
- GOAWAY: streams at or below last-stream-id finish; the rest, never processed, are
  sent again on a new connection (grpc's transparent retry); new calls open a new
  connection. A lost connection fails its calls with UNAVAILABLE.
- Deadlines: ``grpc-timeout`` is sent and a local timer resets the stream (CANCEL) and
  raises DEADLINE_EXCEEDED; a cancelled task resets its stream too.

It raises exactly what ``edge.upstream.grpc``'s unary invoker raises (``UpstreamStatus``
with grpc.aio's codes, messages and metadata), so no layer can tell the two apart.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import cast

from hpack import Decoder, HPACKError

from edge.errors import UpstreamStatus
from edge.upstream.lean_wire import (
    DEADLINE_MESSAGE,
    FRAME_HEADER,
    MESSAGE_PREFIX,
    Headers,
    encode_timeout,
    frame,
    header_error,
    literal,
    metadata_pairs,
    stream_end,
)

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")

DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = (
    0,
    1,
    3,
    4,
    5,
    6,
    7,
    8,
)
CONTINUATION = 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB

_MAX_WINDOW = 2**31 - 1
_MAX_STREAM_ID = 2**31 - 1
_STREAM_WINDOW = 16 * 1024 * 1024
_MAX_FRAME_IN = 16_384  # we never raise SETTINGS_MAX_FRAME_SIZE
# Keepalive as the grpc.aio channel is configured (edge.upstream.grpc.open_channel): while
# calls are open, a connection that has been silent this long is PINGed, and fails when
# the ACK does not come in time. Idle connections are not pinged (grpc's default
# keepalive_permit_without_calls=0). As grpc's, at most 2 PINGs go out between frames we
# send (grpc.http2.max_pings_without_data), and a GOAWAY "too_many_pings" doubles the
# interval for the address's next connections: servers allow a PING per 5 minutes of
# quiet (2 strikes), and a long quiet call must not be killed for pinging.
KEEPALIVE_TIME, KEEPALIVE_TIMEOUT = 30.0, 10.0
_MAX_PINGS_WITHOUT_DATA = 2
# grpc's hard limit on received metadata (grpc.absolute_max_metadata_size): a header block
# over it (RFC 7541 sizes: name + value + 32 per field) fails its call only. grpc also
# refuses at random between its 8 KiB soft limit and this; we accept up to here.
MAX_METADATA = 16 * 1024
# Beyond this a header block (HEADERS + CONTINUATIONs) fails the connection: bounded
# memory against a CONTINUATION flood, and far above any block a call could accept.
_MAX_BLOCK = 1024 * 1024
_KEEPALIVE_PING = b"edge-kpa"

# RST_STREAM codes as gRPC codes (PROTOCOL-HTTP2.md); REFUSED_STREAM is retried instead.
_RESET_CODES = {CANCEL: 1, 0xB: 8, 0xC: 7}  # CANCEL, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY


class Refused(Exception):
    """The server never processed this stream (REFUSED_STREAM, or a connection we left)."""


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Stream:
    """One unary call on the wire; ``future`` resolves when the stream ends cleanly."""

    __slots__ = (
        "chunks",
        "future",
        "headers",
        "id",
        "length",
        "pending",
        "received",
        "send_window",
        "timer",
        "trailers",
        "unacked",
    )
    streaming = False  # a server stream: messages go to its reader as they arrive

    def __init__(self, stream_id: int, future: asyncio.Future[None], send_window: int) -> None:
        self.id = stream_id
        self.future = future
        self.headers: Headers | None = None
        self.trailers: Headers | None = None
        self.chunks: list[bytes] = []
        self.received = 0
        self.length: int | None = None  # from the message prefix, once 5 bytes are in
        self.unacked = 0  # received bytes not yet handed back with WINDOW_UPDATE
        self.send_window = send_window
        self.pending: memoryview | None = None  # request bytes waiting for send window
        self.timer: asyncio.TimerHandle | None = None  # the deadline's

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    def ended(self) -> None:
        """The stream ended on the wire (END_STREAM): the caller reads the outcome."""
        if not self.future.done():
            self.future.set_result(None)


class ServerStream(_Stream):
    """One server-streaming call: its messages are queued for one reader as they arrive.

    ``future`` resolves when the reply's headers arrive (or the stream ends without them);
    only ``Refused`` is set on it as an exception (the call may go again elsewhere). Every
    other outcome is ``end``, read after the queued messages: the trailers' status (None
    for OK, see ``lean_wire.stream_end``), or a failure. A failure of our side or the
    connection (deadline, cancel, loss, reset) drops the queued messages, as grpc does; a
    status the server sent, or a message over the size limit, comes after them.
    ``received`` counts the bytes of ``chunks`` (a message still arriving); ``need`` is how
    many must be there before a message can be cut, so a large message is joined once.
    """

    __slots__ = ("end", "ending", "initial", "messages", "need", "waiter")
    streaming = True

    def __init__(self, stream_id: int, future: asyncio.Future[None], send_window: int) -> None:
        super().__init__(stream_id, future, send_window)
        # whole messages, not yet read: payload bytes, or (flag, payload) when compressed
        self.messages: deque[bytes | tuple[int, bytes]] = deque()
        self.need = 5
        self.end: BaseException | None = None  # set with ``ending``
        self.ending = False  # the outcome is known: ``end`` (None: OK) after the messages
        self.initial: Headers | None = None  # leading headers of a reply that is not trailers-only
        self.waiter: asyncio.Future[None] | None = None  # the reader, waiting for more

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def finish(self, error: BaseException | None) -> None:
        """Record how the stream ended (the first word wins), after its queued messages."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.ending:
            self.ending = True
            self.end = error
        if not self.future.done():
            self.future.set_result(None)
        self.wake()

    def fail(self, error: BaseException) -> None:
        if isinstance(error, Refused):
            if not self.future.done():
                self.future.set_exception(error)  # never processed: the caller tries again
                return
            error = UpstreamStatus(14, "the upstream refused a stream it had answered")
        if not self.ending:
            self.messages.clear()  # the call is over now, as grpc's is: none are read
        self.finish(error)

    def ended(self) -> None:
        error = stream_end(self.headers, self.trailers, self.received)
        if error is not None and error.message.startswith("Stream removed"):
            self.fail(error)  # C-core's stream-level failure (bad trailers): none are read
        else:
            self.finish(error)


class Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying many unary streams (frames in, frames out, windows)."""

    def __init__(
        self,
        max_receive: int,
        keepalive: tuple[float, float] | None = None,  # (time, timeout); None: the defaults
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed: UpstreamStatus | None = None  # GOAWAY, lost or closed: no new streams
        self._max_receive = max_receive
        self._keepalive = keepalive or (KEEPALIVE_TIME, KEEPALIVE_TIMEOUT)
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._heard = False  # bytes arrived since the last keepalive tick
        self._ping_sent = False  # a keepalive PING awaits its ACK
        self._pings_without_data = 0  # keepalive PINGs since we last sent HEADERS or DATA
        self.too_many_pings = False  # the server's GOAWAY said so: ping less next time
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._inbox = b""
        self._decoder = Decoder(max_header_list_size=_MAX_BLOCK * 4)  # we apply our own
        self._memo: dict[bytes, Headers] = {}
        self._table_update = b""  # a table size update owed to the server's decoder
        self._continuation: tuple[int, int, list[bytes]] | None = None
        self._streams: dict[int, _Stream] = {}
        self._blocked: dict[int, _Stream] = {}  # streams with request bytes waiting for window
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._next_id = 1
        self._max_streams = 2**31  # the server's, until its SETTINGS say otherwise
        self._max_frame_out = 16_384
        self._initial_send_window = 65_535
        self._send_window = 65_535
        self._recv_unacked = 0

    # -- calls --------------------------------------------------------------------------

    async def start(
        self,
        block: bytes,
        framed: bytes,
        metadata: list[bytes],
        deadline: float | None,
        kind: type[_Stream] = _Stream,
    ) -> _Stream:
        """Open a stream and send the request (as far as the windows allow); raises
        ``Refused`` when this connection takes no new streams. The caller owns the stream
        from here: it must ``release`` it, and ``reset`` it when it gives up."""
        while len(self._streams) >= self._max_streams and self.closed is None:
            await self.wait_turn(deadline)
        if self.closed is not None or self._next_id > _MAX_STREAM_ID:
            self._drain("stream ids exhausted")
            raise Refused
        timeout = b""
        if deadline is not None:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise UpstreamStatus(4, DEADLINE_MESSAGE)
            timeout = literal(b"grpc-timeout", encode_timeout(remaining))
        stream_id = self._next_id
        self._next_id += 2
        parts = [self._table_update, block, timeout] if self._table_update else [block, timeout]
        self._table_update = b""
        parts += metadata
        stream = kind(stream_id, self.loop.create_future(), self._initial_send_window)
        self._streams[stream_id] = stream
        if self._keepalive_timer is None:
            self._heard = False
            self._keepalive_timer = self.loop.call_later(self._keepalive[0], self._keepalive_tick)
        self._send_headers(stream_id, b"".join(parts))
        stream.pending = memoryview(framed)
        self._send_pending(stream)
        if deadline is not None:
            stream.timer = self.loop.call_at(deadline, self._expire, stream)
        return stream

    async def call(
        self, block: bytes, framed: bytes, metadata: list[bytes], deadline: float | None
    ) -> _Stream:
        """Send one request and wait for its stream to end; raises what the caller must map."""
        stream = await self.start(block, framed, metadata, deadline)
        try:
            await stream.future
        except asyncio.CancelledError:
            self._reset(stream, CANCEL)
            raise
        finally:
            self.release(stream)
        return stream

    def release(self, stream: _Stream) -> None:
        """The caller is done with ``stream``: its turn goes to a waiting call."""
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        if self._waiters:
            self._wake()
        if self.closed is not None and not self._streams:
            self._close_transport()

    def cancel(self, stream: _Stream, error: BaseException | None = None) -> None:
        """Reset ``stream`` (CANCEL) if it is still open, and end it with ``error``."""
        self._reset(stream, CANCEL)
        if error is not None:
            stream.fail(error)

    def credit(self, stream: ServerStream, size: int) -> None:
        """The reader took ``size`` bytes of messages: the server may send as much again.

        Our stream window is handed back only here, as messages are read, never as they
        arrive: a reader that stops makes the server stop after one window (16 MiB), so a
        slow client holds its upstream back instead of filling our memory.
        """
        stream.unacked += size
        if stream.unacked > _STREAM_WINDOW // 2 and stream.id in self._streams:
            self._send(frame(WINDOW_UPDATE, 0, stream.id, _U32.pack(stream.unacked)))
            stream.unacked = 0

    async def wait_turn(self, deadline: float | None) -> None:
        """Wait until a stream of this connection ends (or it closes, or the deadline)."""
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            self._pass_on(waiter)
            raise UpstreamStatus(4, DEADLINE_MESSAGE) from None
        except BaseException:
            self._pass_on(waiter)
            raise

    def _pass_on(self, waiter: asyncio.Future[None]) -> None:
        """A woken waiter that leaves anyway (deadline, cancelled) hands its turn on.

        Each ended stream wakes one waiter; if that waiter's call is cancelled or times
        out in the same step, the free slot would otherwise wait for the next stream to
        end, or for ever.
        """
        if waiter.done() and not waiter.cancelled() and self._waiters:
            self._wake()

    @property
    def busy(self) -> bool:
        return bool(self._streams)

    def close(self) -> None:
        """Say goodbye and drop the connection; calls still open fail with UNAVAILABLE."""
        if self._transport is not None and not self._transport.is_closing():
            self._send(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, NO_ERROR)))
            self._flush()
        self._shutdown(UpstreamStatus(14, "the gateway closed the upstream connection"))
        self._close_transport()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() != "h2":
            # gRPC over TLS is h2 by ALPN or nothing (C-core and grpc-go refuse it too).
            self.ready.set_exception(ConnectionError("the upstream did not select h2 by ALPN"))
            transport.close()
            return
        settings = _SETTING.pack(0x2, 0) + _SETTING.pack(0x4, _STREAM_WINDOW)  # no push
        transport.write(
            _PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, _U32.pack(_MAX_WINDOW - 65_535))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = f": {exc}" if exc else ""
        self._shutdown(UpstreamStatus(14, f"the upstream connection was lost{reason}"))
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection closed before SETTINGS{reason}"))

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._inbox:
            data = self._inbox + data
        pos, size = 0, len(data)
        try:
            while size - pos >= 9:
                high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(data, pos)
                length = (high << 16) | low
                if length > _MAX_FRAME_IN:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"a {length}-byte frame")
                end = pos + 9 + length
                if end > size:
                    break
                payload = data[pos + 9 : end]
                pos = end
                stream_id &= 0x7FFFFFFF
                if self._continuation is not None and kind != CONTINUATION:
                    raise _ConnectionError(PROTOCOL_ERROR, "a frame inside a header block")
                if kind == DATA:
                    self._on_data(stream_id, flags, payload)
                elif kind == HEADERS:
                    self._on_headers(stream_id, flags, payload)
                elif kind == SETTINGS:
                    self._on_settings(stream_id, flags, payload)
                elif kind == WINDOW_UPDATE:
                    self._on_window_update(stream_id, payload)
                elif kind == PING:
                    if len(payload) != 8 or stream_id:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "a bad PING")
                    if not flags & ACK:
                        self._send(frame(PING, ACK, 0, payload))
                    elif payload == _KEEPALIVE_PING:
                        self._ping_sent = False
                elif kind == RST_STREAM:
                    self._on_reset(stream_id, payload)
                elif kind == GOAWAY:
                    self._on_goaway(payload)
                elif kind == CONTINUATION:
                    self._on_continuation(stream_id, flags, payload)
                elif kind == PUSH_PROMISE:
                    raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
                # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.
        except _ConnectionError as error:
            self._fail_connection(error.code, str(error))
            return
        self._inbox = data[pos:] if pos < size else b""

    # -- frames in ----------------------------------------------------------------------

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        counted = len(payload)
        if flags & PADDED:
            payload = _unpad(payload)
        self._recv_unacked += counted
        if self._recv_unacked > _MAX_WINDOW // 2:
            self._send(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
            self._recv_unacked = 0
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # abandoned: only the connection window matters
        if stream.streaming:
            self._on_stream_data(cast(ServerStream, stream), flags, payload, counted)
            return
        stream.chunks.append(payload)
        stream.received += len(payload)
        if stream.length is None and stream.received >= 5:
            stream.length = MESSAGE_PREFIX.unpack_from(b"".join(stream.chunks))[1]
            if stream.length > self._max_receive:
                self._reset(stream, CANCEL)
                message = (
                    f"Received message larger than max ({stream.length} vs. {self._max_receive})"
                )
                initial = metadata_pairs(stream.headers) if stream.headers is not None else ()
                stream.fail(UpstreamStatus(8, message, initial_metadata=initial))
                return
        if stream.length is not None and stream.received > stream.length + 5:
            self._reset(stream, CANCEL)
            stream.fail(UpstreamStatus(13, "a unary response must be exactly one message"))
            return
        if flags & END_STREAM:
            self._end(stream)
            return
        stream.unacked += counted
        if stream.unacked > _STREAM_WINDOW // 2:
            self._send(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.unacked)))
            stream.unacked = 0

    def _on_stream_data(
        self, stream: ServerStream, flags: int, payload: bytes, counted: int
    ) -> None:
        """DATA of a server stream: whole messages are queued for the reader at once."""
        if stream.headers is None or stream.ending:
            self._reset(stream, PROTOCOL_ERROR)
            stream.fail(UpstreamStatus(13, "DATA before the reply's headers"))
            return
        stream.unacked += counted - len(payload)  # padding: never read, handed back now
        if payload:
            stream.chunks.append(payload)
            stream.received += len(payload)
            if stream.received >= stream.need:
                self._split(stream)
                if stream.ending:
                    return  # failed: a message over the size limit
        if flags & END_STREAM:
            self._end(stream)
        elif stream.unacked > _STREAM_WINDOW // 2:
            self._send(frame(WINDOW_UPDATE, 0, stream.id, _U32.pack(stream.unacked)))
            stream.unacked = 0

    def _split(self, stream: ServerStream) -> None:
        """Cut the whole messages out of what has arrived; keep the rest for later frames."""
        chunks = stream.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        pos, size, need = 0, len(data), 5
        messages = stream.messages
        limit = self._max_receive
        unpack = MESSAGE_PREFIX.unpack_from
        while size - pos >= 5:
            flag, length = unpack(data, pos)
            if length > limit:
                self._reset(stream, CANCEL)
                message = f"Received message larger than max ({length} vs. {limit})"
                initial = metadata_pairs(stream.headers) if stream.headers is not None else ()
                stream.finish(UpstreamStatus(8, message, initial_metadata=initial))
                break  # the messages before it are still read, as grpc's are
            end = pos + 5 + length
            if end > size:
                need = 5 + length
                break
            messages.append(data[pos + 5 : end] if not flag else (flag, data[pos + 5 : end]))
            pos = end
        if pos:
            rest = data[pos:]
            stream.chunks = [rest] if rest else []
            stream.received = len(rest)
            stream.wake()
        else:
            stream.chunks = [data]
        stream.need = need

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & PADDED:
            payload = _unpad(payload)
        if flags & PRIORITY:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_block(stream_id, flags, payload)
        else:
            self._continuation = (stream_id, flags, [payload])

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "an unexpected CONTINUATION")
        pending[2].append(payload)
        if sum(map(len, pending[2])) > _MAX_BLOCK:
            raise _ConnectionError(PROTOCOL_ERROR, "a header block over 1 MiB")
        if flags & END_HEADERS:
            self._continuation = None
            self._on_block(stream_id, pending[1], b"".join(pending[2]))

    def _on_block(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)  # always: the dynamic table is the connection's
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id & 1 == 0 or stream_id >= self._next_id:
                raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on idle stream {stream_id}")
            return
        if headers is None:
            self._reset(stream, CANCEL)
            stream.fail(UpstreamStatus(8, "received metadata size exceeds hard limit"))
            return
        if stream.headers is None:
            stream.headers = headers
            if not flags & END_STREAM:
                error = header_error(headers)
                if error is not None:  # not a gRPC reply: its body is not read as one
                    self._reset(stream, CANCEL)
                    stream.fail(error)
                elif stream.streaming:
                    cast(ServerStream, stream).initial = headers
                    if not stream.future.done():
                        stream.future.set_result(None)  # the reader may start
                return
        elif flags & END_STREAM:
            stream.trailers = headers
        else:
            self._reset(stream, PROTOCOL_ERROR)
            stream.fail(UpstreamStatus(13, "trailers without END_STREAM"))
            return
        self._end(stream)

    def _decode(self, block: bytes) -> Headers | None:
        """HPACK-decode ``block``, or reuse an earlier decoding that is provably the same.

        A block that neither inserts into nor evicts from the dynamic table decodes to the
        same fields for as long as the table is unchanged. The table's (length, newest
        entry) changes with every insertion or eviction; any change empties the memo, and
        a block that changed the table is never stored. Decoded lists are shared between
        replies and never mutated.
        """
        known = self._memo.get(block)
        if known is not None:
            return known
        entries = self._decoder.header_table.dynamic_entries
        before = (len(entries), entries[0] if entries else None)
        try:
            headers = cast(Headers, self._decoder.decode(block, raw=True))
        except HPACKError as error:
            raise _ConnectionError(COMPRESSION_ERROR, f"HPACK: {error}") from error
        oversized = sum(len(n) + len(v) + 32 for n, v in headers) > MAX_METADATA
        if len(entries) != before[0] or (entries[0] if entries else None) is not before[1]:
            self._memo.clear()
        elif len(self._memo) < 64 and block[:1] and block[0] & 0xE0 != 0x20 and not oversized:
            self._memo[block] = headers  # (a block opening with a size update is not kept)
        return None if oversized else headers  # None: decoded (the table is in step), too big

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id or len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "a bad SETTINGS frame")
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == 0x1:  # HEADER_TABLE_SIZE: we never index; tell it our table is empty
                self._table_update = b"\x20"
            elif key == 0x3:  # MAX_CONCURRENT_STREAMS
                self._max_streams = value
            elif key == 0x4:  # INITIAL_WINDOW_SIZE shifts every open stream's window
                if value > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self._initial_send_window
                self._initial_send_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == 0x5:  # MAX_FRAME_SIZE
                if not 16_384 <= value <= 16_777_215:
                    raise _ConnectionError(PROTOCOL_ERROR, "a bad MAX_FRAME_SIZE")
                self._max_frame_out = value
        self._send(frame(SETTINGS, ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
        self._send_blocked()
        while self._waiters and len(self._streams) < self._max_streams:
            self._wake()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "a bad WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if not stream_id:
            if not increment:
                raise _ConnectionError(PROTOCOL_ERROR, "a zero WINDOW_UPDATE")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window overflow")
            self._send_blocked()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if not increment or stream.send_window > _MAX_WINDOW:
            self._reset(stream, PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR)
            stream.fail(UpstreamStatus(13, "a bad stream WINDOW_UPDATE"))
        elif stream.pending is not None:
            self._send_pending(stream)

    def _on_reset(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4 or not stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "a bad RST_STREAM")
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._blocked.pop(stream_id, None)
        code = _U32.unpack(payload)[0]
        if code == REFUSED_STREAM:
            stream.fail(Refused())
        else:
            grpc_code = _RESET_CODES.get(code, 13)
            stream.fail(UpstreamStatus(grpc_code, f"Received RST_STREAM with error code {code}"))

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise _ConnectionError(FRAME_SIZE_ERROR, "a bad GOAWAY")
        last, code = _GOAWAY.unpack_from(payload)
        last &= 0x7FFFFFFF
        debug = payload[8:].decode("utf-8", "replace")
        if code == ENHANCE_YOUR_CALM and debug == "too_many_pings":
            self.too_many_pings = True
        error = UpstreamStatus(14, f"the upstream is going away (GOAWAY {code}: {debug})".strip())
        if self.closed is None:
            self.closed = error
        for stream_id in [sid for sid in self._streams if sid > last]:
            # never processed (RFC 9113 6.8): sent again on a new connection, as grpc's
            # transparent retry does, so a rolling restart costs these calls nothing
            self._blocked.pop(stream_id, None)
            self._streams.pop(stream_id).fail(Refused())
        while self._waiters:  # queued calls move to a new connection
            self._wake()
        if not self._streams:
            self._close_transport()

    # -- frames out ---------------------------------------------------------------------

    def _send_headers(self, stream_id: int, block: bytes) -> None:
        self._pings_without_data = 0
        limit = self._max_frame_out
        if len(block) <= limit:
            self._send(frame(HEADERS, END_HEADERS, stream_id, block))
            return
        self._send(frame(HEADERS, 0, stream_id, block[:limit]))
        for start in range(limit, len(block), limit):
            flags = END_HEADERS if start + limit >= len(block) else 0
            self._send(frame(CONTINUATION, flags, stream_id, block[start : start + limit]))

    def _send_pending(self, stream: _Stream) -> None:
        pending = stream.pending
        while pending is not None:
            allowed = min(self._send_window, stream.send_window, self._max_frame_out)
            if allowed <= 0:
                self._blocked[stream.id] = stream
                break
            chunk, rest = pending[:allowed], pending[allowed:]
            pending = rest if len(rest) else None
            self._send_window -= len(chunk)
            stream.send_window -= len(chunk)
            self._send(frame(DATA, 0 if pending else END_STREAM, stream.id, chunk.tobytes()))
            self._pings_without_data = 0
        stream.pending = pending
        if pending is None:
            self._blocked.pop(stream.id, None)

    def _send_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            self._send_pending(stream)

    def _send(self, frame: bytes) -> None:
        """Queue a frame; everything queued in one loop iteration goes out in one write."""
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    # -- endings ------------------------------------------------------------------------

    def _end(self, stream: _Stream) -> None:
        del self._streams[stream.id]
        if self._blocked.pop(stream.id, None) is not None:
            # answered before the request was all sent (an early error status): our half
            # of the stream is still open on the server until we close it (RFC 9113 8.1)
            stream.pending = None
            self._send(frame(RST_STREAM, 0, stream.id, _U32.pack(NO_ERROR)))
        stream.ended()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _keepalive_tick(self) -> None:
        """Every keepalive interval while streams are open: prove the connection is alive.

        Bytes heard since the last tick are proof enough (a busy connection is never
        pinged); otherwise a PING goes out, and if it is still unanswered at the next
        tick (the timeout) the connection is failed, so its calls end with UNAVAILABLE
        instead of waiting out their deadlines on a dead peer.
        """
        self._keepalive_timer = None
        if self._transport is None:
            return
        interval, timeout = self._keepalive
        if self._ping_sent and not self._heard:
            self._shutdown(UpstreamStatus(14, "keepalive watchdog timeout"))
            self._close_transport()
            return
        if not self._streams:
            self._ping_sent = False
            return  # idle: not pinged; the next call restarts the timer
        if self._heard or self._pings_without_data >= _MAX_PINGS_WITHOUT_DATA:
            self._ping_sent = False
            self._heard = False
            self._keepalive_timer = self.loop.call_later(interval, self._keepalive_tick)
            return
        self._ping_sent = True
        self._pings_without_data += 1
        self._send(frame(PING, 0, 0, _KEEPALIVE_PING))
        self._keepalive_timer = self.loop.call_later(timeout, self._keepalive_tick)

    def _expire(self, stream: _Stream) -> None:
        self._reset(stream, CANCEL)
        stream.fail(UpstreamStatus(4, DEADLINE_MESSAGE))

    def _reset(self, stream: _Stream, code: int) -> None:
        """Reset the stream if it is still open, so the server stops working on it."""
        if self._streams.pop(stream.id, None) is None:
            return
        self._blocked.pop(stream.id, None)
        self._send(frame(RST_STREAM, 0, stream.id, _U32.pack(code)))
        if self._waiters:
            self._wake()

    def _drain(self, reason: str) -> None:
        if self.closed is None:
            self.closed = UpstreamStatus(14, reason)
        if not self._streams:
            self._close_transport()

    def _fail_connection(self, code: int, reason: str) -> None:
        self._send(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, code) + reason.encode()))
        self._flush()
        self._shutdown(UpstreamStatus(13, f"HTTP/2 protocol error from the upstream: {reason}"))
        self._close_transport()

    def _shutdown(self, error: UpstreamStatus) -> None:
        if self.closed is None:
            self.closed = error
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        streams, self._streams = self._streams, {}
        self._blocked.clear()
        for stream in streams.values():
            stream.fail(UpstreamStatus(error.grpc_code, error.message))
        while self._waiters:
            self._wake()

    def _close_transport(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - payload[0]]
