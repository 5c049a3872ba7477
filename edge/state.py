"""The running gateway's state: what every request reads, swapped whole on reload.

A request takes ``StateHolder.current`` once, when it starts, and uses that snapshot to
its end; a reload builds a new ``GatewayState`` beside the old (``edge.assembly``) and
swaps the one reference, so a request never sees half of one config and half of another.
Admin, health and the OpenAPI views read it here too, which is why it lives apart from
the hot-path adapters.

``LiveFront`` is what Hypercorn serves: it hands each request to the front door of the
state current when the request came, and counts the requests, streams and sockets each
generation still has open, so that a replaced generation's resources (channels nobody
else uses, its lease) are let go of exactly when its last call ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.ingress.asgi import ASGIApp, Receive, Scope, Send
from edge.ingress.calls import CallFactory
from edge.ingress.compression import Compression
from edge.ingress.websocket_policy import WebSocketPolicy
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.routes import Routes

if TYPE_CHECKING:
    from edge.call import Terminal
    from edge.config import Config
    from edge.leases import Lease

log = logging.getLogger("edge.state")
_RELEASING: set[asyncio.Task[None]] = set()


class Generation:
    """How many requests one state is serving, and what to do once it is replaced and idle."""

    __slots__ = ("active", "number", "on_idle", "replaced", "successor")

    def __init__(self, number: int) -> None:
        self.number = number
        self.active = 0
        # set when the state is replaced: called once, when its last request ends
        self.on_idle: Callable[[], None] | None = None
        # set when a reload swaps in the next state: what long-lived sockets watch
        self.replaced = asyncio.Event()
        self.successor: GatewayState | None = None

    def retire(self, successor: GatewayState, release: Callable[[], Awaitable[None]]) -> None:
        """Replaced by ``successor``: run ``release`` once nothing runs on this generation
        (now, if nothing does), and tell what still runs on it that it was replaced."""
        self.successor = successor
        self.replaced.set()

        def idle() -> None:
            self.on_idle = None
            task = asyncio.get_running_loop().create_task(
                _released(release, self.number), name=f"edge-retire-{self.number}"
            )
            _RELEASING.add(task)  # the loop holds tasks weakly: referenced until done
            task.add_done_callback(_RELEASING.discard)

        if self.active == 0:
            idle()
        else:
            self.on_idle = idle

    def request_ended(self, task: object) -> None:
        """A request's task ended (a done callback: see ``LiveFront``)."""
        self.active -= 1
        if self.active == 0 and self.on_idle is not None:
            self.on_idle()


async def _released(release: Callable[[], Awaitable[None]], number: int) -> None:
    try:
        await release()
        log.info("generation %d: its last call ended; its own resources are closed", number)
    except Exception:
        log.exception("closing generation %d's resources failed", number)


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Everything the hot path reads; replaced as a whole, never mutated, on reload."""

    routes: Routes
    chain: Next
    calls: CallFactory  # how a request becomes a Call: metadata, token, peer, deadline
    max_body_bytes: int
    websocket: WebSocketPolicy
    pipeline: Pipeline
    config: Config  # what this state was built from
    front: ASGIApp  # the request guard and the adapters for this config
    terminal: Terminal  # the gRPC terminal (channels), for health checks
    lease: Lease  # what it holds in the app's shared pool (edge.leases)
    life: Generation = field(compare=False)  # its number, and the calls it still serves
    send_timeout: float | None = None  # server.send_timeout, for streams
    compression: Compression | None = None  # gzip/br of transcoded routes (None: none)
    # what opens its connections (channels, pools) inside the running loop: ``start``
    openers: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def start(self) -> None:
        for open_ in self.openers:
            await open_()


class StateHolder:
    """A single reference to the current state: swapping it is atomic for new requests."""

    __slots__ = ("current",)

    def __init__(self, state: GatewayState) -> None:
        self.current = state

    @classmethod
    def pinned_later(cls) -> StateHolder:
        """A holder whose state is set once it is built (its adapters are part of it)."""
        return cls.__new__(cls)


class LiveFront:
    """The ASGI app served: each request to the current state's front, counted.

    Called, as ASGI servers call an app, in the task that serves the request: the count
    ends with that task.
    """

    __slots__ = ("holder",)

    def __init__(self, holder: StateHolder) -> None:
        self.holder = holder

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: it returns the state's, so a request (and an open WebSocket,
        # for its whole life) holds one frame less. The request is counted until its task
        # ends: the server runs each request in a task of its own.
        state = self.holder.current
        if scope["type"] != "lifespan":  # the app's whole life: not a call of this state
            life = state.life
            task = asyncio.current_task()
            if task is not None:
                life.active += 1
                task.add_done_callback(life.request_ended)
        return state.front(scope, receive, send)
