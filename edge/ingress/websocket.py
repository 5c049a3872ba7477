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
from collections.abc import Coroutine
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
    forget,
    origin_allowed,
    shutdown_signal,
    socket_token,
    when_set,
)
from edge.ingress.websocket_reload import RECONNECT, ReloadWatch
from edge.ingress.websocket_session import (
    CALL_ENDED,
    DRAINING,
    FIRST_FRAME_MISSED,
    IDLE,
    RELOADED,
    SHUTTING_DOWN,
    FrameTooBig,
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

    def serve(
        self, found: RouteMatch[TranscodeRoute], scope: Scope, receive: Receive, send: Send
    ) -> Coroutine[Any, Any, None]:
        # not a coroutine itself: a socket's task holds one frame less (~0.4 KiB) for hours
        info = scope.get("edge")
        if info is not None:  # metrics and access logs name the method, as for HTTP
            info["route"] = found.target.method.full_name
        return serve_websocket(self.holder.current, found, scope, receive, send)


async def serve_websocket(
    state: GatewayState,
    found: RouteMatch[TranscodeRoute],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Handshake, then run the session in this (Hypercorn's) task until it ends, then see
    it closed.

    This task reads the client's frames itself; the call gets a task of its own only once
    the first frame starts it, and the rest (first-frame and idle deadlines, the drain, a
    reload) are a timer and callbacks that interrupt the read (``session.interrupt``), so
    an idle socket holds no task of ours, and this one frame (the handshake's is gone by
    then: each frame an idle socket holds costs it for hours).
    """
    opened = await _handshake(state, found, scope, receive, send)
    if opened is None:
        return
    session, shutdown = opened
    reload = (
        ReloadWatch(state, found, session.scope, session.reload_due)
        if state.websocket.reconnect_on_reload != "never"
        else None
    )
    if shutdown is not None:
        when_set(shutdown, session.drained)
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    ended: BaseException | str | None
    metrics.WEBSOCKETS.inc()
    try:
        # Read frames until something ends the session: the reader's error, or the reason
        # an interrupt gave (``session.ending``); None when the call just finished.
        session.serving = task
        session.arm_timer()
        try:
            await session.read_frames()  # returns only by raising
            raise AssertionError("read_frames returned")  # pragma: no cover
        except asyncio.CancelledError:
            session.serving = None
            why = session.ending
            if why is None or task.uncancel() > cancelling:
                raise  # cancelled from outside (the drain's deadline): not ours to swallow
            ended = _call_outcome(session) if why == CALL_ENDED else why
        except Exception as error:
            ended = error
        finally:
            session.serving = None
        if ended is not None:
            await _settle(ended, session)
        if session.closed and not isinstance(ended, ClientDisconnected):
            # Wait for the client's own Close before returning: if we returned at once the
            # server would shut the TCP connection with the client's frames still unread,
            # the kernel would answer with a reset, and the browser would lose our close
            # frame and report 1006 instead of the status.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_HANDSHAKE_SECONDS):
                    await session.read_frames()  # drops frames until the client's Close
    finally:
        metrics.WEBSOCKETS.dec()
        session.disarm_timer()
        if shutdown is not None:
            forget(shutdown, session.drained)
        if reload is not None:
            reload.stop()
        call_task = session.call_task
        if call_task is not None and not call_task.done():
            call_task.cancel()
            with contextlib.suppress(BaseException):
                await call_task


async def _handshake(
    state: GatewayState,
    found: RouteMatch[TranscodeRoute],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> tuple[WebSocketSession, asyncio.Event | None] | None:
    """Accept the socket, with its session and the drain's signal; None if refused.

    Credentials and limits that can be checked at the handshake are checked there, so a
    refused socket is a refused handshake (401, 403, 429) rather than an opened socket
    closed at once. A route that needs credentials refuses a handshake without them (401),
    unless ``websocket.first_frame_auth`` lets the token come in the first frame: then it
    is checked when that frame arrives, and a socket that sends none within
    ``first_frame_timeout`` is closed UNAUTHENTICATED.
    """
    event = await receive()
    if event["type"] != "websocket.connect":
        return None
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
        return None
    subprotocol, binary = chosen
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    session = WebSocketSession(
        found, scope, receive, send, state.chain, policy, binary, call, state.pipeline
    )
    return session, shutdown


def _call_outcome(session: WebSocketSession) -> BaseException | None:
    """How the call task ended: None when it finished (its status frame is sent)."""
    call_task = session.call_task
    assert call_task is not None and call_task.done()
    return None if call_task.cancelled() else call_task.exception()


async def _settle(ended: BaseException | str, session: WebSocketSession) -> None:
    """End the session for the reason ``ended``: the frames and close code it calls for."""
    if isinstance(ended, str):
        if ended == DRAINING:
            await session.going_away()
        elif ended == RELOADED:
            await session.going_away(CLOSE_SERVICE_RESTART, RECONNECT)
        elif ended == IDLE:
            timeout = session.policy.idle_timeout
            await session.close(CLOSE_GOING_AWAY, f"idle timeout: no frames for {timeout:g}s")
        else:
            assert ended == FIRST_FRAME_MISSED, ended
            await session.first_frame_missed()
    elif isinstance(ended, ClientDisconnected):
        session.closed = True
    elif isinstance(ended, FrameTooBig):
        with contextlib.suppress(Exception):
            await session.send_text(status_frame(status_payload(BodyTooLarge(str(ended)))))
        await session.close(CLOSE_TOO_BIG, str(ended))
    elif isinstance(ended, EdgeError):
        await session.fail(ended)
    else:
        log.error("unhandled error on WebSocket %s", session.scope["path"], exc_info=ended)
        await session.fail(InternalError("internal error"))
