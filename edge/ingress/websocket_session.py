"""One open gRPC-over-WebSocket socket: its frames in, its call, its frames out.

The handshake (origin, subprotocol, credentials and limits) is ``websocket``'s; once the
socket is accepted a session reads the client's frames into a bounded queue, runs the
call through the pipeline, writes the reply's frames as the socket takes them, and ends
with one status frame and a close code (docs/websocket.md has the protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError, Message

from edge.call import Call
from edge.errors import (
    BadRequest,
    ClientDisconnected,
    EdgeError,
    Unauthenticated,
    UpstreamStatus,
    UpstreamUnavailable,
)
from edge.ingress.asgi import Receive, Scope, Send, close_stream, timed_send
from edge.ingress.render import status_payload
from edge.ingress.websocket_frames import (
    CLOSE_GOING_AWAY,
    CLOSE_OK,
    CLOSE_STATUS_BASE,
    EndFrame,
    MessageFrame,
    MetadataFrame,
    close_reason,
    headers_frame,
    message_frame,
    parse_text_frame,
    status_frame,
)
from edge.ingress.websocket_policy import (
    WebSocketPolicy,
)
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.pipeline.credentials import bearer_token
from edge.routes import TranscodeRoute
from edge.routing.table import RouteMatch

log = logging.getLogger("edge.websocket")

SHUTTING_DOWN = "the gateway is shutting down"
_OK_STATUS = b'{"code":0,"message":"","details":[]}'


class FrameTooBig(Exception):
    """A client frame over ``websocket.max_message_bytes``: the socket closes 1009."""


# Why a session ends while its task waits for frames (``WebSocketSession.ending``).
FIRST_FRAME_MISSED = "first frame missed"  # none by first_frame_timeout: 4003 or 4016
IDLE = "idle"  # no frames either way for idle_timeout: 1001
CALL_ENDED = "call ended"  # the call task finished, one way or another
DRAINING = "draining"  # the process is shutting down: 1001
RELOADED = "reloaded"  # a reload changed the socket's route or policy: 1012


class WebSocketSession:
    """One socket, one call."""

    # an idle socket holds its session for hours: slots, not a dict of 25 keys (~1 KiB)
    __slots__ = (
        "binary",
        "call",
        "call_task",
        "chain",
        "closed",
        "connection",
        "ending",
        "first_frame_due",
        "first_request",
        "found",
        "half_closed",
        "last_activity",
        "loop",
        "metadata",
        "next_frame",
        "pipeline",
        "policy",
        "receive",
        "requests",
        "route",
        "scope",
        "send_event",
        "serving",
        "timer",
    )

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
        # client-streaming methods only: the others take their one message in first_request
        self.requests: asyncio.Queue[Message | None] | None = None
        # what the call waits on for the next frame (a unary call given only metadata so
        # far): made when it waits; an asyncio.Event would hold a deque (~0.8 KiB) per socket
        self.next_frame: asyncio.Future[None] | None = None
        self.first_request: Message | None = None
        self.half_closed = False
        self.closed = False
        # An idle socket holds no task of ours: the serving task reads the frames itself,
        # the call task starts with the first frame, and the deadlines (first frame, idle)
        # are one loop timer. What ends the session while the serving task waits (that
        # timer, the call ending, the drain, a reload) says why in ``ending`` and cancels
        # it (``interrupt``).
        self.call_task: asyncio.Task[None] | None = None
        self.serving: asyncio.Task[None] | None = None
        self.ending: str | None = None
        self.first_frame_due = self.last_activity + policy.first_frame_timeout
        self.timer: asyncio.TimerHandle | None = None

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
                raise FrameTooBig(
                    f"a frame of {size} bytes exceeds {self.policy.max_message_bytes}"
                )
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
            self._start()
        else:
            self.half_closed = True
            self._start()
            if self.route.method.client_streaming:
                await self._queue().put(None)

    async def _accept_message(self, message: Message) -> None:
        if self.half_closed:
            raise BadRequest("message after the client half-closed")
        await self.pipeline.admit_message(self.call, self.connection)
        method = self.route.method
        if not method.client_streaming:
            if self.first_request is not None:
                raise BadRequest(f"{method.full_name} takes exactly one request message")
            self.first_request = message
            self._start()
            return
        self._start()
        await self._queue().put(message)  # waits while the queue is full: backpressure

    def _start(self) -> None:
        """A frame came: wake the call, starting it at the first (its task from now on)."""
        if self.next_frame is not None and not self.next_frame.done():
            self.next_frame.set_result(None)
        if self.call_task is None:
            self.call_task = self.loop.create_task(self.run_call(), name="call")
            self.call_task.add_done_callback(self._call_ended)

    def _queue(self) -> asyncio.Queue[Message | None]:
        if self.requests is None:  # made with the first request: an idle socket has none
            self.requests = asyncio.Queue(self.policy.queue_messages)
        return self.requests

    async def request_stream(self) -> AsyncIterator[Message]:
        requests = self._queue()
        while True:
            message = await requests.get()
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
        """Check credentials, make the call, stream the replies out; started by the first
        frame (``_start``; a socket without one by ``first_frame_timeout`` is ended by the
        timer instead).

        The credentials are checked as soon as the first frame arrives, not when the call
        starts: after it no token can come any more, so a socket that has none for a route
        that needs one is closed at once rather than held until its request message.
        """
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
                self.next_frame = self.loop.create_future()
                await self.next_frame
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

    async def going_away(self, code: int = CLOSE_GOING_AWAY, reason: str = SHUTTING_DOWN) -> None:
        """The process is draining (1001), or a reload changed this socket's route (1012):
        end the call, send UNAVAILABLE, close with ``code``."""
        if self.closed:
            return
        if self.call_task is not None and not self.call_task.done():
            self.call_task.cancel()  # cancels the upstream call; no frame of it follows ours
            with contextlib.suppress(BaseException):
                await self.call_task
        with contextlib.suppress(Exception):
            await self.send_text(status_frame(status_payload(UpstreamUnavailable(reason)), ()))
        await self.close(code, reason)

    async def first_frame_missed(self) -> None:
        """No frame came by ``first_frame_timeout``: end with the reason ``_silent_error`` gives."""
        await self.fail(await self._silent_error())

    # -- what ends the session while its task waits ------------------------------------

    def interrupt(self, why: str) -> None:
        """End the serving task's wait (``serving_until_ended``) because of ``why``.

        Only the first reason counts, and only while the task waits for frames: once it
        is ending the session, nothing may cancel its closing frames.
        """
        if self.ending is None and self.serving is not None:
            self.ending = why
            self.serving.cancel()

    def arm_timer(self) -> None:
        """(Re)arm the one timer: the first frame's deadline, then the idle deadline.

        A frame does not touch the timer (it only updates ``last_activity``); when the
        timer fires early it is armed again for what is then due, so a busy socket costs
        one timer callback per ``idle_timeout``, not one per frame.
        """
        due = self.first_frame_due if self.call_task is None else None
        idle = self.policy.idle_timeout
        if idle is not None:
            idle_due = self.last_activity + idle
            due = idle_due if due is None else min(due, idle_due)
        self.timer = None if due is None else self.loop.call_at(due, self._timer_fired)

    def disarm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timer_fired(self) -> None:
        now = self.loop.time()
        idle = self.policy.idle_timeout
        if self.call_task is None and now >= self.first_frame_due:
            self.interrupt(FIRST_FRAME_MISSED)
        elif idle is not None and now >= self.last_activity + idle:
            self.interrupt(IDLE)
        else:
            self.arm_timer()

    def _call_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            # read here: when the session was already ending for another reason (the client
            # left, a timeout) nothing else asks, and asyncio would log the call's failure
            # as "Task exception was never retrieved"; _call_outcome reads it again when
            # the call's end is the session's reason
            task.exception()
        self.interrupt(CALL_ENDED)

    def drained(self) -> None:
        self.interrupt(DRAINING)

    def reload_due(self) -> None:
        self.interrupt(RELOADED)
