"""Variant (b): a unary gRPC client with hand-rolled HTTP/2 framing on an ``asyncio.Protocol``.

Requests are built from header blocks encoded once per (path, authority): HPACK static
-table references and literals *without indexing*, so our encoder never touches the
dynamic table and needs no state. Per call only ``grpc-timeout`` and user metadata are
encoded. Responses go through ``hpack.Decoder`` (the server's dynamic table is shared by
all streams, so every header block is decoded in order, even for calls we abandoned).

Rules this module keeps (RFC 9113):

- Preface, then our SETTINGS (push off, 16 MiB stream window) and a WINDOW_UPDATE that
  opens the connection window to 2^31-1. The server's SETTINGS are applied and acked;
  a changed INITIAL_WINDOW_SIZE shifts every open stream's send window by the delta.
- Sending DATA takes min(connection window, stream window, peer MAX_FRAME_SIZE); what
  does not fit waits for WINDOW_UPDATE. Receiving DATA counts against our windows and is
  handed back by WINDOW_UPDATE once half a window is used.
- New streams wait while MAX_CONCURRENT_STREAMS are open.
- PING is answered with an ACK carrying the same 8 bytes.
- RST_STREAM fails its call (REFUSED_STREAM -> UNAVAILABLE, CANCEL -> CANCELLED, ...).
- GOAWAY fails calls above last_stream_id with UNAVAILABLE and refuses new calls; calls
  at or below it may still finish.
- A HEADERS block split over CONTINUATION frames must not be interleaved with other
  frames; PUSH_PROMISE (we disabled push), a bad frame size or an HPACK error are
  connection errors: GOAWAY, close, every call fails.
- Deadline or cancellation resets the stream with CANCEL.

Outgoing frames are gathered and written once per loop iteration.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import cast

from hpack import Decoder, HPACKError

from .common import (
    MAX_RECEIVE_BYTES,
    TRANSPARENT_RETRIES,
    CallState,
    Metadata,
    RefusedStream,
    Reply,
    RpcError,
    StatusCode,
    encode_metadata,
    encode_timeout,
    finish,
    frame_message,
    reset_error,
)

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">BHBBL")  # length (24 bits as 8 + 16), type, flags, stream id
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION = 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, CANCEL, COMPRESSION_ERROR = 1, 3, 6, 8, 9

_MAX_WINDOW = 2**31 - 1
_STREAM_WINDOW = 16 * 1024 * 1024
_MAX_FRAME_IN = 16_384  # we never raise SETTINGS_MAX_FRAME_SIZE


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _FRAME.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 section 5.1 integer with an N-bit prefix OR-ed into ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(data: bytes) -> bytes:
    return _hpack_int(len(data), 7, 0) + data  # H=0: raw octets, no Huffman


def _literal(name: bytes | int, value: bytes) -> bytes:
    """Literal header field without indexing (RFC 7541 6.2.2), name by static index or literal."""
    if isinstance(name, int):
        return _hpack_int(name, 4, 0x00) + _hpack_str(value)
    return b"\x00" + _hpack_str(name) + _hpack_str(value)


def request_block(path: bytes, authority: bytes) -> bytes:
    """The header block every call to ``path`` starts with (static table: RFC 7541 appendix A)."""
    return b"".join(
        (
            b"\x83",  # :method POST (static index 3)
            b"\x86",  # :scheme http (static index 6)
            _literal(4, path),  # :path
            _literal(1, authority),  # :authority
            _literal(31, b"application/grpc"),  # content-type
            _literal(b"te", b"trailers"),
        )
    )


class HandRolledClient(asyncio.Protocol):
    """Unary calls over one HTTP/2 connection; make it with ``await HandRolledClient.connect()``."""

    def __init__(self, authority: bytes, *, memo: bool = False) -> None:
        self._authority = authority
        self._memo: dict[bytes, list[tuple[bytes, bytes]]] | None = {} if memo else None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._inbox = b""
        self._decoder = Decoder()
        self._blocks: dict[bytes, bytes] = {}  # path -> static part of its header block
        self._table_update = b""  # a dynamic table size update owed to the peer, if any
        self._continuation: tuple[int, int, list[bytes]] | None = None
        self._calls: dict[int, CallState] = {}
        self._blocked: dict[int, CallState] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._next_stream_id = 1
        # The server's settings and our send windows.
        self._max_streams = 2**31
        self._max_frame_out = 16_384
        self._initial_send_window = 65_535
        self._send_window = 65_535
        # Our receive window on the connection, handed back in large steps.
        self._recv_unacked = 0
        self._closed: RpcError | None = None  # set by GOAWAY or a lost connection: no new calls
        self._ready: asyncio.Future[None] = self._loop.create_future()

    @classmethod
    async def connect(cls, host: str, port: int, *, memo: bool = False) -> HandRolledClient:
        """Open the connection and wait for the server's first SETTINGS (one round trip).

        ``memo`` reuses the decoded headers of a block seen before while the server's
        dynamic table has not changed (see ``_decode``).
        """
        loop = asyncio.get_running_loop()
        authority = f"{host}:{port}".encode()
        _, client = await loop.create_connection(lambda: cls(authority, memo=memo), host, port)
        await client._ready
        return client

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        settings = _SETTING.pack(0x2, 0) + _SETTING.pack(0x4, _STREAM_WINDOW)
        transport.write(
            _PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, _U32.pack(_MAX_WINDOW - 65_535))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._shutdown(RpcError(StatusCode.UNAVAILABLE, f"connection lost: {exc}"))
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self._inbox:
            data = self._inbox + data
        pos, size = 0, len(data)
        try:
            while size - pos >= 9:
                high, low, kind, flags, stream_id = _FRAME.unpack_from(data, pos)
                length = (high << 16) | low
                end = pos + 9 + length
                if length > _MAX_FRAME_IN:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"{length}-byte frame")
                if end > size:
                    break
                payload = data[pos + 9 : end]
                pos = end
                stream_id &= 0x7FFFFFFF
                if self._continuation is not None and kind != CONTINUATION:
                    raise _ConnectionError(PROTOCOL_ERROR, "frame inside a header block")
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
                        raise _ConnectionError(FRAME_SIZE_ERROR, "bad PING")
                    if not flags & ACK:
                        self._send(_frame(PING, ACK, 0, payload))
                elif kind == RST_STREAM:
                    if len(payload) != 4 or not stream_id:
                        raise _ConnectionError(PROTOCOL_ERROR, "bad RST_STREAM")
                    call = self._calls.pop(stream_id, None)
                    if call is not None:
                        self._blocked.pop(stream_id, None)
                        call.fail(reset_error(_U32.unpack(payload)[0]))
                elif kind == GOAWAY:
                    self._on_goaway(payload)
                elif kind == CONTINUATION:
                    self._on_continuation(stream_id, flags, payload)
                elif kind == PUSH_PROMISE:
                    raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
                # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.
        except _ConnectionError as error:
            self._fail_connection(error.code, error.reason)
            return
        self._inbox = data[pos:] if pos < size else b""

    # -- calls ------------------------------------------------------------------------

    async def unary(
        self,
        path: bytes,
        request: bytes,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Reply:
        """One unary call: ``request`` and the reply's message are serialized protobuf.

        Raises ``RpcError`` for a non-OK status, a reset stream, GOAWAY, a lost connection
        or the deadline passing (the stream is then reset with CANCEL). Refused streams
        are retried a few times, as grpc does (each attempt gets the full timeout).
        """
        for _ in range(TRANSPARENT_RETRIES):
            try:
                return await self._attempt(path, request, timeout, metadata)
            except RefusedStream:
                continue
        return await self._attempt(path, request, timeout, metadata)

    async def _attempt(
        self, path: bytes, request: bytes, timeout: float | None, metadata: Metadata
    ) -> Reply:
        if self._closed is not None:
            raise self._closed
        while len(self._calls) >= self._max_streams:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
            if self._closed is not None:
                raise self._closed
        stream_id = self._next_stream_id
        if stream_id > _MAX_WINDOW:  # ids exhausted: a real client would open a new connection
            raise RpcError(StatusCode.UNAVAILABLE, "stream ids exhausted")
        self._next_stream_id = stream_id + 2
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = request_block(path, self._authority)
        parts = [self._table_update, block] if self._table_update else [block]
        self._table_update = b""
        if timeout is not None:
            parts.append(_literal(b"grpc-timeout", encode_timeout(timeout)))
        for name, value in encode_metadata(metadata) if metadata else ():
            parts.append(_literal(name, value))
        self._send_header_block(stream_id, b"".join(parts))
        call = CallState(stream_id, self._loop.create_future(), self._initial_send_window)
        call.pending = memoryview(frame_message(request))
        self._calls[stream_id] = call
        self._send_pending(call)
        if timeout is not None:
            call.timer = self._loop.call_later(timeout, self._expire, call)
        try:
            await call.future
        except asyncio.CancelledError:
            self._abandon(call)
            raise
        finally:
            if call.timer is not None:
                call.timer.cancel()
            if self._waiters:
                self._wake_waiter()
        return finish(call)

    def close(self) -> None:
        if self._transport is not None:
            self._send(_frame(GOAWAY, 0, 0, _GOAWAY.pack(0, 0)))
            self._flush()
            self._transport.close()

    # -- frames in ----------------------------------------------------------------------

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        flow_controlled = len(payload)
        if flags & PADDED:
            payload = _unpad(payload)
        self._recv_unacked += flow_controlled
        if self._recv_unacked > _MAX_WINDOW // 2:
            self._send(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
            self._recv_unacked = 0
        call = self._calls.get(stream_id)
        if call is None:
            return  # abandoned or unknown: the connection window is all that matters
        call.chunks.append(payload)
        call.received += len(payload)
        if call.received > MAX_RECEIVE_BYTES + 5:
            self._abandon(call)
            call.fail(RpcError(StatusCode.RESOURCE_EXHAUSTED, "response larger than 4 MiB"))
            return
        if flags & END_STREAM:
            self._calls.pop(stream_id)
            call.future.set_result(call)  # no trailers: ``finish`` reports it
            return
        call.unacked += flow_controlled
        if call.unacked > _STREAM_WINDOW // 2:
            self._send(_frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(call.unacked)))
            call.unacked = 0

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & PADDED:
            payload = _unpad(payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_header_block(stream_id, flags, payload)
        else:
            self._continuation = (stream_id, flags, [payload])

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending[2].append(payload)
        if flags & END_HEADERS:
            self._continuation = None
            self._on_header_block(stream_id, pending[1], b"".join(pending[2]))

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        call = self._calls.get(stream_id)
        if call is None:
            if stream_id & 1 == 0 or stream_id >= self._next_stream_id:
                raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on idle stream {stream_id}")
            return
        if call.headers is None:
            call.headers = headers
            if not flags & END_STREAM:
                return
        elif flags & END_STREAM:
            call.trailers = headers
        else:  # a second HEADERS must end the stream
            self._abandon(call)
            call.fail(RpcError(StatusCode.INTERNAL, "trailers without END_STREAM"))
            return
        self._calls.pop(stream_id)
        self._blocked.pop(stream_id, None)
        call.future.set_result(call)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """HPACK-decode ``block``, or reuse its earlier decoding when that is provably the same.

        A block that neither inserts into nor resizes the dynamic table decodes to the
        same headers for as long as the table is unchanged: a steady server sends the
        same few bytes (all indexed fields) for every reply. The table's (length,
        newest entry) pair changes with every insertion or eviction, and any change
        empties the memo. Decoded lists are shared: callers must not mutate them.
        """
        memo = self._memo
        if memo is not None:
            known = memo.get(block)
            if known is not None:
                return known
        entries = self._decoder.header_table.dynamic_entries
        before = (len(entries), entries[0] if entries else None)
        try:
            headers = cast(list[tuple[bytes, bytes]], self._decoder.decode(block, raw=True))
        except HPACKError as error:
            raise _ConnectionError(COMPRESSION_ERROR, f"HPACK: {error}") from error
        if memo is not None:
            unchanged = len(entries) == before[0] and (entries[0] if entries else None) is before[1]
            if not unchanged:
                memo.clear()
            elif len(memo) < 64:
                memo[block] = headers
        return headers

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id or len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad SETTINGS")
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == 0x1:  # HEADER_TABLE_SIZE: we never index, but say our table is empty
                self._table_update = b"\x20"
            elif key == 0x3:  # MAX_CONCURRENT_STREAMS
                self._max_streams = value
            elif key == 0x4:  # INITIAL_WINDOW_SIZE
                if value > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too big")
                delta = value - self._initial_send_window
                self._initial_send_window = value
                for call in self._calls.values():
                    call.send_window += delta
            elif key == 0x5:  # MAX_FRAME_SIZE
                if not 16_384 <= value <= 16_777_215:
                    raise _ConnectionError(PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
                self._max_frame_out = value
        self._send(_frame(SETTINGS, ACK, 0))
        if not self._ready.done():
            self._ready.set_result(None)
        self._send_blocked()
        while self._waiters and len(self._calls) < self._max_streams:
            self._wake_waiter()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise _ConnectionError(PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window overflow")
            self._send_blocked()
            return
        call = self._calls.get(stream_id)
        if call is None:
            return
        call.send_window += increment
        if not increment or call.send_window > _MAX_WINDOW:
            self._abandon(call, PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR)
            call.fail(RpcError(StatusCode.INTERNAL, "bad stream WINDOW_UPDATE"))
        elif call.pending is not None:
            self._send_pending(call)

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad GOAWAY")
        last, code = _GOAWAY.unpack_from(payload)
        last &= 0x7FFFFFFF
        error = RpcError(StatusCode.UNAVAILABLE, f"GOAWAY (0x{code:x}) {payload[8:]!r}")
        self._closed = error
        for stream_id in [sid for sid in self._calls if sid > last]:
            self._blocked.pop(stream_id, None)
            self._calls.pop(stream_id).fail(error)
        while self._waiters:
            self._wake_waiter()

    # -- frames out ---------------------------------------------------------------------

    def _send_header_block(self, stream_id: int, block: bytes) -> None:
        limit = self._max_frame_out
        if len(block) <= limit:
            self._send(_frame(HEADERS, END_HEADERS, stream_id, block))
            return
        self._send(_frame(HEADERS, 0, stream_id, block[:limit]))
        for start in range(limit, len(block), limit):
            last = start + limit >= len(block)
            part = block[start : start + limit]
            self._send(_frame(CONTINUATION, END_HEADERS if last else 0, stream_id, part))

    def _send_pending(self, call: CallState) -> None:
        pending = call.pending
        while pending is not None:
            allowed = min(self._send_window, call.send_window, self._max_frame_out)
            if allowed <= 0:
                self._blocked[call.stream_id] = call
                break
            chunk = pending[:allowed]
            rest = pending[allowed:]
            pending = rest if len(rest) else None
            self._send_window -= len(chunk)
            call.send_window -= len(chunk)
            flags = END_STREAM if pending is None else 0
            self._send(_frame(DATA, flags, call.stream_id, chunk.tobytes()))
        call.pending = pending
        if pending is None:
            self._blocked.pop(call.stream_id, None)

    def _send_blocked(self) -> None:
        for call in list(self._blocked.values()):
            self._send_pending(call)

    def _send(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    # -- endings --------------------------------------------------------------------------

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire(self, call: CallState) -> None:
        self._abandon(call)
        call.fail(RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))

    def _abandon(self, call: CallState, code: int = CANCEL) -> None:
        """Reset the stream if it is still open, so the server stops working on it."""
        if self._calls.pop(call.stream_id, None) is None:
            return
        self._blocked.pop(call.stream_id, None)
        self._send(_frame(RST_STREAM, 0, call.stream_id, _U32.pack(code)))
        if self._waiters:
            self._wake_waiter()

    def _fail_connection(self, code: int, reason: str) -> None:
        self._send(_frame(GOAWAY, 0, 0, _GOAWAY.pack(0, code) + reason.encode()))
        self._flush()
        self._shutdown(RpcError(StatusCode.INTERNAL, f"HTTP/2 connection error: {reason}"))
        if self._transport is not None:
            self._transport.close()

    def _shutdown(self, error: RpcError) -> None:
        if self._closed is None:
            self._closed = error
        for call in self._calls.values():
            call.fail(error)
        self._calls.clear()
        self._blocked.clear()
        while self._waiters:
            self._wake_waiter()


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - payload[0]]
