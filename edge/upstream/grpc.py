"""gRPC upstreams: one long-lived grpc.aio channel per upstream, one invoker per method.

Channels and multicallables are made once when the app starts serving (grpc.aio objects
belong to the running event loop) and reused by every request. Each method gets an
invoker for its kind (unary, server, client or bidi streaming), chosen once, so a request
pays one dict lookup. ``grpc.aio.AioRpcError`` becomes ``UpstreamStatus`` here, at the
boundary, so nothing past this module knows grpc's exception types.

Client streams are written with ``write``/``done_writing`` from our own pump task rather
than handed to grpc as an iterator: grpc swallows an iterator's exception and reports a
bare CANCELLED, while the pump lets a bad message surface as the 400 it is. Writes wait
for HTTP/2 flow control, so a slow upstream slows the client down instead of filling a
buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from edge.call import Call, Reply
from edge.descriptors.registry import MethodInfo
from edge.errors import ConfigError, InternalError, UpstreamStatus, UpstreamUnreachable
from edge.leases import Lease, Shared
from edge.transcode.status import code_number
from edge.upstream.lean_channel import LeanChannel
from edge.upstream_settings import UpstreamSettings

Invoker = Callable[[Call], Awaitable[Reply]]
# Server-streaming methods of a ``client: lean`` upstream take the lean client too
# (``LeanChannel.stream_invoker``); False sends them through grpc.aio as before (a switch
# for comparing the two, and a way back should the lean stream path misbehave).
LEAN_SERVER_STREAMS = True
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


# request_compression as grpc.aio's channel-wide default (streams and unary calls alike).
# The channel keeps C-core's enabled algorithms (identity, deflate, gzip): C-core decodes
# only what it advertises, and grpc servers configured to compress do so whatever the
# client advertised, so advertising less would make their replies fail. accept_compression
# (what the lean client advertises) therefore cannot narrow grpc.aio's advertisement.
_COMPRESSION = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}


def open_channel(settings: UpstreamSettings) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", settings.max_send_bytes),
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.primary_user_agent", "edge"),
        ("grpc.enable_retries", 0),  # retries are the pipeline's job, under its budget
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # reconnect soon after an upstream comes back, as the lean channel does (grpc's
        # default backoff, 1 s doubling to 120 s, outlasts the outage it follows)
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 250),
    ]
    if settings.service_config is not None:
        options.append(("grpc.service_config", settings.service_config))
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    compression = _COMPRESSION.get(settings.request_compression or "")
    if not settings.tls:
        return grpc.aio.insecure_channel(settings.target, options=options, compression=compression)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file),
        private_key=_read(settings.key_file),
        certificate_chain=_read(settings.cert_file),
    )
    return grpc.aio.secure_channel(
        settings.target, credentials, options=options, compression=compression
    )


def _tls_digest(settings: UpstreamSettings) -> bytes:
    """The TLS files' bytes, hashed: a rotated certificate at the same path is a new channel."""
    digest = hashlib.blake2b(digest_size=16)
    for path in (settings.ca_file, settings.cert_file, settings.key_file):
        digest.update(b"\0" if path is None else (_read(path) or b"") + b"\1")
    return digest.digest()


async def _close_channel(channel: grpc.aio.Channel) -> None:
    await channel.close(grace=None)


async def _close_lean(channel: LeanChannel) -> None:
    await channel.close()


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((str(key), value) for key, value in metadata or ())


_UNREACHABLE_WORDS = ("failed to connect to all addresses", "connections to all backends failing")


def _status(exc: grpc.aio.AioRpcError) -> UpstreamStatus:
    details = exc.details() or ""  # an empty message stays empty: the code says it
    # C-core's own words when no address could be connected to, so nothing was sent
    # (pick_first's, and round_robin's or a channel's that had been connected before);
    # tests/e2e/test_upstream_recovery_e2e.py notices if a grpcio upgrade rewords them
    unreachable = exc.code() is grpc.StatusCode.UNAVAILABLE and details.startswith(
        _UNREACHABLE_WORDS
    )
    return (UpstreamUnreachable if unreachable else UpstreamStatus)(
        code_number(exc.code()),
        details,
        initial_metadata=_pairs(exc.initial_metadata()),
        trailing_metadata=_pairs(exc.trailing_metadata()),
    )


async def _pump(requests: AsyncIterator[Message], grpc_call: Any) -> None:
    """Write a client stream to the upstream; on any failure cancel the call and re-raise."""
    try:
        async for message in requests:
            await grpc_call.write(message)
        await grpc_call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return  # the call already ended; its status tells the story
    except BaseException:
        grpc_call.cancel()
        raise


async def _settle(pump: asyncio.Task[None]) -> None:
    """Raise the pump's own error (a bad client message) in preference to CANCELLED."""
    if not pump.done():
        pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump  # a pump that failed re-raises its error here


def _cancelled(pump: asyncio.Task[None] | None) -> BaseException:
    """What to raise when grpc reports a cancelled call with ``CancelledError``.

    grpc.aio raises CancelledError both when *our* task is cancelled and when the call was
    cancelled (by the pump after a bad client message, or by a client disconnect). Only the
    first must stay a CancelledError; the others become the error that caused them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return asyncio.CancelledError()
    if pump is not None and pump.done() and not pump.cancelled():
        failure = pump.exception()
        if failure is not None:
            return failure
    return UpstreamStatus(1, "the call was cancelled")


async def _read_stream(
    grpc_call: Any, reply: Reply, pump: asyncio.Task[None] | None
) -> AsyncIterator[Message]:
    try:
        while True:
            message = await grpc_call.read()
            if message is _EOF:
                break
            yield message
        reply.trailing_metadata = _pairs(await grpc_call.trailing_metadata())
    except grpc.aio.AioRpcError as exc:
        if pump is not None:
            await _settle(pump)
        raise _status(exc) from exc
    except asyncio.CancelledError:
        raise _cancelled(pump) from None
    finally:
        if not grpc_call.done():
            grpc_call.cancel()
        if pump is not None and not pump.done():
            pump.cancel()


def _unary_unary(rpc: Any) -> Invoker:
    async def invoke(call: Call) -> Reply:
        grpc_call = rpc(call.request, timeout=call.timeout, metadata=call.metadata)
        try:
            message = await grpc_call
            initial = await grpc_call.initial_metadata()
            trailing = await grpc_call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise _status(exc) from exc
        return Reply(message, initial_metadata=_pairs(initial), trailing_metadata=_pairs(trailing))

    return invoke


def _unary_stream(rpc: Any) -> Invoker:
    async def invoke(call: Call) -> Reply:
        grpc_call = rpc(call.request, timeout=call.timeout, metadata=call.metadata)
        reply = Reply(cancel=grpc_call.cancel)
        try:  # a silent upstream: its headers may come only with the first message
            reply.initial_metadata = _pairs(await grpc_call.initial_metadata())
        except BaseException:  # the caller went away (cancelled) meanwhile: so does the call
            grpc_call.cancel()
            raise
        reply.stream = _read_stream(grpc_call, reply, None)
        return reply

    return invoke


def _stream_unary(rpc: Any) -> Invoker:
    async def invoke(call: Call) -> Reply:
        grpc_call = rpc(timeout=call.timeout, metadata=call.metadata)
        pump = asyncio.create_task(_pump(call.request, grpc_call))
        try:
            message = await grpc_call
            initial = await grpc_call.initial_metadata()
            trailing = await grpc_call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            await _settle(pump)
            raise _status(exc) from exc
        except asyncio.CancelledError:
            grpc_call.cancel()
            error = _cancelled(pump)
            pump.cancel()
            raise error from None
        return Reply(message, initial_metadata=_pairs(initial), trailing_metadata=_pairs(trailing))

    return invoke


def _stream_stream(rpc: Any) -> Invoker:
    async def invoke(call: Call) -> Reply:
        grpc_call = rpc(timeout=call.timeout, metadata=call.metadata)
        pump = asyncio.create_task(_pump(call.request, grpc_call))

        def cancel() -> None:
            grpc_call.cancel()
            pump.cancel()

        reply = Reply(cancel=cancel)
        reply.stream = _read_stream(grpc_call, reply, pump)
        return reply

    return invoke


class GrpcTerminal:
    """The terminal step for transcoded calls: sends ``call.request`` to the upstream.

    Invokers are keyed by the method's descriptor info *object*, weakly: after a reload a
    method of the same name may have new message classes, and a request bound with the old
    classes must be sent with the old serializers. A call in flight holds its MethodInfo,
    so its invoker lives exactly as long as something can still use it, however many
    reloads happen meanwhile; then it goes with its MethodInfo.

    Channels come from a ``Lease`` (``edge.leases``), keyed by the upstream's settings and
    the bytes of its TLS files: a reload that leaves an upstream alone keeps its warm
    channel; one that moves it (or rotates its certificate) gets a new channel, and the old
    one is closed when the last generation using it has finished its calls. Without a lease
    the terminal holds its channels alone, and ``close`` closes them.
    """

    def __init__(
        self, upstreams: Mapping[str, UpstreamSettings], lease: Lease | None = None
    ) -> None:
        self._settings = dict(upstreams)
        self._own_lease = lease is None  # else the generation lets go of it (edge.state)
        self._lease = lease if lease is not None else Shared().lease()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._lean: dict[str, LeanChannel] = {}  # upstreams with client: lean
        self._invokers: dict[str, weakref.WeakKeyDictionary[MethodInfo, Invoker]] = {}

    def open(self, routes: Iterable[tuple[str, MethodInfo]]) -> None:
        """Create channels and invokers; call from inside the running loop."""
        for upstream, method in routes:
            channel = self._channels.get(upstream)
            if channel is None:
                settings = self._settings[upstream]
                channel = self._lease.take(
                    ("grpc.aio", settings, _tls_digest(settings)),
                    lambda settings=settings: open_channel(settings),  # type: ignore[misc]
                    _close_channel,
                )
                self._channels[upstream] = channel
            table = self._invokers.setdefault(upstream, weakref.WeakKeyDictionary())
            if method in table:
                continue
            serialize = method.input_type.SerializeToString
            deserialize = method.output_type.FromString
            path = method.grpc_path
            if method.client_streaming and method.server_streaming:
                invoker = _stream_stream(channel.stream_stream(path, serialize, deserialize))
            elif method.client_streaming:
                invoker = _stream_unary(channel.stream_unary(path, serialize, deserialize))
            elif method.server_streaming:
                if LEAN_SERVER_STREAMS and self._settings[upstream].client == "lean":
                    invoker = self._lean_channel(upstream).stream_invoker(method)
                else:
                    invoker = _unary_stream(channel.unary_stream(path, serialize, deserialize))
            elif self._settings[upstream].client == "lean":
                # Unary-unary (and server-streaming) calls skip grpc.aio. Client and bidi
                # streams keep it, so the grpc.aio channel stays (idle until such a stream
                # or a health check).
                invoker = self._lean_channel(upstream).invoker(method)
            else:
                invoker = _unary_unary(channel.unary_unary(path, serialize, deserialize))
            table[method] = invoker

    def _lean_channel(self, upstream: str) -> LeanChannel:
        lean = self._lean.get(upstream)
        if lean is None:
            settings = self._settings[upstream]
            lean = self._lean[upstream] = self._lease.take(
                ("lean", settings, _tls_digest(settings)),
                lambda settings=settings: LeanChannel(settings),  # type: ignore[misc]
                _close_lean,
            )
        return lean

    def channel(self, upstream: str) -> grpc.aio.Channel | None:
        return self._channels.get(upstream)

    async def close(self) -> None:
        """Close the channels; with a generation's lease, that lease lets go of them instead
        (closed unless another generation holds them)."""
        self._channels, self._lean = {}, {}
        self._invokers.clear()
        if self._own_lease:
            await self._lease.release()

    async def __call__(self, call: Call) -> Reply:
        table = self._invokers.get(call.upstream)
        invoker = table.get(call.method) if table is not None and call.method else None
        if invoker is None:
            raise InternalError(f"no upstream invoker for {call.route} at {call.upstream}")
        return await invoker(call)
