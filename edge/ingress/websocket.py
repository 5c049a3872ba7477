"""gRPC over WebSocket: one socket per call, all four RPC kinds (protocol ``edge.grpc-ws.v1``).

The wire protocol is documented in docs/websocket.md and parsed in ``websocket_frames``.
In short: the client's first frame starts the call (optionally a ``{"metadata": {...}}``
frame, since browsers cannot set headers); ``{"message": ...}`` frames (or binary protobuf
frames) carry request messages; ``{"end": true}`` half-closes the client stream while the socket
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
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import DecodeError, Message

from edge.call import Call
from edge.errors import (
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    EdgeError,
    InternalError,
    PermissionDenied,
    Unauthenticated,
    UpstreamStatus,
    UpstreamUnavailable,
)
from edge.ingress.asgi import Receive, Scope, Send, close_stream, timed_send
from edge.ingress.render import refuse_handshake, status_payload
from edge.ingress.websocket_frames import (
    BINARY_SUBPROTOCOL,
    CLOSE_GOING_AWAY,
    CLOSE_OK,
    CLOSE_STATUS_BASE,
    CLOSE_TOO_BIG,
    SUBPROTOCOL,
    EndFrame,
    MessageFrame,
    MetadataFrame,
    choose_subprotocol,
    close_reason,
    headers_frame,
    message_frame,
    parse_text_frame,
    status_frame,
)
from edge.ingress.websocket_policy import (
    WebSocketPolicy,
    origin_allowed,
    shutdown_signal,
    socket_token,
)
from edge.observability import metrics
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.pipeline.credentials import bearer_token
from edge.routes import TranscodeRoute
from edge.routing.table import RouteMatch
from edge.state import GatewayState, StateHolder

log = logging.getLogger("edge.websocket")

CLOSE_HANDSHAKE_SECONDS = 2.0  # how long we wait for the client's Close after ours
SHUTTING_DOWN = "the gateway is shutting down"
_OK_STATUS = b'{"code":0,"message":"","details":[]}'


class WebSocketAdapter:
    """Serves WebSocket handshakes on the bridge's routes (``websocket_prefix``)."""

    scope_types = frozenset({"websocket"})

    def __init__(self, holder: StateHolder) -> None:
        self.holder = holder

    def claim(self, scope: Scope, path: str) -> RouteMatch[TranscodeRoute] | None:
        found = self.holder.current.routes.ws_table.match("GET", path)
        return found if type(found) is RouteMatch else None

    def route_name(self, found: RouteMatch[TranscodeRoute]) -> str | None:
        return found.target.method.full_name

    def preflight_route(self, scope: Scope, path: str, method: str) -> str | None:
        return None  # a handshake is never preflighted

    async def serve(
        self, found: RouteMatch[TranscodeRoute], scope: Scope, receive: Receive, send: Send
    ) -> None:
        info = scope.get("edge")
        if info is not None:  # metrics and access logs name the method, as for HTTP
            info["route"] = found.target.method.full_name
        await serve_websocket(self.holder.current, found, scope, receive, send)


class _TooBig(Exception):
    pass


class _Idle(Exception):
    pass


class WebSocketSession:
    """One socket, one call."""

    def __init__(
        self,
        found: RouteMatch[TranscodeRoute],
        scope: Scope,
        receive: Receive,
        send: Send,
        chain: Next,
        policy: WebSocketPolicy,
        binary: bool,
        call: Call,
        pipeline: Pipeline,
    ) -> None:
        self.route = found.target
        self.found = found
        self.scope = scope
        self.receive = receive
        # a client that stops reading: a frame stalled send_timeout s ends the session
        self.send_event = timed_send(send, policy.send_timeout, scope)
        self.chain = chain
        self.policy = policy
        self.binary = binary
        self.call = call  # made at the handshake; the first frame completes it
        self.pipeline = pipeline
        self.connection = uuid.uuid4().hex  # keys per-connection message limits
        self.metadata: list[tuple[str, str]] = []  # from the first frame
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.requests: asyncio.Queue[Message | None] = asyncio.Queue(policy.queue_messages)
        self.started = asyncio.Event()
        self.first_request: Message | None = None
        self.half_closed = False
        self.closed = False
        self.call_task: asyncio.Task[None] | None = None

    # -- frames in ----------------------------------------------------------------------

    def _token_refusal(self) -> str | None:
        """Why a token in the first frame is refused, or None when it may come there."""
        if self.call.token is not None:
            # the handshake already carried a (checked) token: never a second one
            return "the token was already given at the handshake"
        if self.pipeline.checks_credentials and not self.policy.first_frame_auth:
            # unchecked, it must not reach the upstream either
            return "a token goes on the handshake, not in the first frame"
        return None

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
                refusal = self._token_refusal() if first else None
                frame = parse_text_frame(text or "", first=first, token_refusal=refusal)
                await self._accept_frame(frame)
            first = False

    def _decode_binary(self, data: bytes) -> Message:
        message = self.route.method.input_type()
        try:
            message.ParseFromString(data)
        except DecodeError as exc:
            raise BadRequest(f"binary frame is not a valid {message.DESCRIPTOR.full_name}") from exc
        return message

    async def _accept_frame(self, frame: MetadataFrame | MessageFrame | EndFrame) -> None:
        if type(frame) is MessageFrame:
            message = self.route.binder.bind(self.found.bindings, "", frame.body)
            await self._accept_message(message)
        elif type(frame) is MetadataFrame:
            self.metadata.extend(frame.pairs)
            self.started.set()
        else:
            self.half_closed = True
            self.started.set()
            await self.requests.put(None)

    async def _accept_message(self, message: Message) -> None:
        if self.half_closed:
            raise BadRequest("message after the client half-closed")
        await self.pipeline.admit_message(self.call, self.connection)
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

    async def send_text(self, frame: bytes | str) -> None:
        text = frame if isinstance(frame, str) else frame.decode()
        await self.send_event({"type": "websocket.send", "text": text})
        self.last_activity = self.loop.time()

    async def send_message(self, message: Message) -> None:
        if self.binary:
            await self.send_event({"type": "websocket.send", "bytes": message.SerializeToString()})
            self.last_activity = self.loop.time()
        else:
            await self.send_text(message_frame(self.route.renderer.render(message)))

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.send_event(
                    {"type": "websocket.close", "code": code, "reason": close_reason(reason)}
                )

    # -- the call -----------------------------------------------------------------------

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
            await self.pipeline.authenticate(call, again=True)  # strips forged claim headers
        else:
            await self.pipeline.authenticate(call)  # the chain's auth layer sees it done
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
                await self.send_text(headers_frame(reply.initial_metadata))
            if reply.stream is not None:
                async for message in reply.stream:
                    await self.send_message(message)
            else:
                assert reply.message is not None
                await self.send_message(reply.message)
        finally:
            if reply.stream is not None:
                await close_stream(reply.stream)
        await self.send_text(status_frame(_OK_STATUS, reply.trailing_metadata))
        await self.close(CLOSE_OK)

    async def _silent_error(self) -> EdgeError:
        """Why a socket without a first frame by ``first_frame_timeout`` is closed.

        UNAUTHENTICATED when its route needs credentials the handshake did not bring (only
        possible with ``first_frame_auth``), else INVALID_ARGUMENT.
        """
        timeout = self.policy.first_frame_timeout
        try:
            await self.pipeline.authenticate(self.call)
        except Unauthenticated:
            return Unauthenticated(f"no token arrived within {timeout:g}s")
        return BadRequest(f"no frame arrived within {timeout:g}s to start the call")

    async def fail(self, error: EdgeError) -> None:
        """End the call with ``error``: its status frame, then ``4000 + code``."""
        trailers = error.trailing_metadata if isinstance(error, UpstreamStatus) else ()
        frame = status_frame(status_payload(error, self.route.codec), trailers)
        with contextlib.suppress(Exception):
            await self.send_text(frame)
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
            await self.send_text(
                status_frame(status_payload(UpstreamUnavailable(SHUTTING_DOWN)), ())
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


async def serve_websocket(
    state: GatewayState,
    found: RouteMatch[TranscodeRoute],
    scope: Scope,
    receive: Receive,
    send: Send,
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
    policy = state.websocket
    shutdown = shutdown_signal(scope)
    try:
        if shutdown is not None and shutdown.is_set():
            raise UpstreamUnavailable(SHUTTING_DOWN)
        if not origin_allowed(scope["headers"], policy):
            raise PermissionDenied("origin not allowed")
        offered = [p.strip() for p in scope.get("subprotocols", [])]
        chosen = choose_subprotocol(offered)
        if chosen is None:
            raise BadRequest(
                f"offer the WebSocket subprotocol {SUBPROTOCOL} (or {BINARY_SUBPROTOCOL})"
            )
        route = found.target
        call = state.calls.socket(
            scope,
            upstream=route.upstream,
            method=route.method,
            timeout=route.timeout,
            token=socket_token(scope, policy, offered),
        )
        await state.pipeline.admit(call, credentials_may_follow=policy.first_frame_auth)
    except EdgeError as error:
        await refuse_handshake(scope, send, error)
        return
    subprotocol, binary = chosen
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    session = WebSocketSession(
        found, scope, receive, send, state.chain, policy, binary, call, state.pipeline
    )
    session.call_task = asyncio.create_task(session.run_call(), name="call")
    tasks: set[asyncio.Task[Any]] = {
        session.call_task,
        asyncio.create_task(session.read_frames(), name="reader"),
        asyncio.create_task(session.watch_idle(), name="idle"),
    }
    if shutdown is not None:
        tasks.add(asyncio.create_task(shutdown.wait(), name="shutdown"))
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


async def _settle(done: set[asyncio.Task[Any]], session: WebSocketSession) -> str:
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
                await session.send_text(status_frame(status_payload(BodyTooLarge(str(error)))))
            await session.close(CLOSE_TOO_BIG, str(error))
            return "finished"
        if isinstance(error, _Idle):
            await session.close(CLOSE_GOING_AWAY, f"idle timeout: {error}")
            return "finished"
        if isinstance(error, EdgeError):
            await session.fail(error)
            return "finished"
        log.error("unhandled error on WebSocket %s", session.scope["path"], exc_info=error)
        await session.fail(InternalError("internal error"))
        return "finished"
    return "continue"
