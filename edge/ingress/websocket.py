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
from typing import Any

from edge.errors import (
    BadRequest,
    BodyTooLarge,
    ClientDisconnected,
    EdgeError,
    InternalError,
    PermissionDenied,
    UpstreamUnavailable,
)
from edge.ingress.asgi import Receive, Scope, Send
from edge.ingress.render import refuse_handshake, status_payload
from edge.ingress.websocket_frames import (
    BINARY_SUBPROTOCOL,
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    SUBPROTOCOL,
    choose_subprotocol,
    status_frame,
)
from edge.ingress.websocket_policy import (
    origin_allowed,
    shutdown_signal,
    socket_token,
)
from edge.ingress.websocket_reload import RECONNECT, reconnect_due
from edge.ingress.websocket_session import (
    SHUTTING_DOWN,
    FrameTooBig,
    IdleTimeout,
    WebSocketSession,
)
from edge.observability import metrics
from edge.routes import TranscodeRoute
from edge.routing.table import RouteMatch
from edge.state import GatewayState, StateHolder

log = logging.getLogger("edge.websocket")

CLOSE_HANDSHAKE_SECONDS = 2.0  # how long we wait for the client's Close after ours


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
    if policy.reconnect_on_reload != "never":
        tasks.add(asyncio.create_task(reconnect_due(state, found, scope), name="reload"))
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
            if task.get_name() == "reload":
                await session.going_away(CLOSE_SERVICE_RESTART, RECONNECT)
                return "finished"
            continue  # the reader and idle watcher only end by raising
        if isinstance(error, ClientDisconnected):
            session.closed = True
            return "finished"
        if isinstance(error, FrameTooBig):
            with contextlib.suppress(Exception):
                await session.send_text(status_frame(status_payload(BodyTooLarge(str(error)))))
            await session.close(CLOSE_TOO_BIG, str(error))
            return "finished"
        if isinstance(error, IdleTimeout):
            await session.close(CLOSE_GOING_AWAY, f"idle timeout: {error}")
            return "finished"
        if isinstance(error, EdgeError):
            await session.fail(error)
            return "finished"
        log.error("unhandled error on WebSocket %s", session.scope["path"], exc_info=error)
        await session.fail(InternalError("internal error"))
        return "finished"
    return "continue"
