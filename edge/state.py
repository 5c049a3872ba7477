"""The running gateway's state: what every request reads, swapped whole on reload.

A request takes ``StateHolder.current`` once, when it starts, and uses that snapshot to
its end; a reload builds a new ``GatewayState`` beside the old and swaps the one reference,
so a request never sees half of one config and half of another. Admin, health and the
OpenAPI views read it here too, which is why it lives apart from the hot-path adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.ingress.calls import CallFactory
from edge.ingress.compression import Compression
from edge.ingress.websocket_policy import WebSocketPolicy
from edge.pipeline.build import Pipeline
from edge.pipeline.chain import Next
from edge.routes import Routes


@dataclass(frozen=True, slots=True)
class GatewayState:
    """Everything the hot path reads; replaced as a whole, never mutated, on reload."""

    routes: Routes
    chain: Next
    calls: CallFactory  # how a request becomes a Call: metadata, token, peer, deadline
    max_body_bytes: int
    websocket: WebSocketPolicy
    pipeline: Pipeline
    send_timeout: float | None = None  # server.send_timeout, for streams
    compression: Compression | None = None  # gzip/br of transcoded routes (None: none)


class StateHolder:
    """A single reference to the current state: swapping it is atomic for new requests."""

    __slots__ = ("current",)

    def __init__(self, state: GatewayState) -> None:
        self.current = state
