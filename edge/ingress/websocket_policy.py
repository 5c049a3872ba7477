"""Who may open a gRPC-over-WebSocket socket, and what it brings: the bridge's policy.

Resolved once from config (``WebSocketPolicy``) and applied to a handshake before any
call starts: the Origin allowlist (a cookie-authenticated socket opened by another
site's page would act as the victim), the token a browser can send (subprotocol, query
or cookie, since it cannot set headers), and the drain signal. The plain proxy's
WebSocket relay applies the same Origin rule.

Every open socket also listens for two process-wide events, the drain and its
generation's replacement (``websocket_reload``). ``when_set`` lets them listen without a
task each: one task per event waits for it and calls its listeners, so 10,000 idle
sockets hold one waiting task between them instead of 20,000.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from edge.config import WebSocketConfig
from edge.ingress.asgi import Scope
from edge.ingress.cors import CorsPolicy
from edge.pipeline.credentials import cookie_value, find_token

log = logging.getLogger("edge.websocket")

BEARER_PREFIX = "edge.bearer."  # a subprotocol carrying the token: edge.bearer.<token>
SHUTDOWN_STATE_KEY = "edge.shutdown"  # lifespan state: an asyncio.Event set on drain


@dataclass(frozen=True, slots=True)
class WebSocketPolicy:
    """What the bridge needs from config, resolved once at start-up."""

    allowed_origins: frozenset[str]
    same_origin: bool
    any_origin: bool
    max_message_bytes: int
    queue_messages: int
    idle_timeout: float | None
    first_frame_timeout: float
    first_frame_auth: bool  # a token may come in the first frame (else: at the handshake)
    token_query_parameter: str | None
    token_cookie: str | None
    send_timeout: float | None = None  # server.send_timeout: a stalled write ends the socket
    # "cors" in allowed_origins: the origins the global cors section allows may connect too
    cors: CorsPolicy | None = None
    # after a reload: end (1012) the sockets whose route or policy changed, all, or none
    reconnect_on_reload: Literal["changed", "always", "never"] = "changed"

    @classmethod
    def of(
        cls,
        config: WebSocketConfig,
        send_timeout: float | None = None,
        cors: CorsPolicy | None = None,
    ) -> WebSocketPolicy:
        origins = {origin.rstrip("/").lower() for origin in config.allowed_origins}
        return cls(
            allowed_origins=frozenset(o for o in origins if o not in ("same-origin", "*", "cors")),
            same_origin="same-origin" in origins,
            any_origin="*" in origins,
            max_message_bytes=config.max_message_bytes,
            queue_messages=config.queue_messages,
            idle_timeout=config.idle_timeout,
            first_frame_timeout=config.first_frame_timeout,
            first_frame_auth=config.first_frame_auth,
            token_query_parameter=config.token_query_parameter,
            token_cookie=config.token_cookie,
            send_timeout=send_timeout,
            cors=cors if "cors" in origins else None,
            reconnect_on_reload=config.reconnect_on_reload,
        )


def origin_allowed(headers: Sequence[tuple[bytes, bytes]], policy: WebSocketPolicy) -> bool:
    """Browsers always send Origin; a client without one is not a browser and may connect."""
    origin = host = None
    sent = b""
    for name, value in headers:
        if name == b"origin":
            sent = value
            origin = value.decode("latin-1").rstrip("/").lower()
        elif name == b"host":
            host = value.decode("latin-1").lower()
    if origin is None or policy.any_origin or origin in policy.allowed_origins:
        return True
    if policy.cors is not None and policy.cors.origin_allowed(sent):
        return True
    if policy.same_origin and host is not None:
        return urlsplit(origin).netloc == host
    return False


def socket_token(scope: Scope, policy: WebSocketPolicy, subprotocols: list[str]) -> str | None:
    """A token from the socket's own forms: the subprotocol, the query or a cookie."""
    token = next(
        (p[len(BEARER_PREFIX) :] for p in subprotocols if p.startswith(BEARER_PREFIX)), None
    )
    if token is None:
        token = find_token(
            (), scope["query_string"], policy.token_query_parameter, policy.token_cookie
        )
        if token is None and policy.token_cookie:
            token = cookie_value(scope["headers"], policy.token_cookie)
    return token


def shutdown_signal(scope: Scope) -> asyncio.Event | None:
    """The process's drain signal, when the server put one in the lifespan state."""
    state = scope.get("state")
    event = state.get(SHUTDOWN_STATE_KEY) if state else None
    return event if isinstance(event, asyncio.Event) else None


class _Listeners:
    """The callbacks waiting for one event, and the one task that waits for it for them."""

    __slots__ = ("callbacks", "waiter")

    def __init__(self) -> None:
        self.callbacks: set[Callable[[], None]] = set()
        self.waiter: asyncio.Task[None] | None = None


# keyed weakly: an event nobody references any more (a test's loop, a retired
# generation) takes its entry with it; while listened to, its waiter task holds it
_LISTENING: weakref.WeakKeyDictionary[asyncio.Event, _Listeners] = weakref.WeakKeyDictionary()


def when_set(event: asyncio.Event, callback: Callable[[], None]) -> None:
    """Call ``callback`` (once, from the loop) when ``event`` is set; at once if it is.

    ``forget`` undoes it. The callback runs in a loop callback, not in the listener's
    task, so it must not block: a socket's cancels the socket's task. One task per event
    waits for it for all its listeners, and only while it has any.
    """
    if event.is_set():
        asyncio.get_running_loop().call_soon(callback)
        return
    listeners = _LISTENING.get(event)
    if listeners is None:
        listeners = _LISTENING[event] = _Listeners()
    listeners.callbacks.add(callback)
    if listeners.waiter is None:
        listeners.waiter = asyncio.get_running_loop().create_task(
            _call_when_set(event, listeners), name="edge-websocket-signal"
        )


def forget(event: asyncio.Event, callback: Callable[[], None]) -> None:
    """Undo ``when_set`` (idempotent). The last listener gone, the waiting task ends."""
    listeners = _LISTENING.get(event)
    if listeners is None:
        return
    listeners.callbacks.discard(callback)
    if not listeners.callbacks and listeners.waiter is not None:
        listeners.waiter.cancel()
        listeners.waiter = None


async def _call_when_set(event: asyncio.Event, listeners: _Listeners) -> None:
    await event.wait()
    listeners.waiter = None
    callbacks, listeners.callbacks = listeners.callbacks, set()
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one socket's failure must not keep the others from hearing
            log.exception("a WebSocket listener for a signal failed")
