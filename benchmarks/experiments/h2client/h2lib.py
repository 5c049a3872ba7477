"""Variant (a): a unary gRPC client on the ``h2`` library's ``H2Connection`` state machine.

One plain-TCP HTTP/2 connection, driven by an ``asyncio.Protocol`` on the event loop's
thread, with many concurrent streams. ``h2`` does the framing, HPACK, SETTINGS and PING
acks, and flow-control bookkeeping; this module maps its events onto calls, waits for
send window and for a free stream under MAX_CONCURRENT_STREAMS, and turns RST_STREAM,
GOAWAY and a lost connection into ``RpcError``. Outgoing bytes are gathered and written
once per loop iteration, so 32 calls started together cost one ``write``.

Not handled (see README): TLS/ALPN, reconnects, keepalive pings, name resolution, load
balancing, compression, stream-id exhaustion beyond failing the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

from .common import (
    MAX_RECEIVE_BYTES,
    TRANSPARENT_RETRIES,
    CallState,
    Headers,
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

_WINDOW = 16 * 1024 * 1024  # per-stream receive window we advertise
_CONNECTION_WINDOW = 2**31 - 1


class H2LibClient(asyncio.Protocol):
    """Unary calls over one HTTP/2 connection; make it with ``await H2LibClient.connect(...)``."""

    def __init__(self, authority: bytes) -> None:
        self._authority = authority
        self._loop = asyncio.get_running_loop()
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = H2Connection(config=config)
        self._h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: 16 * 1024,
            },
        )
        self._transport: asyncio.Transport | None = None
        self._calls: dict[int, CallState] = {}
        self._blocked: dict[int, CallState] = {}  # calls with request bytes awaiting window
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._flush_scheduled = False
        self._closed: RpcError | None = None
        self._ready: asyncio.Future[None] = self._loop.create_future()

    @classmethod
    async def connect(cls, host: str, port: int) -> H2LibClient:
        """Open the connection and wait for the server's first SETTINGS (one round trip)."""
        loop = asyncio.get_running_loop()
        authority = f"{host}:{port}".encode()
        _, client = await loop.create_connection(lambda: cls(authority), host, port)
        await client._ready
        return client

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - 65_535)
        transport.write(self._h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        self._shutdown(RpcError(StatusCode.UNAVAILABLE, f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except H2Error as error:  # h2 has queued a GOAWAY; send it and give up
            self._write_now()
            self._shutdown(RpcError(StatusCode.INTERNAL, f"HTTP/2 protocol error: {error}"))
            if self._transport is not None:
                self._transport.close()
            return
        calls = self._calls
        for event in events:
            kind = type(event)
            if kind is ev.DataReceived:
                call = calls.get(event.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    self._on_data(call, event)  # type: ignore[arg-type]
                else:  # a call we abandoned: still hand back the connection window
                    self._h2.acknowledge_received_data(
                        event.flow_controlled_length,  # type: ignore[attr-defined]
                        event.stream_id,  # type: ignore[attr-defined]
                    )
            elif kind is ev.ResponseReceived:
                call = calls.get(event.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    call.headers = event.headers  # type: ignore[attr-defined]
            elif kind is ev.TrailersReceived:
                call = calls.get(event.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    call.trailers = event.headers  # type: ignore[attr-defined]
            elif kind is ev.StreamEnded:
                call = calls.pop(event.stream_id, None)  # type: ignore[attr-defined]
                if call is not None and not call.future.done():
                    call.future.set_result(call)
            elif kind is ev.StreamReset:
                call = calls.pop(event.stream_id, None)  # type: ignore[attr-defined]
                if call is not None:
                    call.fail(reset_error(int(event.error_code)))  # type: ignore[attr-defined]
            elif kind is ev.WindowUpdated:
                self._send_blocked()
            elif kind is ev.RemoteSettingsChanged:
                if not self._ready.done():
                    self._ready.set_result(None)
                self._send_blocked()
                self._wake_waiters()
            elif kind is ev.ConnectionTerminated:
                self._on_goaway(event)  # type: ignore[arg-type]
            # SettingsAcknowledged, PingReceived (h2 queues the ack), PingAckReceived,
            # PriorityUpdated, UnknownFrameReceived: nothing to do.
        self._schedule_flush()

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
        h2conn = self._h2
        while h2conn.open_outbound_streams >= h2conn.remote_settings.max_concurrent_streams:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
            if self._closed is not None:
                raise self._closed
        headers: Headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", self._authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", encode_timeout(timeout)))
        if metadata:
            headers.extend(encode_metadata(metadata))
        stream_id = h2conn.get_next_available_stream_id()
        h2conn.send_headers(stream_id, headers)
        call = CallState(stream_id, self._loop.create_future(), 0)
        call.pending = memoryview(frame_message(request))
        self._calls[stream_id] = call
        self._send_pending(call)
        self._schedule_flush()
        if timeout is not None:
            call.timer = self._loop.call_later(timeout, self._expire, call)
        try:
            await call.future
        except asyncio.CancelledError:
            self._abandon(call, ErrorCodes.CANCEL)
            raise
        finally:
            if call.timer is not None:
                call.timer.cancel()
            self._wake_waiters()
        return finish(call)

    def close(self) -> None:
        if self._transport is not None and self._closed is None:
            self._h2.close_connection()
            self._write_now()
            self._transport.close()

    # -- internals --------------------------------------------------------------------

    def _on_data(self, call: CallState, event: ev.DataReceived) -> None:
        data = event.data
        assert data is not None
        call.chunks.append(data)
        call.received += len(data)
        self._h2.acknowledge_received_data(event.flow_controlled_length, call.stream_id)
        if call.received > MAX_RECEIVE_BYTES + 5:
            self._abandon(call, ErrorCodes.CANCEL)
            call.fail(RpcError(StatusCode.RESOURCE_EXHAUSTED, "response larger than 4 MiB"))

    def _send_pending(self, call: CallState) -> None:
        h2conn = self._h2
        pending = call.pending
        while pending is not None:
            window = min(
                h2conn.local_flow_control_window(call.stream_id), h2conn.max_outbound_frame_size
            )
            if window <= 0:
                self._blocked[call.stream_id] = call
                break
            chunk, rest = pending[:window], pending[window:]
            pending = rest if len(rest) else None
            h2conn.send_data(call.stream_id, chunk.tobytes(), end_stream=pending is None)
        call.pending = pending
        if pending is None:
            self._blocked.pop(call.stream_id, None)

    def _send_blocked(self) -> None:
        for call in list(self._blocked.values()):
            self._send_pending(call)

    def _wake_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire(self, call: CallState) -> None:
        self._abandon(call, ErrorCodes.CANCEL)
        call.fail(RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))

    def _abandon(self, call: CallState, code: ErrorCodes) -> None:
        """Reset the stream if it is still ours, so the server stops working on it."""
        transport = self._transport
        if self._calls.pop(call.stream_id, None) is None or transport is None:
            return
        if transport.is_closing():
            return
        self._blocked.pop(call.stream_id, None)
        try:
            self._h2.reset_stream(call.stream_id, code)
        except H2Error:
            return  # already closed on the wire
        self._schedule_flush()

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        """Calls above last_stream_id were never processed (UNAVAILABLE, safe to retry)."""
        last = event.last_stream_id or 0
        error = RpcError(StatusCode.UNAVAILABLE, f"GOAWAY ({event.error_code!r})")
        for stream_id in [sid for sid in self._calls if sid > last]:
            self._calls.pop(stream_id).fail(error)
        self._closed = error  # no new calls; those below ``last`` may still finish
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _shutdown(self, error: RpcError) -> None:
        if self._closed is None:
            self._closed = error
        for call in self._calls.values():
            call.fail(error)
        self._calls.clear()
        self._blocked.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_now()

    def _write_now(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
