"""gRPC over WebSocket: one socket per call, all four RPC kinds (protocol ``edge.grpc-ws.v1``).

The wire protocol is documented in the README ("WebSocket protocol"). In short: the
client's first frame starts the call (optionally a ``{"metadata": {...}}`` frame, since
browsers cannot set headers); ``{"message": ...}`` frames (or binary protobuf frames)
carry request messages; ``{"end": true}`` half-closes the client stream while the socket
stays open for the replies; the server sends ``{"headers": ...}``, ``{"message": ...}``
frames and one final ``{"status": ..., "trailers": ...}`` frame, then closes with 1000 on
OK or ``4000 + gRPC code`` otherwise.

Flow control is bounded in both directions: client messages wait in a small queue (when
it is full we stop reading the socket, and TCP pushes back on the browser), and server
messages are read from the upstream only as fast as the socket takes them (so HTTP/2 flow
control pushes back on the upstream). Closing the socket cancels the upstream call.

Shutdown: ``edge serve`` puts an ``asyncio.Event`` in the ASGI lifespan state under
``SHUTDOWN_STATE_KEY`` and sets it when the process starts draining. A session open at
that moment has its call cancelled (upstream too) and gets a final UNAVAILABLE status
frame and a 1001 ("going away") close, so its client reconnects to another instance at
once instead of seeing the connection dropped when the drain ends; a handshake that
arrives while draining is refused with 503. A socket has no natural end the server could
wait for, which is why it is told at once rather than given the drain window.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from google.protobuf.message import DecodeError, Message

from edge.call import Call
from edge.errors import BadRequest, ClientDisconnected, EdgeError, Unauthenticated, UpstreamStatus
from edge.ingress.asgi import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    close_stream,
    refuse_handshake,
    timed_send,
)
from edge.ingress.websocket_policy import (
    WebSocketPolicy,
    origin_allowed,
    shutdown_signal,
    socket_token,
)
from edge.observability import metrics
from edge.pipeline.auth import AuthLayer
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.pipeline.credentials import bearer_token
from edge.routes import TranscodeRoute
from edge.routing.table import RouteMatch
from edge.transcode.response import decode_details, status_body
from edge.upstream.headers import HeaderPolicy, Metadata, request_metadata

log = logging.getLogger("edge.websocket")

SUBPROTOCOL = "edge.grpc-ws.v1"
BINARY_SUBPROTOCOL = "edge.grpc-ws.v1.binary"
CLOSE_OK = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_STATUS_BASE = 4000  # 4000 + gRPC status code
CLOSE_HANDSHAKE_SECONDS = 2.0  # how long we wait for the client's Close after ours
SHUTTING_DOWN = "the gateway is shutting down"

_RESERVED_METADATA = frozenset(
    {
        "connection",
        "te",
        "upgrade",
        "host",
        "content-type",
        "content-length",
        "user-agent",
        # set by the gateway from the handshake: a page must not forge them
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "forwarded",
    }
)


def _close_reason(message: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    encoded = message.encode()[:123]
    return encoded.decode(errors="ignore")


class _Closed(Exception):
    """The socket is gone (client closed it, or we did)."""


class WebSocketSession:
    """One socket, one call."""

    def __init__(
        self,
        route: TranscodeRoute,
        found: RouteMatch[TranscodeRoute],
        scope: Scope,
        receive: Receive,
        send: Send,
        chain: Next,
        header_policy: HeaderPolicy,
        policy: WebSocketPolicy,
        binary: bool,
        call: Call,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.route = route
        self.found = found
        self.scope = scope
        self.receive = receive
        # a client that stops reading: a frame stalled send_timeout s ends the session
        self.send_event = timed_send(send, policy.send_timeout, scope)
        self.chain = chain
        self.header_policy = header_policy
        self.policy = policy
        self.binary = binary
        self.call = call  # made at the handshake; the first frame completes it
        self.pipeline = pipeline
        self.connection = uuid.uuid4().hex  # keys per-connection message limits
        self.metadata: Metadata = []  # from the first frame
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.requests: asyncio.Queue[Message | None] = asyncio.Queue(policy.queue_messages)
        self.started = asyncio.Event()
        self.first_request: Message | None = None
        self.half_closed = False
        self.closed = False
        self.call_task: asyncio.Task[None] | None = None

    # -- frames in ----------------------------------------------------------------------

    async def read_frames(self) -> None:
        """Read client frames until the socket closes; raises the reason the call must end."""
        first = True
        while True:
            event = await self.receive()
            if event["type"] == "websocket.disconnect":
                raise ClientDisconnected("the client closed the socket")
            if event["type"] != "websocket.receive" or self.closed:
                continue  # after our Close, frames in flight are read and dropped
            self.last_activity = self.loop.time()
            data: bytes | None = event.get("bytes")
            text: str | None = event.get("text")
            size = len(data) if data is not None else len(text.encode()) if text else 0
            if size > self.policy.max_message_bytes:
                raise _TooBig(f"a frame of {size} bytes exceeds {self.policy.max_message_bytes}")
            if data is not None:
                await self._accept_message(self._decode_binary(data))
            else:
                await self._accept_envelope(text or "", first=first)
            first = False

    def _decode_binary(self, data: bytes) -> Message:
        message = self.route.method.input_type()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise BadRequest(f"binary frame is not a valid {message.DESCRIPTOR.full_name}") from exc
        return message

    async def _accept_envelope(self, text: str, *, first: bool) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"malformed JSON frame: {exc}") from exc
        if not isinstance(frame, dict) or len(frame) != 1:
            raise BadRequest('a frame is one of {"metadata": ...}, {"message": ...}, {"end": true}')
        ((kind, value),) = frame.items()
        if kind == "metadata":
            if not first:
                raise BadRequest("metadata may only come in the first frame")
            self._add_metadata(value)
            self.started.set()
        elif kind == "message":
            body = orjson.dumps(value)
            await self._accept_message(self.route.binder.bind(self.found.bindings, "", body))
        elif kind == "end":
            if value is not True:
                raise BadRequest('the half-close frame is {"end": true}')
            self.half_closed = True
            self.started.set()
            await self.requests.put(None)
        else:
            raise BadRequest(f"unknown frame kind {kind!r}")

    def _add_metadata(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise BadRequest("metadata must be an object of string values")
        for key, item in value.items():
            name = str(key).lower()
            if not isinstance(item, str):
                raise BadRequest(f"metadata value for {name!r} must be a string")
            if name in _RESERVED_METADATA or name.startswith(("grpc-", ":")):
                raise BadRequest(f"metadata key {name!r} is reserved")
            if name.endswith("-bin"):
                raise BadRequest("binary (-bin) metadata is not accepted over WebSocket")
            if name == "authorization" and self.call.token is not None:
                # the handshake already carried a (checked) token: never a second one
                raise BadRequest("the token was already given at the handshake")
            if (
                name == "authorization"
                and self._auth is not None
                and not self.policy.first_frame_auth
            ):
                # unchecked, it must not reach the upstream either
                raise BadRequest("a token goes on the handshake, not in the first frame")
            self.metadata.append((name, item))

    async def _accept_message(self, message: Message) -> None:
        if self.half_closed:
            raise BadRequest("message after the client half-closed")
        limiter = self.pipeline.ratelimit if self.pipeline is not None else None
        if limiter is not None:
            await limiter.check_message(self.call, self.connection)
        method = self.route.method
        if not method.client_streaming:
            if self.first_request is not None:
                raise BadRequest(f"{method.full_name} takes exactly one request message")
            self.first_request = message
            self.started.set()
            return
        self.started.set()
        await self.requests.put(message)  # waits while the queue is full: backpressure

    async def request_stream(self) -> AsyncIterator[Message]:
        while True:
            message = await self.requests.get()
            if message is None:
                return
            yield message

    # -- frames out ---------------------------------------------------------------------

    async def send_json(self, frame: dict[str, Any] | bytes) -> None:
        text = frame if isinstance(frame, bytes) else orjson.dumps(frame)
        await self.send_event({"type": "websocket.send", "text": text.decode()})
        self.last_activity = self.loop.time()

    async def send_message(self, message: Message) -> None:
        if self.binary:
            await self.send_event({"type": "websocket.send", "bytes": message.SerializeToString()})
        else:
            payload = self.route.renderer.render(message)
            await self.send_event(
                {"type": "websocket.send", "text": '{"message":' + payload.decode() + "}"}
            )
        self.last_activity = self.loop.time()

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.send_event(
                    {"type": "websocket.close", "code": code, "reason": _close_reason(reason)}
                )

    # -- the call -----------------------------------------------------------------------

    @property
    def _auth(self) -> AuthLayer | None:
        return self.pipeline.auth if self.pipeline is not None else None

    async def run_call(self) -> None:
        """Wait for the first frame, check credentials, make the call, stream the replies out.

        The credentials are checked as soon as the first frame arrives, not when the call
        starts: after it no token can come any more, so a socket that has none for a route
        that needs one is closed at once rather than held until its request message.
        """
        try:
            await asyncio.wait_for(self.started.wait(), self.policy.first_frame_timeout)
        except TimeoutError:
            raise await self._silent_error() from None
        call = self.call
        if self.metadata:
            in_band = dict(self.metadata)
            authorization = in_band.get("authorization")
            if call.token is None and isinstance(authorization, str):
                call.token = bearer_token([(b"authorization", authorization.encode())])
            call.metadata = [*call.metadata, *self.metadata]
            call.state.pop("auth.done", None)  # check again, stripping forged claim headers
        if self._auth is not None:
            await self._auth.authenticate(call)  # the chain's auth layer sees it done
        method = self.route.method
        if not method.client_streaming:
            while self.first_request is None:
                if self.half_closed:
                    raise BadRequest(f"{method.full_name} needs a request message before the end")
                self.started.clear()
                await self.started.wait()
        call.request = self.request_stream() if method.client_streaming else self.first_request
        reply = await self.chain(call)
        try:
            if reply.initial_metadata:
                await self.send_json({"headers": _metadata_json(reply.initial_metadata)})
            if reply.stream is not None:
                async for message in reply.stream:
                    await self.send_message(message)
            else:
                assert reply.message is not None
                await self.send_message(reply.message)
        finally:
            if reply.stream is not None:
                await close_stream(reply.stream)
        await self.send_json(
            {
                "status": {"code": 0, "message": "", "details": []},
                "trailers": _metadata_json(reply.trailing_metadata),
            }
        )
        await self.close(CLOSE_OK)

    async def _silent_error(self) -> EdgeError:
        """Why a socket without a first frame by ``first_frame_timeout`` is closed.

        UNAUTHENTICATED when its route needs credentials the handshake did not bring (only
        possible with ``first_frame_auth``), else INVALID_ARGUMENT.
        """
        timeout = self.policy.first_frame_timeout
        if self._auth is not None and "auth.done" not in self.call.state:
            try:
                await self._auth.authenticate(self.call)
            except Unauthenticated:
                return Unauthenticated(f"no token arrived within {timeout:g}s")
        return BadRequest(f"no frame arrived within {timeout:g}s to start the call")

    async def fail(self, error: EdgeError) -> None:
        details = error.details
        trailers: dict[str, str] = {}
        if isinstance(error, UpstreamStatus):
            raw = error.status_details_bin()
            if raw is not None:
                details = decode_details(raw, self.route.codec)
            trailers = _metadata_json(error.trailing_metadata)
        body = status_body(error.grpc_code, error.message, details)
        with contextlib.suppress(Exception):
            await self.send_json(
                b'{"status":' + body + b',"trailers":' + orjson.dumps(trailers) + b"}"
            )
        await self.close(CLOSE_STATUS_BASE + error.grpc_code, error.message)

    async def going_away(self) -> None:
        """The process is draining: end the call, send UNAVAILABLE, close with 1001."""
        if self.closed:
            return
        if self.call_task is not None and not self.call_task.done():
            self.call_task.cancel()  # cancels the upstream call; no frame of it follows ours
            with contextlib.suppress(BaseException):
                await self.call_task
        with contextlib.suppress(Exception):
            await self.send_json(
                {"status": {"code": 14, "message": SHUTTING_DOWN, "details": []}, "trailers": {}}
            )
        await self.close(CLOSE_GOING_AWAY, SHUTTING_DOWN)

    async def watch_idle(self) -> None:
        timeout = self.policy.idle_timeout
        if timeout is None:
            return
        while True:
            remaining = self.last_activity + timeout - self.loop.time()
            if remaining <= 0:
                raise _Idle(f"no frames for {timeout:g}s")
            await asyncio.sleep(remaining)


class _TooBig(Exception):
    pass


class _Idle(Exception):
    pass


def _metadata_json(pairs: Sequence[tuple[str, str | bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("grpc-") or key.startswith(":"):
            continue
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


async def serve_websocket(
    route: TranscodeRoute,
    found: RouteMatch[TranscodeRoute],
    scope: Scope,
    receive: Receive,
    send: Send,
    chain: Next,
    header_policy: HeaderPolicy,
    policy: WebSocketPolicy,
    pipeline: Pipeline | None = None,
) -> None:
    """Handshake, then run one call over the socket until it ends one way or another.

    Credentials and limits that can be checked at the handshake are checked there, so a
    refused socket is a refused handshake (401, 403, 429) rather than an opened socket
    closed at once. A route that needs credentials refuses a handshake without them (401),
    unless ``websocket.first_frame_auth`` lets the token come in the first frame: then it
    is checked when that frame arrives, and a socket that sends none within
    ``first_frame_timeout`` is closed UNAUTHENTICATED.
    """
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    shutdown = shutdown_signal(scope)
    if shutdown is not None and shutdown.is_set():
        await _refuse(scope, send, 503, 14, SHUTTING_DOWN)
        return
    headers = scope["headers"]
    if not origin_allowed(headers, policy):
        await _refuse(scope, send, 403, 7, "origin not allowed")
        return
    offered = [p.strip() for p in scope.get("subprotocols", [])]
    if BINARY_SUBPROTOCOL in offered:
        chosen, binary = BINARY_SUBPROTOCOL, True
    elif SUBPROTOCOL in offered:
        chosen, binary = SUBPROTOCOL, False
    else:
        await _refuse(
            scope,
            send,
            400,
            3,
            f"offer the WebSocket subprotocol {SUBPROTOCOL} (or {BINARY_SUBPROTOCOL})",
        )
        return
    client = scope.get("client")
    address = client[0] if client else None
    try:
        metadata = request_metadata(headers, header_policy, address)
    except EdgeError as error:  # a malformed Grpc-Metadata-*-bin header
        await _refuse(scope, send, error.status, error.grpc_code, error.message)
        return
    token = socket_token(scope, policy, offered)
    if token:  # a token given in the socket's own forms wins over an Authorization header
        metadata = [(k, v) for k, v in metadata if k != "authorization"]
        metadata.append(("authorization", f"Bearer {token}"))
    else:
        token = bearer_token(headers)
    call = Call(
        upstream=route.upstream,
        route=route.method.full_name,
        metadata=metadata,
        timeout=route.timeout,
        method=route.method,
        protocol="websocket",
        client=address,
        headers=headers,
        query=scope["query_string"],
        token=token,
    )
    if pipeline is not None:
        try:
            if pipeline.auth is not None and not policy.first_frame_auth:
                await pipeline.auth.authenticate(call)  # no token can come later
            await pipeline.precheck(call)
        except EdgeError as error:
            await _refuse(scope, send, error.status, error.grpc_code, error.message, error.headers)
            return
    await send({"type": "websocket.accept", "subprotocol": chosen})
    session = WebSocketSession(
        route, found, scope, receive, send, chain, header_policy, policy, binary, call, pipeline
    )
    session.call_task = asyncio.create_task(session.run_call(), name="call")
    tasks = {
        session.call_task,
        asyncio.create_task(session.read_frames(), name="reader"),
        asyncio.create_task(session.watch_idle(), name="idle"),
    }
    if shutdown is not None:
        tasks.add(asyncio.create_task(_wait_for(shutdown), name="shutdown"))
    reader = next(task for task in tasks if task.get_name() == "reader")
    metrics.WEBSOCKETS.inc()
    try:
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            outcome = await _settle(done, session)
            if outcome == "finished":
                break
        if reader in tasks and session.closed:
            # Wait for the client's own Close before returning: if we returned at once the
            # server would shut the TCP connection with the client's frames still unread,
            # the kernel would answer with a reset, and the browser would lose our close
            # frame and report 1006 instead of the status.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(reader, CLOSE_HANDSHAKE_SECONDS)
    finally:
        metrics.WEBSOCKETS.dec()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _wait_for(event: asyncio.Event) -> None:
    await event.wait()


async def _settle(done: set[asyncio.Task[None]], session: WebSocketSession) -> str:
    """React to finished tasks; "finished" when the session is over."""
    outcomes = [(task, None if task.cancelled() else task.exception()) for task in done]
    for task, error in outcomes:
        if task.cancelled():
            continue
        if error is None:
            if task.get_name() == "call":
                return "finished"
            if task.get_name() == "shutdown":
                await session.going_away()
                return "finished"
            continue  # the reader and idle watcher only end by raising
        if isinstance(error, ClientDisconnected):
            session.closed = True
            return "finished"
        if isinstance(error, _TooBig):
            with contextlib.suppress(Exception):
                await session.send_json(
                    {"status": {"code": 8, "message": str(error), "details": []}}
                )
            await session.close(CLOSE_TOO_BIG, str(error))
            return "finished"
        if isinstance(error, _Idle):
            await session.close(CLOSE_GOING_AWAY, f"idle timeout: {error}")
            return "finished"
        if isinstance(error, EdgeError):
            await session.fail(error)
            return "finished"
        log.error("unhandled error on WebSocket %s", session.scope["path"], exc_info=error)
        await session.fail(EdgeError("internal error"))
        return "finished"
    return "continue"


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    code: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Refuse the handshake with an HTTP status and a Status body where the server can."""
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await refuse_handshake(scope, send, status, status_body(code, message), [*JSON_HEADERS, *extra])
